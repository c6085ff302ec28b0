"""SPC-2 reservations: RESERVE (6)/(10) and RELEASE (6)/(10) (SPC-2 7.21-7.24; obsolete since
SPC-3, still sent by cluster software and checked by iscsi-test-cu's Reserve6 suite).

A reservation is held by one I_T nexus for the whole logical unit. While it is held every command
from another I_T nexus ends in RESERVATION CONFLICT except INQUIRY, REQUEST SENSE, REPORT LUNS,
REPORT TARGET PORT GROUPS, REPORT SUPPORTED OPERATION CODES and RELEASE (the dispatch table's
``reservation_exempt`` column, checked in ``PrState.check_access``), and every PERSISTENT RESERVE IN
or OUT conflicts, from any I_T nexus (SPC-2 5.5.1). The holder may RESERVE again; RELEASE from
another I_T nexus, or with nothing reserved, does nothing and returns GOOD. Logical unit reset,
target reset and the holder's I_T nexus loss release it (``LogicalUnit.reset`` / ``nexus_lost``).

With persistent reservations the device server follows SPC-4 5.12.3 (it reports CRH=1): once an
I_T nexus is registered, RESERVE and RELEASE conflict, except that they complete with GOOD and change
nothing when they come from the persistent reservation holder, or from a registered I_T nexus while
a registrants-only or all-registrants persistent reservation is held.

Third-party reservations (3RDPTY, LONGID) and extent reservations are not supported: INVALID FIELD
IN CDB. The state is ``lu.pr.reserved_by`` (sanpath.target.pr): one owner for every reservation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sanpath.scsi.constants import Opcode, PrType
from sanpath.target.common import GOOD, Command, ReservationConflict, ScsiResult, invalid_field

if TYPE_CHECKING:
    from sanpath.target.lu import LogicalUnit

_SHARED_HOLDERS = frozenset(
    int(t)
    for t in (
        PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
        PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
        PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
        PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
    )
)


def _check_cdb(cmd: Command) -> None:
    """Byte 1: EXTENT (bit 0, obsolete) in both forms; 3RDPTY (bit 4) and LONGID (bit 1) in the
    10-byte form."""
    b1 = cmd.cdb[1]
    if cmd.cdb[0] in (Opcode.RESERVE_10, Opcode.RELEASE_10):
        if b1 & 0x10:
            raise invalid_field(1, 4)
        if b1 & 0x02:
            raise invalid_field(1, 1)
    if b1 & 0x01:
        raise invalid_field(1, 0)


def _persistent_rules(lu: LogicalUnit, cmd: Command) -> bool:
    """SPC-4 5.12.3: True when a registration exists and the command completes with GOOD without
    changing anything; ReservationConflict when a registration exists otherwise; False when no
    I_T nexus is registered (the SPC-2 rules apply)."""
    st = lu.pr
    if not st.registrations:
        return False
    key = cmd.nexus.key
    res = st.reservation
    if res is not None and (st.is_holder(key) or (key in st.registrations and res.pr_type in _SHARED_HOLDERS)):
        return True
    raise ReservationConflict


async def reserve(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """RESERVE (6)/(10): reserve the logical unit for this I_T nexus (another holder was refused by
    the dispatcher's reservation check already)."""
    _check_cdb(cmd)
    if not _persistent_rules(lu, cmd):
        lu.pr.reserved_by = cmd.nexus.key
    return ScsiResult(GOOD)


async def release(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """RELEASE (6)/(10): end this I_T nexus's reservation; from any other I_T nexus a no-op."""
    _check_cdb(cmd)
    if not _persistent_rules(lu, cmd):
        lu.pr.release_reserve(cmd.nexus.key)
    return ScsiResult(GOOD)
