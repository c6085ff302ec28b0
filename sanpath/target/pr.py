"""Persistent reservations (SPC-4 5.12, 6.15, 6.16): the registration / reservation state of one
logical unit, PERSISTENT RESERVE IN and OUT, and the RESERVATION CONFLICT rules every other
command is checked against (SPC-4 5.12.1 table "commands allowed in the presence of reservations",
SBC-3 4.17).

Registrations are per I_T nexus (ALL_TG_PT and SPEC_I_PT are not supported), nothing persists
across power loss (APTPL is not supported), and reservations have LU scope.

The state also holds the SPC-2 reservation of RESERVE (6)/(10) (``reserved_by``; the commands are
in sanpath.target.reserve): while it is held every PERSISTENT RESERVE IN and OUT conflicts, from
any I_T nexus (SPC-2 5.5.1).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

from sanpath.scsi import constants as c
from sanpath.scsi.constants import PrInAction, PrOutAction, PrType
from sanpath.target.common import (
    GOOD,
    CheckCondition,
    Command,
    Nexus,
    ReservationConflict,
    ScsiResult,
    alloc_trim,
    illegal,
    invalid_field,
    invalid_param,
)

if TYPE_CHECKING:
    from sanpath.target.lu import LogicalUnit

NexusKey = tuple[str, str]


class Access(IntEnum):
    """How a command touches the medium, for the reservation conflict table."""

    ALLOWED = 0  # never conflicts (INQUIRY, REPORT LUNS, PRIN, READ CAPACITY, TEST UNIT READY, ...)
    READ = 1  # reads the medium (READ, VERIFY)
    WRITE = 2  # changes the medium or its cache (WRITE, UNMAP, WRITE SAME, SYNCHRONIZE CACHE, ...)


_ALL_REGISTRANTS = (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
_REGISTRANTS_ONLY = (PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY)
_EXCLUSIVE_ACCESS = (
    PrType.EXCLUSIVE_ACCESS,
    PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
    PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
)
_VALID_TYPES = frozenset(int(t) for t in PrType)

# REPORT CAPABILITIES type mask (SPC-4 6.15.4): byte 4 WR_EX_AR|EX_AC_RO|WR_EX_RO|EX_AC|WR_EX, byte 5 EX_AC_AR
_TYPE_MASK = bytes((0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01))

_PROUT = struct.Struct(">QQ4xB3x")
PROUT_PARAMETER_LENGTH = 24


@dataclass(slots=True)
class Registration:
    key: int
    nexus: Nexus


@dataclass(slots=True)
class Reservation:
    holder: NexusKey  # for all-registrants types: the nexus that created it (every registrant holds it)
    pr_type: int


@dataclass(slots=True)
class PrState:
    generation: int = 0
    registrations: dict[NexusKey, Registration] = field(default_factory=dict)
    reservation: Reservation | None = None
    reserved_by: NexusKey | None = None  # the I_T nexus holding an SPC-2 RESERVE (6)/(10) reservation

    def is_holder(self, key: NexusKey) -> bool:
        res = self.reservation
        if res is None:
            return False
        if res.pr_type in _ALL_REGISTRANTS:
            return key in self.registrations
        return res.holder == key

    def check_access(self, key: NexusKey, access: Access, reservation_exempt: bool = False) -> None:
        """Raise ReservationConflict when a command from this I_T nexus conflicts with an SPC-2
        reservation another I_T nexus holds (every command but the ``reservation_exempt`` ones,
        SPC-2 5.5.1), or when ``access`` conflicts with the persistent reservation (SPC-4 5.12.1 /
        SBC-3 4.17, types of table 169)."""
        if self.reserved_by is not None and self.reserved_by != key and not reservation_exempt:
            raise ReservationConflict
        res = self.reservation
        if res is None or access == Access.ALLOWED or self.is_holder(key):
            return
        registered = key in self.registrations
        if res.pr_type in (PrType.WRITE_EXCLUSIVE, PrType.EXCLUSIVE_ACCESS):
            if access == Access.WRITE or res.pr_type == PrType.EXCLUSIVE_ACCESS:
                raise ReservationConflict
            return
        # registrants-only and all-registrants types: registered I_T nexuses have full access
        if registered:
            return
        if access == Access.WRITE or res.pr_type in _EXCLUSIVE_ACCESS:
            raise ReservationConflict

    def release_reserve(self, key: NexusKey | None = None) -> None:
        """End the SPC-2 reservation when ``key`` holds it (RELEASE, the holder's I_T nexus loss), or
        whoever holds it (a reset, SPC-2 5.5.1).  Registrations and persistent reservations stay
        (SPC-4 5.12.9)."""
        if key is None or self.reserved_by == key:
            self.reserved_by = None

    def _remove(self, lu: LogicalUnit, key: NexusKey) -> None:
        """Drop one registration and release the reservation when that ends it (SPC-4 5.12.11.2.3)."""
        self.registrations.pop(key, None)
        res = self.reservation
        if res is None:
            return
        if res.pr_type in _ALL_REGISTRANTS:
            if not self.registrations:
                self.reservation = None
        elif res.holder == key:
            self.reservation = None
            if res.pr_type in _REGISTRANTS_ONLY:
                for other in self.registrations:
                    lu.queue_ua(other, c.RESERVATIONS_RELEASED)


# --- PERSISTENT RESERVE IN (SPC-4 6.15) ------------------------------------------------------
def _transport_id(nexus: Nexus) -> bytes:
    """iSCSI TransportID, format 01b: "<iqn>,i,0x<isid>" NUL-terminated, padded to 4 (SPC-4 7.6.4.6)."""
    name = nexus.initiator_port.encode() + b"\0"
    name += bytes(-len(name) % 4)
    if len(name) < 20:  # a TransportID is at least 24 bytes (SPC-4 7.6.4.1)
        name = name.ljust(20, b"\0")
    return struct.pack(">BxH", 0x40 | c.PROTOCOL_ID_ISCSI, len(name)) + name


async def persistent_reserve_in(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    action = cmd.cdb[1] & 0x1F
    alloc = cmd.u16(7)
    st = lu.pr
    if st.reserved_by is not None:
        raise ReservationConflict  # SPC-2 5.5.1: any PERSISTENT RESERVE IN conflicts with a RESERVE
    if action == PrInAction.READ_KEYS:
        keys = b"".join(struct.pack(">Q", r.key) for r in st.registrations.values())
        data = struct.pack(">II", st.generation, len(keys)) + keys
    elif action == PrInAction.READ_RESERVATION:
        res = st.reservation
        if res is None:
            data = struct.pack(">II", st.generation, 0)
        else:
            rk = 0 if res.pr_type in _ALL_REGISTRANTS else st.registrations[res.holder].key
            data = struct.pack(">IIQ4xxBxx", st.generation, 16, rk, (c.PR_SCOPE_LU << 4) | res.pr_type)
    elif action == PrInAction.REPORT_CAPABILITIES:
        # CRH=1 (RESERVE/RELEASE follow SPC-4 5.12.3, sanpath.target.reserve), SIP_C=0, ATP_C=0,
        # PTPL_C=0; TMV=1 (type mask valid), ALLOW COMMANDS 000b
        data = struct.pack(">HBB", 8, 0x10, 0x80) + _TYPE_MASK + bytes(2)
    elif action == PrInAction.READ_FULL_STATUS:
        body = bytearray()
        for nkey, reg in st.registrations.items():
            holder = st.is_holder(nkey)
            scope_type = ((c.PR_SCOPE_LU << 4) | st.reservation.pr_type) if holder and st.reservation else 0
            tid = _transport_id(reg.nexus)
            body += (
                struct.pack(
                    ">Q4xBB4xHI",
                    reg.key,
                    0x01 if holder else 0,
                    scope_type,
                    reg.nexus.relative_port_id,
                    len(tid),
                )
                + tid
            )
        data = struct.pack(">II", st.generation, len(body)) + bytes(body)
    else:
        raise invalid_field(1, 4)
    return ScsiResult(GOOD, alloc_trim(data, alloc))


# --- PERSISTENT RESERVE OUT (SPC-4 6.16) -----------------------------------------------------
async def persistent_reserve_out(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    action = cmd.cdb[1] & 0x1F
    scope, pr_type = cmd.cdb[2] >> 4, cmd.cdb[2] & 0x0F
    plen = cmd.u32(5)
    if lu.pr.reserved_by is not None:
        raise ReservationConflict  # SPC-2 5.5.1: any PERSISTENT RESERVE OUT conflicts with a RESERVE
    if action == PrOutAction.REGISTER_AND_MOVE or action > PrOutAction.REGISTER_AND_MOVE:
        raise invalid_field(1, 4)
    if plen != PROUT_PARAMETER_LENGTH:
        raise illegal(c.PARAMETER_LIST_LENGTH_ERROR)
    params = bytes(cmd.data_out[:plen])
    if len(params) < plen:
        raise CheckCondition(c.SenseKey.ILLEGAL_REQUEST, c.PARAMETER_LIST_LENGTH_ERROR, data_out_length=plen)
    rkey, sakey, flags = _PROUT.unpack_from(params)
    if flags & 0x08:  # SPEC_I_PT
        raise invalid_param(20, 3)
    if flags & 0x04:  # ALL_TG_PT
        raise invalid_param(20, 2)
    if flags & 0x01:  # APTPL: nothing survives power loss here (PTPL_C=0)
        raise invalid_param(20, 0)
    if action in (
        PrOutAction.RESERVE,
        PrOutAction.RELEASE,
        PrOutAction.PREEMPT,
        PrOutAction.PREEMPT_AND_ABORT,
    ):
        if scope != c.PR_SCOPE_LU:
            raise invalid_field(2, 7)
        if pr_type not in _VALID_TYPES:
            raise invalid_field(2, 3)
    _ACTIONS[action](lu, cmd.nexus, rkey, sakey, pr_type)
    return ScsiResult(GOOD, data_out_length=plen)


def _register(lu: LogicalUnit, nexus: Nexus, rkey: int, sakey: int, _t: int, *, ignore: bool = False) -> None:
    st = lu.pr
    key = nexus.key
    reg = st.registrations.get(key)
    if reg is None:
        if rkey and not ignore:
            raise ReservationConflict
        if sakey:
            st.registrations[key] = Registration(sakey, nexus)
            st.generation += 1
        return
    if not ignore and rkey != reg.key:
        raise ReservationConflict
    if sakey:
        reg.key = sakey
    else:
        st._remove(lu, key)
    st.generation += 1


def _register_ignore(lu: LogicalUnit, nexus: Nexus, rkey: int, sakey: int, t: int) -> None:
    _register(lu, nexus, rkey, sakey, t, ignore=True)


def _require_registered(lu: LogicalUnit, nexus: Nexus, rkey: int) -> Registration:
    reg = lu.pr.registrations.get(nexus.key)
    if reg is None or reg.key != rkey:
        raise ReservationConflict
    return reg


def _reserve(lu: LogicalUnit, nexus: Nexus, rkey: int, _sa: int, pr_type: int) -> None:
    _require_registered(lu, nexus, rkey)
    st = lu.pr
    res = st.reservation
    if res is None:
        st.reservation = Reservation(nexus.key, pr_type)
    elif not (st.is_holder(nexus.key) and res.pr_type == pr_type):
        raise ReservationConflict


def _release(lu: LogicalUnit, nexus: Nexus, rkey: int, _sa: int, pr_type: int) -> None:
    _require_registered(lu, nexus, rkey)
    st = lu.pr
    res = st.reservation
    if res is None or not st.is_holder(nexus.key):
        return
    if res.pr_type != pr_type:
        raise illegal(c.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
    st.reservation = None
    if pr_type in _REGISTRANTS_ONLY or pr_type in _ALL_REGISTRANTS:
        for other in st.registrations:
            if other != nexus.key:
                lu.queue_ua(other, c.RESERVATIONS_RELEASED)


def _clear(lu: LogicalUnit, nexus: Nexus, rkey: int, _sa: int, _t: int) -> None:
    _require_registered(lu, nexus, rkey)
    st = lu.pr
    for other in st.registrations:
        if other != nexus.key:
            lu.queue_ua(other, c.RESERVATIONS_PREEMPTED)
    st.registrations.clear()
    st.reservation = None
    st.generation += 1


def _preempt(lu: LogicalUnit, nexus: Nexus, rkey: int, sakey: int, pr_type: int) -> None:
    """PREEMPT and PREEMPT AND ABORT (SPC-4 5.12.11.4).  The issuing I_T nexus never loses its own
    registration.  Aborting the preempted nexuses' tasks is the target layer's job."""
    _require_registered(lu, nexus, rkey)
    st = lu.pr
    me = nexus.key
    res = st.reservation

    def drop(match_all: bool) -> int:
        victims = [k for k, r in st.registrations.items() if k != me and (match_all or r.key == sakey)]
        for k in victims:
            st.registrations.pop(k)
            lu.queue_ua(k, c.REGISTRATIONS_PREEMPTED)
        return len(victims)

    if res is None:
        if sakey == 0:
            raise invalid_param(8)
        if not drop(False) and sakey != rkey:
            raise ReservationConflict
    elif res.pr_type in _ALL_REGISTRANTS:
        if sakey == 0:
            drop(True)
            st.reservation = Reservation(me, pr_type)
        elif not drop(False) and sakey != rkey:
            raise ReservationConflict
    else:
        holder_key = st.registrations[res.holder].key if res.holder in st.registrations else None
        if sakey == holder_key:
            drop(False)
            st.reservation = Reservation(me, pr_type)
        elif sakey == 0:
            raise invalid_param(8)
        elif not drop(False) and sakey != rkey:
            raise ReservationConflict
    st.generation += 1


_ACTIONS: dict[int, Callable[[LogicalUnit, Nexus, int, int, int], None]] = {
    PrOutAction.REGISTER: _register,
    PrOutAction.RESERVE: _reserve,
    PrOutAction.RELEASE: _release,
    PrOutAction.CLEAR: _clear,
    PrOutAction.PREEMPT: _preempt,
    PrOutAction.PREEMPT_AND_ABORT: _preempt,
    PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY: _register_ignore,
}
