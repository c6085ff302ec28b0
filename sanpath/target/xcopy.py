"""The copy manager: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, SPC-3 6.17), copying
blocks between the logical units of one array without the data crossing the network (what VMware's
VAAI "XCOPY" and sg_xcopy send).

Supported: CSCD identification descriptors (E4h) naming a logical unit by its NAA designator (the
one VPD page 83h reports, association logical unit) and block-to-block segment descriptors (02h),
list identifier usages 00b (results held for RECEIVE COPY RESULTS), 10b and 11b (not held). No
inline or embedded data, no held data, no stream devices, no ROD tokens (LID4). The limits the
parser enforces are what OPERATING PARAMETERS reports (the module constants below).

Errors (SPC-4 6.4): a parameter list that cannot be accepted ends the command before any segment
is processed, with ILLEGAL REQUEST and a field pointer into the parameter list: PARAMETER LIST
LENGTH ERROR (1Ah/00h; also when the descriptor lists exceed MAXIMUM DESCRIPTOR LIST LENGTH), TOO
MANY TARGET DESCRIPTORS (26h/06h), UNSUPPORTED TARGET DESCRIPTOR TYPE CODE (26h/07h), TOO MANY
SEGMENT DESCRIPTORS (26h/08h), UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE (26h/09h), INLINE DATA
LENGTH EXCEEDED (26h/0Bh), INVALID FIELD IN PARAMETER LIST (26h/00h). Once copying has begun, a
problem ends it with COPY ABORTED, the number of the segment in the COMMAND-SPECIFIC INFORMATION
bytes 2-3 and a segment pointer at the offending field: COPY TARGET DEVICE NOT REACHABLE
(0Dh/02h: no LU of the array has the designator), INCORRECT COPY TARGET DEVICE TYPE (0Dh/03h),
UNREACHABLE COPY TARGET (08h/04h: a CSCD descriptor index past the list), UNEXPECTED INEXACT
SEGMENT (26h/0Ah), a range past the last LBA of a copy target (00h/00h, the pointer at the LBA or
NUMBER OF BLOCKS field: iscsi-test-cu ExtendedCopy.ValidSegDescr accepts only 00h/00h, 08h/04h
or 0Dh/02h there), WRITE PROTECTED (27h/00h), UNRECOVERED READ ERROR (11h/00h) or WRITE ERROR
(0Ch/00h). A copy honours the reservations of the I_T nexus that sent it: EXTENDED COPY conflicts
as a write on the copy manager's LU, and reading a source or writing a destination that nexus could
not read or write itself is RESERVATION CONFLICT. A CSCD descriptor whose DISK BLOCK LENGTH is not
the LU's block size is INVALID FIELD IN PARAMETER LIST.

Copies run in 1 MiB pieces; each piece holds the destination's LBA range lock while it is written,
so COMPARE AND WRITE and WRITE ATOMIC stay atomic. A copy within one LU whose destination overlaps
its source further on runs backwards, so it reads no block it has already overwritten.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sanpath.scsi import constants as c
from sanpath.scsi.constants import Association, CodeSet, DesignatorType, PeripheralDeviceType
from sanpath.scsi.sense import FieldPointer
from sanpath.target.common import (
    GOOD,
    CheckCondition,
    Command,
    ReservationConflict,
    ScsiResult,
    alloc_trim,
    illegal,
    invalid_field,
)
from sanpath.target.pr import Access

if TYPE_CHECKING:
    from sanpath.target.lu import LogicalUnit

NexusKey = tuple[str, str]

# --- operating parameters (RECEIVE COPY RESULTS, SPC-3 6.17) ---------------------------------------
MAX_CSCD_DESCRIPTORS = 8
MAX_SEGMENT_DESCRIPTORS = 64
MAX_DESCRIPTOR_LIST_LENGTH = 4096  # bytes of CSCD and segment descriptors together
MAX_SEGMENT_LENGTH = 1 << 28  # bytes one segment may copy (65535 blocks of 4096 bytes fit)
DATA_SEGMENT_GRANULARITY = 9  # log2 of the smallest block a segment moves: 512 bytes
TOTAL_CONCURRENT_COPIES = 0xFFFF  # no limit is enforced: these are the largest values the fields hold
MAX_CONCURRENT_COPIES = 0xFF
HELD_RESULTS_PER_NEXUS = 16  # list identifiers whose results an I_T nexus may leave unread
CSCD_IDENTIFICATION = 0xE4
SEGMENT_BLOCK_TO_BLOCK = 0x02
IMPLEMENTED_DESCRIPTORS = (SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION)

# --- the parameter list (SPC-4 6.4) -----------------------------------------------------------------
HEADER = struct.Struct(">BBH4xII")  # LIST IDENTIFIER, STR|LIST ID USAGE|PRIORITY, CSCD, segment, inline lengths
CSCD_LENGTH = 32
_IDENT = struct.Struct(">BBxB")  # code set, PIV|association|designator type, reserved, designator length
_MAX_DESIGNATOR = 20
_B2B = struct.Struct(">BBHHH2xHQQ")  # type, DC|CAT, length, source, destination, blocks, source LBA, dest LBA
B2B_DESCRIPTOR_LENGTH = _B2B.size - 4  # 0018h: the DESCRIPTOR LENGTH field excludes the first 4 bytes

LIST_ID_HOLD = 0b00
LIST_ID_RESERVED = 0b01
LIST_ID_DISCARD = 0b10
LIST_ID_NONE = 0b11

COPY_IN_PROGRESS = 0x00  # COPY MANAGER STATUS (COPY STATUS, SPC-3 6.17)
COPY_COMPLETED = 0x01
COPY_FAILED = 0x02

_PIECE = 1 << 20


@dataclass(frozen=True, slots=True)
class CscdDescriptor:
    """An identification CSCD descriptor (E4h): the logical unit with this designator."""

    offset: int  # in the parameter list, for field pointers
    peripheral_device_type: int
    code_set: int
    association: int
    designator_type: int
    designator: bytes
    block_length: int  # DISK BLOCK LENGTH of the device type specific parameters


@dataclass(frozen=True, slots=True)
class BlockSegment:
    """A block device to block device segment descriptor (02h)."""

    number: int  # position in the segment descriptor list, from 0
    offset: int
    destination_count: bool  # DC: NUMBER OF BLOCKS counts destination blocks
    source: int  # CSCD descriptor indexes
    destination: int
    blocks: int
    source_lba: int
    destination_lba: int


@dataclass(frozen=True, slots=True)
class CopyParameters:
    list_id: int
    list_id_usage: int
    cscds: tuple[CscdDescriptor, ...]
    segments: tuple[BlockSegment, ...]


def _param_pointer(offset: int, bit: int | None = None) -> FieldPointer:
    return FieldPointer(offset, bit, cdb=False)


def _refused(pair: c.AscPair, offset: int, bit: int | None = None) -> CheckCondition:
    return CheckCondition(c.SenseKey.ILLEGAL_REQUEST, pair, field_pointer=_param_pointer(offset, bit))


def parse_parameters(params: bytes) -> CopyParameters:
    """Check and decode an EXTENDED COPY (LID1) parameter list; ``params`` is PARAMETER LIST LENGTH
    bytes.  Raises CheckCondition (ILLEGAL REQUEST) for anything the copy manager cannot accept."""
    if len(params) < HEADER.size or len(params) > HEADER.size + MAX_DESCRIPTOR_LIST_LENGTH:
        raise illegal(c.PARAMETER_LIST_LENGTH_ERROR)
    list_id, flags, cscd_len, seg_len, inline_len = HEADER.unpack_from(params)
    usage = (flags >> 3) & 0x3
    if usage == LIST_ID_RESERVED:
        raise _refused(c.INVALID_FIELD_IN_PARAMETER_LIST, 1, 4)
    if cscd_len + seg_len > MAX_DESCRIPTOR_LIST_LENGTH:
        raise illegal(c.PARAMETER_LIST_LENGTH_ERROR)
    if inline_len:
        raise _refused(c.INLINE_DATA_LENGTH_EXCEEDED, 12)  # MAXIMUM INLINE DATA LENGTH is 0
    if HEADER.size + cscd_len + seg_len > len(params):
        raise illegal(c.PARAMETER_LIST_LENGTH_ERROR)
    if cscd_len % CSCD_LENGTH:
        raise _refused(c.INVALID_FIELD_IN_PARAMETER_LIST, 2)
    if cscd_len // CSCD_LENGTH > MAX_CSCD_DESCRIPTORS:
        raise _refused(c.TOO_MANY_TARGET_DESCRIPTORS, 2)
    cscds = tuple(_cscd(params, off) for off in range(HEADER.size, HEADER.size + cscd_len, CSCD_LENGTH))
    return CopyParameters(list_id, usage, cscds, _segments(params, HEADER.size + cscd_len, seg_len))


def _cscd(params: bytes, off: int) -> CscdDescriptor:
    """The identification CSCD descriptor (SPC-4 6.4.6): type, LU ID TYPE|NUL|PERIPHERAL DEVICE TYPE,
    RELATIVE INITIATOR PORT IDENTIFIER, a designation descriptor of at most 20 bytes of designator,
    then for block devices PAD and DISK BLOCK LENGTH.  LU ID TYPE, NUL (obsolete) and the relative
    initiator port are ignored."""
    if params[off] != CSCD_IDENTIFICATION:
        raise _refused(c.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, off)
    code_set, kind, length = _IDENT.unpack_from(params, off + 4)
    if length > _MAX_DESIGNATOR:
        raise _refused(c.INVALID_FIELD_IN_PARAMETER_LIST, off + 7)
    return CscdDescriptor(
        offset=off,
        peripheral_device_type=params[off + 1] & 0x1F,
        code_set=code_set & 0x0F,
        association=(kind >> 4) & 0x3,
        designator_type=kind & 0x0F,
        designator=params[off + 8 : off + 8 + length],
        block_length=int.from_bytes(params[off + 29 : off + 32], "big"),
    )


def _segments(params: bytes, start: int, length: int) -> tuple[BlockSegment, ...]:
    out: list[BlockSegment] = []
    pos, end = start, start + length
    while pos < end:
        if pos + 4 > end:
            raise _refused(c.INVALID_FIELD_IN_PARAMETER_LIST, pos)
        if len(out) == MAX_SEGMENT_DESCRIPTORS:
            raise _refused(c.TOO_MANY_SEGMENT_DESCRIPTORS, 8)
        kind, desc_len = params[pos], int.from_bytes(params[pos + 2 : pos + 4], "big")
        if kind != SEGMENT_BLOCK_TO_BLOCK:
            raise _refused(c.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, pos)
        if desc_len != B2B_DESCRIPTOR_LENGTH or pos + _B2B.size > end:
            raise _refused(c.INVALID_FIELD_IN_PARAMETER_LIST, pos + 2)
        _, flags, _, src, dst, blocks, src_lba, dst_lba = _B2B.unpack_from(params, pos)
        out.append(BlockSegment(len(out), pos, bool(flags & 0x02), src, dst, blocks, src_lba, dst_lba))
        pos += _B2B.size
    return tuple(out)


# --- the copy manager ---------------------------------------------------------------------------------
@dataclass(slots=True)
class CopyResult:
    """What RECEIVE COPY RESULTS reports for one list identifier of one I_T nexus."""

    held: bool = True  # LIST ID USAGE 00b: kept after the command ends
    status: int = COPY_IN_PROGRESS
    segments_processed: int = 0
    bytes_copied: int = 0
    command_status: int = GOOD  # the SAM status the EXTENDED COPY ended with
    sense: bytes = b""  # and its sense data
    details_read: bool = False  # the failed segment details were read in full (and so discarded)

    def finish(self, status: int, sense: bytes = b"") -> None:
        self.command_status, self.sense = status, sense
        self.status = COPY_COMPLETED if status == GOOD else COPY_FAILED


def _aborted(pair: c.AscPair, segment: BlockSegment | None, offset: int) -> CheckCondition:
    """COPY ABORTED with the segment number and a segment pointer (or a parameter list pointer when
    no segment is being processed)."""
    if segment is None:
        return CheckCondition(c.SenseKey.COPY_ABORTED, pair, field_pointer=_param_pointer(offset))
    return CheckCondition(
        c.SenseKey.COPY_ABORTED,
        pair,
        command_specific=segment.number,
        field_pointer=FieldPointer(offset, cdb=False, segment=True),
    )


@dataclass(slots=True)
class CopyManager:
    """One logical unit's copy manager: the LUs it can reach (``targets``, the array's) and the
    results held per I_T nexus and list identifier."""

    targets: Callable[[], Iterable[LogicalUnit]]
    _results: dict[NexusKey, dict[int, CopyResult]] = field(default_factory=dict)

    def result(self, key: NexusKey, list_id: int) -> CopyResult | None:
        return self._results.get(key, {}).get(list_id)

    def forget(self, key: NexusKey | None = None) -> None:
        """Discard the results of one I_T nexus (it is gone), or of all (a reset)."""
        if key is None:
            self._results.clear()
        else:
            self._results.pop(key, None)

    def begin(self, key: NexusKey, copy: CopyParameters) -> CopyResult:
        result = CopyResult(held=copy.list_id_usage == LIST_ID_HOLD)
        if copy.list_id_usage == LIST_ID_NONE:
            return result
        held = self._results.setdefault(key, {})
        previous = held.get(copy.list_id)
        if previous is not None and previous.status == COPY_IN_PROGRESS:
            raise CheckCondition(c.SenseKey.ILLEGAL_REQUEST, c.OPERATION_IN_PROGRESS, field_pointer=_param_pointer(0))
        held.pop(copy.list_id, None)
        held[copy.list_id] = result
        done = [lid for lid, r in held.items() if r.status != COPY_IN_PROGRESS]
        for lid in done[: max(0, len(held) - HELD_RESULTS_PER_NEXUS)]:
            del held[lid]
        return result

    def end(self, key: NexusKey, copy: CopyParameters, result: CopyResult) -> None:
        if not result.held:
            held = self._results.get(key, {})
            if held.get(copy.list_id) is result:
                del held[copy.list_id]

    def resolve(self, cscd: CscdDescriptor) -> LogicalUnit:
        """The LU a CSCD descriptor names: an NAA designator with logical unit association."""
        if (cscd.designator_type, cscd.association, cscd.code_set) == (
            DesignatorType.NAA,
            Association.LOGICAL_UNIT,
            CodeSet.BINARY,
        ):
            for lu in self.targets():
                if lu.naa == cscd.designator:
                    if cscd.peripheral_device_type != PeripheralDeviceType.DIRECT_ACCESS:
                        raise _aborted(c.INCORRECT_COPY_TARGET_DEVICE_TYPE, None, cscd.offset + 1)
                    if cscd.block_length != lu.block_size:
                        raise _refused(c.INVALID_FIELD_IN_PARAMETER_LIST, cscd.offset + 29)
                    return lu
        raise _aborted(c.COPY_TARGET_DEVICE_NOT_REACHABLE, None, cscd.offset + 4)

    async def run(self, key: NexusKey, copy: CopyParameters, result: CopyResult) -> None:
        devices = [self.resolve(d) for d in copy.cscds]
        for seg in copy.segments:
            await _copy_segment(devices, key, seg, result)
            result.segments_processed += 1


async def _copy_segment(devices: list[LogicalUnit], key: NexusKey, seg: BlockSegment, result: CopyResult) -> None:
    for index, field_at in ((seg.source, 4), (seg.destination, 6)):
        if index >= len(devices):
            raise _aborted(c.UNREACHABLE_COPY_TARGET, seg, field_at)
    src, dst = devices[seg.source], devices[seg.destination]
    nbytes = seg.blocks * (dst.block_size if seg.destination_count else src.block_size)
    if nbytes % src.block_size or nbytes % dst.block_size:
        raise _aborted(c.UNEXPECTED_INEXACT_SEGMENT, seg, 10)
    if nbytes > MAX_SEGMENT_LENGTH:
        raise _aborted(c.INVALID_FIELD_IN_PARAMETER_LIST, seg, 10)
    for lu, lba, at in ((src, seg.source_lba, 12), (dst, seg.destination_lba, 20)):
        if lba > lu.num_blocks:
            raise _aborted(c.NO_ADDITIONAL_SENSE, seg, at)
        if lba + nbytes // lu.block_size > lu.num_blocks:
            raise _aborted(c.NO_ADDITIONAL_SENSE, seg, 10)
    src.pr.check_access(key, Access.READ)
    dst.pr.check_access(key, Access.WRITE)
    if dst.read_only:
        raise _aborted(c.WRITE_PROTECTED, seg, 6)
    src_off, dst_off = seg.source_lba * src.block_size, seg.destination_lba * dst.block_size
    pieces = [(done, min(_PIECE, nbytes - done)) for done in range(0, nbytes, _PIECE)]
    if src is dst and src_off < dst_off < src_off + nbytes:
        pieces.reverse()  # the destination overlaps the source further on: copy from the end
    for done, n in pieces:
        try:
            data = await src.backstore.read(src_off + done, n)
        except OSError as exc:
            raise _aborted(c.UNRECOVERED_READ_ERROR, seg, 12) from exc
        try:
            async with dst.ranges.hold((dst_off + done) // dst.block_size, n // dst.block_size):
                await dst.backstore.write(dst_off + done, memoryview(data))
        except OSError as exc:
            raise _aborted(c.WRITE_ERROR, seg, 20) from exc
        result.bytes_copied += n


async def extended_copy(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """EXTENDED COPY (LID1), SPC-4 6.4: PARAMETER LIST LENGTH 0 copies nothing and is not an error."""
    plen = cmd.u32(10)
    if plen == 0:
        return ScsiResult(GOOD)
    if len(cmd.data_out) < plen:
        raise CheckCondition(c.SenseKey.ILLEGAL_REQUEST, c.PARAMETER_LIST_LENGTH_ERROR, data_out_length=plen)
    copy = parse_parameters(bytes(cmd.data_out[:plen]))
    manager = lu.copy_manager
    key = cmd.nexus.key
    result = manager.begin(key, copy)
    try:
        await manager.run(key, copy, result)
    except CheckCondition as exc:
        result.finish(c.Status.CHECK_CONDITION, exc.sense())
        raise
    except ReservationConflict:
        result.finish(c.Status.RESERVATION_CONFLICT)
        raise
    except BaseException:  # aborted: ABORT TASK, a reset, the session went
        result.finish(c.Status.TASK_ABORTED)
        raise
    else:
        result.finish(GOOD)
    finally:
        manager.end(key, copy, result)
    return ScsiResult(GOOD, data_out_length=plen)


# --- RECEIVE COPY RESULTS (SPC-3 6.17) ------------------------------------------------------------
_UNITS = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06)  # TRANSFER COUNT UNITS: bytes, KiB, MiB ... EiB


def _transfer_count(nbytes: int) -> tuple[int, int]:
    for unit in _UNITS:
        count = nbytes >> (10 * unit)
        if count <= 0xFFFFFFFF:
            return unit, count
    return _UNITS[-1], 0xFFFFFFFF


def _held_result(lu: LogicalUnit, cmd: Command) -> CopyResult:
    result = lu.copy_manager.result(cmd.nexus.key, cmd.cdb[2])
    if result is None:
        raise invalid_field(2)  # no EXTENDED COPY with this list identifier from this I_T nexus is held
    return result


async def copy_status(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """COPY STATUS (SPC-3 6.17): in progress, completed, or completed with errors; the segments
    processed and the amount of data copied.  HDD=0: no held data is ever discarded."""
    result = _held_result(lu, cmd)
    units, count = _transfer_count(result.bytes_copied)
    data = struct.pack(">IBHBI", 8, result.status, result.segments_processed, units, count)
    return ScsiResult(GOOD, alloc_trim(data, cmd.u32(10)))


async def operating_parameters(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """OPERATING PARAMETERS (SPC-3 6.17): the limits of the parser above.  SNLID=0 (no LID4)."""
    body = struct.pack(
        ">4xHHIIIII2xHBBBB3xB",
        MAX_CSCD_DESCRIPTORS,
        MAX_SEGMENT_DESCRIPTORS,
        MAX_DESCRIPTOR_LIST_LENGTH,
        MAX_SEGMENT_LENGTH,
        0,  # MAXIMUM INLINE DATA LENGTH
        0,  # HELD DATA LIMIT
        0,  # MAXIMUM STREAM DEVICE TRANSFER SIZE
        TOTAL_CONCURRENT_COPIES,
        MAX_CONCURRENT_COPIES,
        DATA_SEGMENT_GRANULARITY,
        0,  # INLINE DATA GRANULARITY
        0,  # HELD DATA GRANULARITY
        len(IMPLEMENTED_DESCRIPTORS),
    ) + bytes(IMPLEMENTED_DESCRIPTORS)
    data = struct.pack(">I", len(body)) + body
    return ScsiResult(GOOD, alloc_trim(data, cmd.u32(10)))


async def failed_segment_details(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """FAILED SEGMENT DETAILS (SPC-3 6.17): the status and sense data an EXTENDED COPY of this list
    identifier ended with.  AVAILABLE DATA 0 when it did not fail; the details are discarded once
    read in full, or when asked for with ALLOCATION LENGTH 0; a copy still running is INVALID FIELD
    IN CDB."""
    result = _held_result(lu, cmd)
    if result.status == COPY_IN_PROGRESS:
        raise invalid_field(2)
    alloc = cmd.u32(10)
    if result.status != COPY_FAILED or result.details_read:
        return ScsiResult(GOOD, alloc_trim(bytes(4), alloc))
    body = bytes(52) + struct.pack(">BxH", result.command_status, len(result.sense)) + result.sense
    data = struct.pack(">I", len(body)) + body
    result.details_read = alloc == 0 or alloc >= len(data)
    return ScsiResult(GOOD, alloc_trim(data, alloc))
