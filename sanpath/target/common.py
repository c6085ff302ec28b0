"""Shared plumbing of the SCSI emulation: the command context handlers receive, the exceptions
that become CHECK CONDITION / RESERVATION CONFLICT, the result object, and an LBA range lock.

Handlers (spc.py, sbc.py, pr.py) raise :class:`CheckCondition` with the standard's sense key and
ASC/ASCQ; the dispatcher in lu.py turns it into fixed-format sense data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sanpath.scsi import constants as c
from sanpath.scsi.sense import FieldPointer, build_fixed_sense


@dataclass(frozen=True, slots=True)
class Nexus:
    """The I_T nexus a command arrived on (SAM-5 4.9)."""

    initiator_port: str  # SCSI initiator port name: "<initiator iqn>,i,0x<ISID as 12 hex digits>"
    target_port: str  # SCSI target port name: "<target iqn>,t,0x<TPGT as 4 hex digits>"
    relative_port_id: int  # relative target port identifier (1-based, unique within the target)
    tpg_id: int  # target port group identifier (for ALUA / RTPG)

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the I_T nexus: PR registrations and unit attentions are kept per key."""
        return (self.initiator_port, self.target_port)

    @property
    def target_name(self) -> str:
        """The SCSI target device name (the target IQN) taken from the target port name."""
        return self.target_port.split(",t,", 1)[0]


@dataclass(frozen=True, slots=True)
class PortGroupInfo:
    """What REPORT TARGET PORT GROUPS reports for one target port group (SPC-4 6.37)."""

    tpg_id: int
    alua_state: int  # AluaState: 0 active/opt, 1 active/non-opt, 2 standby, 3 unavailable, 0xF transitioning
    relative_port_ids: tuple[int, ...]
    preferred: bool = False


@dataclass(slots=True)
class ScsiResult:
    """The outcome of one SCSI command as the iSCSI layer needs it."""

    status: int  # SAM status byte
    data: bytes | bytearray | memoryview = b""  # Data-In, full length before truncation to the iSCSI EDTL
    sense: bytes = b""  # fixed-format sense data when status is CHECK CONDITION
    data_out_length: int = 0  # bytes of Data-Out the CDB called for


GOOD = c.Status.GOOD


class CheckCondition(Exception):
    """Terminate the command with CHECK CONDITION and this sense data."""

    def __init__(
        self,
        key: int,
        asc_pair: c.AscPair,
        *,
        information: int | None = None,
        field_pointer: FieldPointer | None = None,
        data_out_length: int = 0,
        command_specific: int = 0,
    ) -> None:
        super().__init__(f"{c.SenseKey(key).name} {asc_pair[0]:02x}h/{asc_pair[1]:02x}h")
        self.key = key
        self.asc, self.ascq = asc_pair
        self.information = information
        self.field_pointer = field_pointer
        self.data_out_length = data_out_length
        self.command_specific = command_specific

    def sense(self) -> bytes:
        return build_fixed_sense(
            self.key,
            self.asc,
            self.ascq,
            information=self.information,
            field_pointer=self.field_pointer,
            command_specific=self.command_specific,
        )


class ReservationConflict(Exception):
    """Terminate the command with RESERVATION CONFLICT status (SPC-4 5.12.1)."""


def invalid_field(byte: int, bit: int | None = None) -> CheckCondition:
    """ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at CDB ``byte`` (and ``bit``)."""
    return CheckCondition(
        c.SenseKey.ILLEGAL_REQUEST, c.INVALID_FIELD_IN_CDB, field_pointer=FieldPointer(byte, bit)
    )


def invalid_param(byte: int, bit: int | None = None) -> CheckCondition:
    """ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST pointing at a parameter list byte."""
    return CheckCondition(
        c.SenseKey.ILLEGAL_REQUEST,
        c.INVALID_FIELD_IN_PARAMETER_LIST,
        field_pointer=FieldPointer(byte, bit, cdb=False),
    )


def illegal(asc_pair: c.AscPair) -> CheckCondition:
    return CheckCondition(c.SenseKey.ILLEGAL_REQUEST, asc_pair)


def invalid_opcode() -> CheckCondition:
    """ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE (SPC-4 4.5.6): iscsi-test-cu counts it as
    'not implemented' and skips the test."""
    return CheckCondition(
        c.SenseKey.ILLEGAL_REQUEST, c.INVALID_COMMAND_OPERATION_CODE, field_pointer=FieldPointer(0)
    )


def lba_out_of_range() -> CheckCondition:
    return CheckCondition(c.SenseKey.ILLEGAL_REQUEST, c.LBA_OUT_OF_RANGE)


def write_protected() -> CheckCondition:
    return CheckCondition(c.SenseKey.DATA_PROTECT, c.WRITE_PROTECTED)


def alloc_trim(data: bytes | bytearray, alloc: int) -> bytes:
    """Truncate parameter data to the CDB's ALLOCATION LENGTH (SPC-4 4.2.5.6)."""
    return bytes(data[:alloc])


@dataclass(slots=True)
class Command:
    """One SCSI command as a handler sees it."""

    nexus: Nexus
    cdb: bytes
    data_out: bytes | memoryview

    def u8(self, i: int) -> int:
        return self.cdb[i]

    def u16(self, i: int) -> int:
        return int.from_bytes(self.cdb[i : i + 2], "big")

    def u24(self, i: int) -> int:
        return int.from_bytes(self.cdb[i : i + 3], "big")

    def u32(self, i: int) -> int:
        return int.from_bytes(self.cdb[i : i + 4], "big")

    def u64(self, i: int) -> int:
        return int.from_bytes(self.cdb[i : i + 8], "big")


class RangeLock:
    """Mutual exclusion over LBA ranges: a write holds its range while it runs so COMPARE AND
    WRITE (SBC-3 5.2) can read, compare and write atomically against other writers; writers of
    disjoint ranges proceed concurrently."""

    def __init__(self) -> None:
        self._held: list[tuple[int, int, asyncio.Event]] = []

    @contextlib.asynccontextmanager
    async def hold(self, lba: int, blocks: int) -> AsyncIterator[None]:
        end = lba + max(blocks, 1)
        while True:
            busy = next((ev for (s, e, ev) in self._held if s < end and lba < e), None)
            if busy is None:
                break
            await busy.wait()
        entry = (lba, end, asyncio.Event())
        self._held.append(entry)
        try:
            yield
        finally:
            self._held.remove(entry)
            entry[2].set()
