"""The logical unit the target server hands each SCSI command to: the opcode dispatch table,
unit attention bookkeeping (SAM-5 5.14 / SPC-4 5.11), the ALUA access-state gate
(SPC-4 5.15.2.4) and the reservation check (persistent and SPC-2), in front of the SPC, SBC,
reservation and copy manager handlers.

``LogicalUnit.execute`` never raises for a SCSI-level problem: every outcome is a ScsiResult with
a SAM status and, for CHECK CONDITION, fixed-format sense data.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

from sanpath.blockdev import BlockDevice
from sanpath.errors import ConfigError
from sanpath.scsi import constants as c
from sanpath.scsi.constants import (
    AluaState,
    ExtendedCopyAction,
    MaintenanceIn,
    Opcode,
    PrInAction,
    PrOutAction,
    ReceiveCopyResultsAction,
    ServiceActionIn16,
)
from sanpath.scsi.sense import build_fixed_sense
from sanpath.target import pr, reserve, sbc, spc, xcopy
from sanpath.target.common import (
    CheckCondition,
    Command,
    Nexus,
    PortGroupInfo,
    RangeLock,
    ReservationConflict,
    ScsiResult,
    invalid_field,
    invalid_opcode,
)
from sanpath.target.pr import Access, PrState
from sanpath.target.sbc import SbcLimits
from sanpath.target.spc import report_luns_data

__all__ = [
    "AluaGate",
    "CommandInfo",
    "LogicalUnit",
    "LuProfile",
    "Nexus",
    "PortGroupInfo",
    "ResetReason",
    "SbcLimits",
    "ScsiResult",
    "report_luns_data",
]

log = logging.getLogger(__name__)

Handler = Callable[["LogicalUnit", Command], Awaitable[ScsiResult]]
NexusKey = tuple[str, str]


class AluaGate(IntEnum):
    """Which target port asymmetric access states a command may run in (SPC-4 5.15.2.4.4-6)."""

    ACTIVE = 0  # active/optimized and active/non-optimized only
    STANDBY = 1  # also standby (INQUIRY, MODE SENSE, PR IN/OUT, REPORT ..., REQUEST SENSE)
    ANY = 2  # also unavailable and transitioning (INQUIRY, REPORT LUNS, RTPG, RSOC, REQUEST SENSE)


class ResetReason(Enum):
    """Why the LU was reset; each maps to the UNIT ATTENTION queued for every I_T nexus."""

    POWER_ON = c.POWER_ON_OCCURRED
    LOGICAL_UNIT_RESET = c.BUS_DEVICE_RESET_FUNCTION_OCCURRED
    TARGET_WARM_RESET = c.POWER_ON_RESET_OR_BUS_DEVICE_RESET
    TARGET_COLD_RESET = c.POWER_ON_OCCURRED


_RESET_NAMES = {
    "lun": ResetReason.LOGICAL_UNIT_RESET,
    "target": ResetReason.TARGET_WARM_RESET,
    "target_warm": ResetReason.TARGET_WARM_RESET,
    "target_cold": ResetReason.TARGET_COLD_RESET,
    "power_on": ResetReason.POWER_ON,
}


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """One row of the dispatch table; ``usage`` is the CDB usage data REPORT SUPPORTED OPERATION
    CODES returns (its length is the CDB length). ``reservation_exempt`` commands run although another
    I_T nexus holds an SPC-2 RESERVE (6)/(10) reservation (SPC-2 5.5.1); all others conflict."""

    opcode: int
    name: str
    handler: Handler
    usage: bytes
    service_action: int | None = None
    access: Access = Access.ALLOWED
    alua: AluaGate = AluaGate.ACTIVE
    ua_exempt: bool = False
    writes: bool = False
    thin_only: bool = False
    reservation_exempt: bool = False


def _u(*b: int) -> bytes:
    return bytes(b)


_FF4 = (0xFF,) * 4
_FF8 = (0xFF,) * 8
_RW10 = (*_FF4, 0x00, 0xFF, 0xFF, 0x00)
_RW12 = (*_FF4, *_FF4, 0x00, 0x00)
_RW16 = (*_FF8, *_FF4, 0x00, 0x00)
_SA = 0x1F

COMMANDS: tuple[CommandInfo, ...] = (
    CommandInfo(Opcode.TEST_UNIT_READY, "TEST UNIT READY", spc.test_unit_ready, _u(0x00, 0, 0, 0, 0, 0)),
    CommandInfo(
        Opcode.REQUEST_SENSE,
        "REQUEST SENSE",
        spc.request_sense,
        _u(0x03, 0x01, 0, 0, 0xFF, 0),
        alua=AluaGate.ANY,
        ua_exempt=True,
        reservation_exempt=True,
    ),
    CommandInfo(Opcode.READ_6, "READ (6)", sbc.read, _u(0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0), access=Access.READ),
    CommandInfo(
        Opcode.WRITE_6,
        "WRITE (6)",
        sbc.write,
        _u(0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(
        Opcode.INQUIRY,
        "INQUIRY",
        spc.inquiry,
        _u(0x12, 0x01, 0xFF, 0xFF, 0xFF, 0),
        alua=AluaGate.ANY,
        ua_exempt=True,
        reservation_exempt=True,
    ),
    CommandInfo(Opcode.RESERVE_6, "RESERVE (6)", reserve.reserve, _u(0x16, 0, 0, 0, 0, 0)),
    CommandInfo(
        Opcode.RELEASE_6, "RELEASE (6)", reserve.release, _u(0x17, 0, 0, 0, 0, 0), reservation_exempt=True
    ),
    CommandInfo(
        Opcode.MODE_SENSE_6,
        "MODE SENSE (6)",
        spc.mode_sense_6,
        _u(0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0),
        alua=AluaGate.STANDBY,
    ),
    CommandInfo(
        Opcode.READ_CAPACITY_10, "READ CAPACITY (10)", sbc.read_capacity_10, _u(0x25, 0, *_FF4, 0, 0, 0x01, 0)
    ),
    CommandInfo(Opcode.READ_10, "READ (10)", sbc.read, _u(0x28, 0x18, *_RW10), access=Access.READ),
    CommandInfo(
        Opcode.WRITE_10, "WRITE (10)", sbc.write, _u(0x2A, 0x18, *_RW10), access=Access.WRITE, writes=True
    ),
    CommandInfo(
        Opcode.WRITE_AND_VERIFY_10,
        "WRITE AND VERIFY (10)",
        sbc.write_and_verify,
        _u(0x2E, 0x12, *_RW10),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(Opcode.VERIFY_10, "VERIFY (10)", sbc.verify, _u(0x2F, 0x16, *_RW10), access=Access.READ),
    CommandInfo(
        Opcode.PRE_FETCH_10,
        "PRE-FETCH (10)",
        sbc.pre_fetch,
        _u(0x34, 0x02, *_FF4, 0x1F, 0xFF, 0xFF, 0),
        access=Access.READ,
    ),
    CommandInfo(
        Opcode.SYNCHRONIZE_CACHE_10,
        "SYNCHRONIZE CACHE (10)",
        sbc.synchronize_cache,
        _u(0x35, 0x02, *_RW10),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(
        Opcode.READ_DEFECT_DATA_10,
        "READ DEFECT DATA (10)",
        sbc.read_defect_data,
        _u(0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0),
        access=Access.READ,
    ),
    CommandInfo(
        Opcode.WRITE_SAME_10,
        "WRITE SAME (10)",
        sbc.write_same,
        _u(0x41, 0x18, *_RW10),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(
        Opcode.UNMAP,
        "UNMAP",
        sbc.unmap,
        _u(0x42, 0x01, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0),
        access=Access.WRITE,
        writes=True,
        thin_only=True,
    ),
    CommandInfo(Opcode.RESERVE_10, "RESERVE (10)", reserve.reserve, _u(0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
    CommandInfo(
        Opcode.RELEASE_10,
        "RELEASE (10)",
        reserve.release,
        _u(0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        reservation_exempt=True,
    ),
    CommandInfo(
        Opcode.MODE_SENSE_10,
        "MODE SENSE (10)",
        spc.mode_sense_10,
        _u(0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0),
        alua=AluaGate.STANDBY,
    ),
    *(
        CommandInfo(
            Opcode.PERSISTENT_RESERVE_IN,
            f"PERSISTENT RESERVE IN ({sa.name})",
            pr.persistent_reserve_in,
            _u(0x5E, _SA, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0),
            service_action=sa,
            alua=AluaGate.STANDBY,
        )
        for sa in PrInAction
    ),
    *(
        CommandInfo(
            Opcode.PERSISTENT_RESERVE_OUT,
            f"PERSISTENT RESERVE OUT ({sa.name})",
            pr.persistent_reserve_out,
            _u(0x5F, _SA, 0xFF, 0, 0, *_FF4, 0),
            service_action=sa,
            alua=AluaGate.STANDBY,
        )
        for sa in PrOutAction
        if sa != PrOutAction.REGISTER_AND_MOVE
    ),
    CommandInfo(
        Opcode.EXTENDED_COPY,
        "EXTENDED COPY (LID1)",
        xcopy.extended_copy,
        _u(0x83, _SA, 0, 0, 0, 0, 0, 0, 0, 0, *_FF4, 0, 0),
        service_action=ExtendedCopyAction.EXTENDED_COPY_LID1,
        access=Access.WRITE,  # SPC-4 5.12.1: conflicts as a write does; the copy targets are checked too
        writes=True,
    ),
    *(
        CommandInfo(
            Opcode.RECEIVE_COPY_RESULTS,
            f"RECEIVE COPY RESULTS ({sa.name})",
            handler,
            _u(0x84, _SA, 0xFF, 0, 0, 0, 0, 0, 0, 0, *_FF4, 0, 0),
            service_action=sa,
        )
        for sa, handler in (
            (ReceiveCopyResultsAction.COPY_STATUS, xcopy.copy_status),
            (ReceiveCopyResultsAction.OPERATING_PARAMETERS, xcopy.operating_parameters),
            (ReceiveCopyResultsAction.FAILED_SEGMENT_DETAILS, xcopy.failed_segment_details),
        )
    ),
    CommandInfo(Opcode.READ_16, "READ (16)", sbc.read, _u(0x88, 0x18, *_RW16), access=Access.READ),
    CommandInfo(
        Opcode.COMPARE_AND_WRITE,
        "COMPARE AND WRITE",
        sbc.compare_and_write,
        _u(0x89, 0x18, *_FF8, 0, 0, 0, 0xFF, 0, 0),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(
        Opcode.WRITE_16, "WRITE (16)", sbc.write, _u(0x8A, 0x18, *_RW16), access=Access.WRITE, writes=True
    ),
    CommandInfo(
        Opcode.ORWRITE_16, "ORWRITE (16)", sbc.orwrite, _u(0x8B, 0x18, *_RW16), access=Access.WRITE, writes=True
    ),
    CommandInfo(
        Opcode.WRITE_AND_VERIFY_16,
        "WRITE AND VERIFY (16)",
        sbc.write_and_verify,
        _u(0x8E, 0x12, *_RW16),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(Opcode.VERIFY_16, "VERIFY (16)", sbc.verify, _u(0x8F, 0x16, *_RW16), access=Access.READ),
    CommandInfo(
        Opcode.PRE_FETCH_16,
        "PRE-FETCH (16)",
        sbc.pre_fetch,
        _u(0x90, 0x02, *_FF8, *_FF4, 0x1F, 0),
        access=Access.READ,
    ),
    CommandInfo(
        Opcode.SYNCHRONIZE_CACHE_16,
        "SYNCHRONIZE CACHE (16)",
        sbc.synchronize_cache,
        _u(0x91, 0x02, *_RW16),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(
        Opcode.WRITE_SAME_16,
        "WRITE SAME (16)",
        sbc.write_same,
        _u(0x93, 0x19, *_RW16),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(
        Opcode.WRITE_ATOMIC_16,
        "WRITE ATOMIC (16)",
        sbc.write_atomic,
        _u(0x9C, 0x18, *_FF8, 0, 0, 0xFF, 0xFF, 0, 0),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(
        Opcode.SERVICE_ACTION_IN_16,
        "READ CAPACITY (16)",
        sbc.read_capacity_16,
        _u(0x9E, _SA, 0, 0, 0, 0, 0, 0, 0, 0, *_FF4, 0, 0),
        service_action=ServiceActionIn16.READ_CAPACITY_16,
    ),
    CommandInfo(
        Opcode.SERVICE_ACTION_IN_16,
        "GET LBA STATUS",
        sbc.get_lba_status,
        _u(0x9E, _SA, *_FF8, *_FF4, 0, 0),
        service_action=ServiceActionIn16.GET_LBA_STATUS,
        access=Access.READ,
    ),
    CommandInfo(
        Opcode.REPORT_LUNS,
        "REPORT LUNS",
        spc.report_luns,
        _u(0xA0, 0, 0xFF, 0, 0, 0, *_FF4, 0, 0),
        alua=AluaGate.ANY,
        ua_exempt=True,
        reservation_exempt=True,
    ),
    CommandInfo(
        Opcode.MAINTENANCE_IN,
        "REPORT TARGET PORT GROUPS",
        spc.report_target_port_groups,
        _u(0xA3, 0xE0 | _SA, 0, 0, 0, 0, *_FF4, 0, 0),
        service_action=MaintenanceIn.REPORT_TARGET_PORT_GROUPS,
        alua=AluaGate.ANY,
        reservation_exempt=True,
    ),
    CommandInfo(
        Opcode.MAINTENANCE_IN,
        "REPORT SUPPORTED OPERATION CODES",
        spc.report_supported_operation_codes,
        _u(0xA3, _SA, 0x87, 0xFF, 0xFF, 0xFF, *_FF4, 0, 0),
        service_action=MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES,
        alua=AluaGate.ANY,
        reservation_exempt=True,
    ),
    CommandInfo(Opcode.READ_12, "READ (12)", sbc.read, _u(0xA8, 0x18, *_RW12), access=Access.READ),
    CommandInfo(
        Opcode.WRITE_12, "WRITE (12)", sbc.write, _u(0xAA, 0x18, *_RW12), access=Access.WRITE, writes=True
    ),
    CommandInfo(
        Opcode.WRITE_AND_VERIFY_12,
        "WRITE AND VERIFY (12)",
        sbc.write_and_verify,
        _u(0xAE, 0x12, *_RW12),
        access=Access.WRITE,
        writes=True,
    ),
    CommandInfo(Opcode.VERIFY_12, "VERIFY (12)", sbc.verify, _u(0xAF, 0x16, *_RW12), access=Access.READ),
    CommandInfo(
        Opcode.READ_DEFECT_DATA_12,
        "READ DEFECT DATA (12)",
        sbc.read_defect_data,
        _u(0xB7, 0x1F, *_FF4, *_FF4, 0, 0),
        access=Access.READ,
    ),
)
"""Everything sanpath's LU implements; any other opcode is INVALID COMMAND OPERATION CODE."""

_ALUA_NOT_READY: dict[int, tuple[AluaGate, c.AscPair]] = {
    AluaState.STANDBY: (AluaGate.STANDBY, c.LU_NOT_ACCESSIBLE_STANDBY),
    AluaState.UNAVAILABLE: (AluaGate.ANY, c.LU_NOT_ACCESSIBLE_UNAVAILABLE),
    AluaState.OFFLINE: (AluaGate.ANY, c.LU_NOT_ACCESSIBLE_UNAVAILABLE),
    AluaState.TRANSITIONING: (AluaGate.ANY, c.LU_NOT_ACCESSIBLE_TRANSITIONING),
}

_UA_QUEUE_MAX = 16


def _default_port_groups() -> Sequence[PortGroupInfo]:
    return (PortGroupInfo(tpg_id=1, alua_state=AluaState.ACTIVE_OPTIMIZED, relative_port_ids=(1,)),)


def _check_naa(naa: bytes) -> bytes:
    """NAA designator (SPC-4 7.8.6.6): 16 bytes for NAA 6 (IEEE registered extended), 8 bytes for
    NAA 2 (IEEE extended), 3 (locally assigned) or 5 (IEEE registered)."""
    kind = naa[0] >> 4 if naa else 0
    if not ((kind == 6 and len(naa) == 16) or (kind in (2, 3, 5) and len(naa) == 8)):
        raise ConfigError(
            "lu.naa",
            f"{naa.hex() or 'empty'}: need NAA 6 (16 bytes) or NAA 2, 3 or 5 (8 bytes), SPC-4 7.8.6.6",
        )
    return bytes(naa)


class LuProfile:
    """How an array family (sanpath.target.profiles, sanpath.target.rdac) changes one LU: extra
    commands, VPD and mode pages, the INQUIRY TPGS field, and an access check run before each
    command. The base class changes nothing."""

    tpgs: int = c.Tpgs.IMPLICIT
    commands: tuple[CommandInfo, ...] = ()
    vpd_pages: dict[int, Callable[[LogicalUnit, Command], bytes]] = {}
    # page code -> builder(lu, cmd, subpage, page control)
    mode_pages: dict[int, Callable[[LogicalUnit, Command, int, int], bytes]] = {}

    def check(self, lu: LogicalUnit, nexus: Nexus, info: CommandInfo) -> bool:
        """Raise CheckCondition to refuse the command; return False to skip the standard ALUA gate."""
        return True


VENDOR = "SANPATH"  # what sanpath's own LUs answer in standard INQUIRY
PRODUCT = "VIRTUAL-DISK"


class LogicalUnit:
    """A direct-access (SBC-3) logical unit over a BlockDevice backstore."""

    def __init__(
        self,
        backstore: BlockDevice,
        *,
        naa: bytes,
        serial: str,
        vendor: str = VENDOR,
        product: str = PRODUCT,
        revision: str = "0001",
        port_groups: Callable[[], Sequence[PortGroupInfo]] = _default_port_groups,
        alua_state: Callable[[int], int] | None = None,
        read_only: bool = False,
        thin: bool = True,
        write_cache: bool = True,
        limits: SbcLimits | None = None,
        luns: Callable[[], Sequence[int]] | None = None,
        ua_on_new_nexus: bool = True,
        implicit_transition_time: int = 0,
        profile: LuProfile | None = None,
        lbppbe: int = 0,
        copy_targets: Callable[[], Iterable[LogicalUnit]] | None = None,
    ) -> None:
        if not serial or not serial.isascii() or not serial.isprintable():
            raise ConfigError("lu.serial", f"{serial!r}: need a non-empty printable ASCII unit serial number")
        if not 0 <= lbppbe <= 15:
            raise ConfigError("lu.lbppbe", f"{lbppbe}: the logical blocks per physical block exponent is 0..15")
        self.backstore = backstore
        self.naa = _check_naa(naa)
        self.serial = serial
        self.vendor, self.product, self.revision = vendor, product, revision
        self.port_groups = port_groups
        self.alua_state = alua_state  # tpg_id -> the ALUA state through that group, when cheaper than port_groups
        self.read_only = read_only
        self.thin = thin
        self.write_cache = write_cache
        self.limits = limits or SbcLimits()
        self.luns = luns
        self.ua_on_new_nexus = ua_on_new_nexus
        self.implicit_transition_time = implicit_transition_time
        self.block_size = backstore.block_size
        self.num_blocks = backstore.size // backstore.block_size
        self.lbppbe = lbppbe  # READ CAPACITY (16): 2^lbppbe logical blocks per physical block
        self.ranges = RangeLock()
        self.pr = PrState()
        # the copy manager (EXTENDED COPY) reaches these LUs, by their NAA designators; by default only itself
        self.copy_manager = xcopy.CopyManager(copy_targets or (lambda: (self,)))
        self.profile = profile or LuProfile()
        self.command_table = tuple(i for i in (*COMMANDS, *self.profile.commands) if thin or not i.thin_only)
        sa_opcodes = {i.opcode for i in self.command_table if i.service_action is not None}
        self._dispatch: dict[int, CommandInfo | dict[int, CommandInfo]] = {}
        for info in self.command_table:
            if info.opcode in sa_opcodes:
                by_sa = self._dispatch.setdefault(info.opcode, {})
                assert isinstance(by_sa, dict)
                by_sa[info.service_action or 0] = info
            else:
                self._dispatch[info.opcode] = info
        self._ua: dict[NexusKey, list[c.AscPair]] = {}
        self._known: set[NexusKey] = set()

    # --- unit attentions (SAM-5 5.14, SPC-4 5.11) -------------------------------------------
    def queue_ua(self, key: NexusKey, pair: c.AscPair) -> None:
        queue = self._ua.setdefault(key, [])
        if pair not in queue and len(queue) < _UA_QUEUE_MAX:
            queue.append(pair)

    def pop_ua(self, key: NexusKey) -> c.AscPair | None:
        queue = self._ua.get(key)
        if not queue:
            return None
        pair = queue.pop(0)
        if not queue:
            del self._ua[key]
        return pair

    def pending_ua(self, key: NexusKey) -> tuple[c.AscPair, ...]:
        return tuple(self._ua.get(key, ()))

    def nexus_new(self, nexus: Nexus) -> None:
        """An I_T nexus logged in: with ``ua_on_new_nexus`` it first sees POWER ON, RESET, OR BUS
        DEVICE RESET OCCURRED (29h/00h) unless something more specific is already pending."""
        self._known.add(nexus.key)
        if self.ua_on_new_nexus and nexus.key not in self._ua:
            self.queue_ua(nexus.key, c.POWER_ON_RESET_OR_BUS_DEVICE_RESET)

    def nexus_lost(self, nexus: Nexus) -> None:
        """The I_T nexus is gone (session closed or dropped): an SPC-2 reservation it held is released
        (SPC-2 5.5.1) and its copy results are discarded; with ``ua_on_new_nexus`` it will see I_T
        NEXUS LOSS OCCURRED (29h/07h) if it returns.  Persistent reservations are untouched
        (SPC-4 5.12.9)."""
        self.pr.release_reserve(nexus.key)
        self.copy_manager.forget(nexus.key)
        if self.ua_on_new_nexus:
            self._ua[nexus.key] = [c.I_T_NEXUS_LOSS_OCCURRED]

    def reset(self, reason: ResetReason | str = ResetReason.LOGICAL_UNIT_RESET) -> None:
        """LOGICAL UNIT RESET / TARGET WARM or COLD RESET (SAM-5 6.3): replace every I_T nexus's
        pending unit attentions with the reset's 29h/xxh.  Aborting tasks is the target layer's
        job; persistent reservations survive, an SPC-2 reservation does not (SPC-2 5.5.1), nor do held
        copy results; there is no mode data to restore.  ``reason`` may also be one of the short
        names "lun", "target", "target_cold", "power_on"."""
        if isinstance(reason, str):
            try:
                reason = _RESET_NAMES[reason]
            except KeyError:
                raise ValueError(
                    f"unknown reset reason {reason!r}; use one of {sorted(_RESET_NAMES)}"
                ) from None
        for key in self._known | set(self._ua):
            self._ua[key] = [reason.value]
        self.pr.release_reserve()
        self.copy_manager.forget()

    async def close(self) -> None:
        """Flush and close the backstore (the LU is unusable afterwards)."""
        try:
            await self.backstore.flush()
        finally:
            close = getattr(self.backstore, "close", None)
            if close is not None:
                close()

    def alua_state_changed(self, *, except_nexus: Nexus | None = None) -> None:
        """Queue ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h) for every known I_T nexus."""
        for key in self._known:
            if except_nexus is None or key != except_nexus.key:
                self.queue_ua(key, c.ASYMMETRIC_ACCESS_STATE_CHANGED)

    # --- dispatch ------------------------------------------------------------------------------
    def _alua_state(self, nexus: Nexus) -> int:
        if self.alua_state is not None:
            return self.alua_state(nexus.tpg_id)
        for group in self.port_groups():
            if group.tpg_id == nexus.tpg_id:
                return group.alua_state
        return AluaState.ACTIVE_OPTIMIZED

    def lookup(self, cdb: bytes) -> CommandInfo | None:
        entry = self._dispatch.get(cdb[0]) if cdb else None
        if isinstance(entry, dict):
            return entry.get(cdb[1] & 0x1F) if len(cdb) > 1 else None
        return entry

    async def execute(self, nexus: Nexus, cdb: bytes, data_out: bytes | memoryview = b"") -> ScsiResult:
        """Run one SCSI command from ``nexus``.  ``data_out`` is all the Data-Out that arrived; the
        result's ``data`` is the Data-In before truncation to the iSCSI expected length."""
        cdb = bytes(cdb)
        key = nexus.key
        if key not in self._known:
            self._known.add(key)
        info = self.lookup(cdb)
        if info is None or not info.ua_exempt:
            pending = self.pop_ua(key)
            if pending is not None:
                return _check_condition(build_fixed_sense(c.SenseKey.UNIT_ATTENTION, *pending))
        try:
            if info is None:
                if cdb and cdb[0] in self._dispatch:
                    raise invalid_field(1, 4)  # a known opcode with an unknown service action
                raise invalid_opcode()
            if len(cdb) < len(info.usage):
                cdb = cdb.ljust(len(info.usage), b"\0")
            if self.profile.check(self, nexus, info):
                gate = _ALUA_NOT_READY.get(self._alua_state(nexus))
                if gate is not None and info.alua < gate[0]:
                    raise CheckCondition(c.SenseKey.NOT_READY, gate[1])
            self.pr.check_access(key, info.access, info.reservation_exempt)
            return await info.handler(self, Command(nexus, cdb, data_out))
        except CheckCondition as exc:
            return ScsiResult(
                c.Status.CHECK_CONDITION, sense=exc.sense(), data_out_length=exc.data_out_length
            )
        except ReservationConflict:
            return ScsiResult(c.Status.RESERVATION_CONFLICT)
        except OSError as exc:
            assert info is not None
            log.error("LU %s: %s failed on the backstore: %s", self.serial, info.name, exc)
            pair = c.WRITE_ERROR if info.writes else c.UNRECOVERED_READ_ERROR
            return _check_condition(build_fixed_sense(c.SenseKey.MEDIUM_ERROR, *pair))


def _check_condition(sense: bytes) -> ScsiResult:
    return ScsiResult(c.Status.CHECK_CONDITION, sense=sense)
