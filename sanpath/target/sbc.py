"""SBC-3 block commands: READ/WRITE (6/10/12/16), WRITE AND VERIFY, VERIFY, SYNCHRONIZE CACHE,
READ CAPACITY (10)/(16), GET LBA STATUS, UNMAP, WRITE SAME (10)/(16), COMPARE AND WRITE, ORWRITE (16),
PRE-FETCH (10)/(16), READ DEFECT DATA (10)/(12), and SBC-4's WRITE ATOMIC (16).

Every handler takes the LogicalUnit and the Command and returns a ScsiResult or raises
CheckCondition.  Writes hold the LU's LBA range lock so COMPARE AND WRITE, ORWRITE and WRITE ATOMIC
are atomic against them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sanpath.scsi import constants as c
from sanpath.scsi.constants import Opcode
from sanpath.target.backstore import ReportsAllocation
from sanpath.target.common import (
    GOOD,
    CheckCondition,
    Command,
    ScsiResult,
    alloc_trim,
    illegal,
    invalid_field,
    invalid_param,
    lba_out_of_range,
    write_protected,
)

if TYPE_CHECKING:
    from sanpath.target.lu import LogicalUnit


@dataclass(frozen=True, slots=True)
class SbcLimits:
    """What the Block Limits VPD page (SBC-3 6.5.3) promises and the handlers enforce."""

    max_transfer_blocks: int = 65536
    optimal_transfer_blocks: int = 2048
    max_compare_and_write_blocks: int = 255
    max_unmap_lba_count: int = 1 << 20
    max_unmap_descriptors: int = 256
    optimal_unmap_granularity: int = 1
    max_write_same_blocks: int = 1 << 20
    # WRITE ATOMIC (16): 512 blocks of 512 bytes is the file backstore's inline write (one pwrite on the
    # event loop, see FileBackstore.INLINE_IO_MAX); iscsi-test-cu writes up to 256 blocks atomically
    max_atomic_transfer_blocks: int = 512


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a CDB keeps its LBA and length: (offset, size in bytes) each."""

    lba: tuple[int, int]
    length: tuple[int, int]


_LAYOUTS: dict[int, _Layout] = {
    Opcode.READ_6: _Layout((1, 3), (4, 1)),
    Opcode.WRITE_6: _Layout((1, 3), (4, 1)),
    **{
        op: _Layout((2, 4), (7, 2))
        for op in (
            Opcode.READ_10,
            Opcode.WRITE_10,
            Opcode.VERIFY_10,
            Opcode.WRITE_AND_VERIFY_10,
            Opcode.SYNCHRONIZE_CACHE_10,
            Opcode.WRITE_SAME_10,
        )
    },
    **{
        op: _Layout((2, 4), (6, 4))
        for op in (Opcode.READ_12, Opcode.WRITE_12, Opcode.VERIFY_12, Opcode.WRITE_AND_VERIFY_12)
    },
    **{
        op: _Layout((2, 8), (10, 4))
        for op in (
            Opcode.READ_16,
            Opcode.WRITE_16,
            Opcode.ORWRITE_16,
            Opcode.VERIFY_16,
            Opcode.WRITE_AND_VERIFY_16,
            Opcode.PRE_FETCH_16,
            Opcode.SYNCHRONIZE_CACHE_16,
            Opcode.WRITE_SAME_16,
        )
    },
    Opcode.PRE_FETCH_10: _Layout((2, 4), (7, 2)),
    Opcode.COMPARE_AND_WRITE: _Layout((2, 8), (13, 1)),
    Opcode.WRITE_ATOMIC_16: _Layout((2, 8), (12, 2)),
}


def _lba_and_length(cmd: Command) -> tuple[int, int, int]:
    """(LBA, number of blocks, CDB byte of the length field)."""
    op = cmd.cdb[0]
    lay = _LAYOUTS[op]
    lba = int.from_bytes(cmd.cdb[lay.lba[0] : lay.lba[0] + lay.lba[1]], "big")
    n = int.from_bytes(cmd.cdb[lay.length[0] : lay.length[0] + lay.length[1]], "big")
    if op in (Opcode.READ_6, Opcode.WRITE_6):
        lba &= 0x1FFFFF
        n = n or 256  # SBC-3 5.10: TRANSFER LENGTH 0 in READ (6)/WRITE (6) means 256 blocks
    return lba, n, lay.length[0]


def check_lba_range(lu: LogicalUnit, lba: int, n: int) -> None:
    """SBC-3 4.5: LBA OUT OF RANGE when the range runs past the last LBA."""
    if lba > lu.num_blocks or lba + n > lu.num_blocks:
        raise lba_out_of_range()


def _check_transfer(lu: LogicalUnit, n: int, length_byte: int) -> None:
    if n > lu.limits.max_transfer_blocks:
        raise invalid_field(length_byte)


_SIX_BYTE = frozenset({int(Opcode.READ_6), int(Opcode.WRITE_6)})  # no protect field


def _check_protect(cmd: Command) -> None:
    """RDPROTECT/WRPROTECT/VRPROTECT must be zero: sanpath has no protection information."""
    if cmd.cdb[1] & 0xE0 and cmd.cdb[0] not in _SIX_BYTE:
        raise invalid_field(1, 7)


def _check_writable(lu: LogicalUnit) -> None:
    if lu.read_only:
        raise write_protected()


def _first_difference(a: bytes | bytearray | memoryview, b: bytes | bytearray | memoryview) -> int:
    """Offset of the first differing byte of two equal-length buffers, or -1."""
    if a == b:
        return -1
    ma, mb = memoryview(a), memoryview(b)
    lo, hi = 0, len(ma)
    while hi - lo > 64:  # bisect on slices: comparisons run in C
        mid = (lo + hi) // 2
        if ma[lo:mid] != mb[lo:mid]:
            hi = mid
        else:
            lo = mid
    return next(i for i in range(lo, hi) if ma[i] != mb[i])


def _miscompare(offset: int) -> CheckCondition:
    """SBC-3 5.3 / 5.30: MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION, INFORMATION = offset."""
    return CheckCondition(c.SenseKey.MISCOMPARE, c.MISCOMPARE_DURING_VERIFY, information=offset)


# --- READ / WRITE ----------------------------------------------------------------------------
async def read(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """READ (6)/(10)/(12)/(16), SBC-3 5.10-5.13.  DPO/FUA are accepted (DPOFUA=1)."""
    _check_protect(cmd)
    lba, n, lbyte = _lba_and_length(cmd)
    _check_transfer(lu, n, lbyte)
    check_lba_range(lu, lba, n)
    if n == 0:
        return ScsiResult(GOOD)
    bs = lu.block_size
    return ScsiResult(GOOD, await lu.backstore.read(lba * bs, n * bs))


async def _write_blocks(lu: LogicalUnit, cmd: Command, lba: int, n: int, *, fua: bool) -> int:
    """Write the whole blocks of Data-Out the initiator sent (at most ``n``); returns the Data-Out
    length the CDB called for.  Less Data-Out than the CDB asks for (iSCSI EDTL smaller than the
    SCSI transfer length) writes only what arrived; the iSCSI layer reports the overflow."""
    bs = lu.block_size
    expected = n * bs
    whole = min(len(cmd.data_out), expected) // bs * bs
    if whole:
        async with lu.ranges.hold(lba, n):
            await lu.backstore.write(lba * bs, memoryview(cmd.data_out)[:whole], fua=fua)
    return expected


async def write(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """WRITE (6)/(10)/(12)/(16), SBC-3 5.31-5.34; FUA=1 writes through to the medium."""
    _check_protect(cmd)
    lba, n, lbyte = _lba_and_length(cmd)
    _check_transfer(lu, n, lbyte)
    check_lba_range(lu, lba, n)
    _check_writable(lu)
    fua = cmd.cdb[0] != Opcode.WRITE_6 and bool(cmd.cdb[1] & 0x08)
    return ScsiResult(GOOD, data_out_length=await _write_blocks(lu, cmd, lba, n, fua=fua))


async def write_and_verify(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """WRITE AND VERIFY (10)/(12)/(16), SBC-3 5.35-5.37.  The written data is read back through
    the same backstore, so the verify step cannot fail short of an I/O error."""
    _check_protect(cmd)
    if cmd.cdb[1] & 0x04:  # BYTCHK 10b/11b (SBC-4 encoding) are not defined for this command here
        raise invalid_field(1, 2)
    lba, n, lbyte = _lba_and_length(cmd)
    _check_transfer(lu, n, lbyte)
    check_lba_range(lu, lba, n)
    _check_writable(lu)
    return ScsiResult(GOOD, data_out_length=await _write_blocks(lu, cmd, lba, n, fua=True))


async def verify(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """VERIFY (10)/(12)/(16), SBC-3 5.29-5.30.  BYTCHK 00b: medium check only (always good);
    01b: compare the Data-Out with the medium; 11b: compare one Data-Out block with every block."""
    _check_protect(cmd)
    bytchk = (cmd.cdb[1] >> 1) & 0x3
    if bytchk == 0b10:
        raise invalid_field(1, 2)
    lba, n, lbyte = _lba_and_length(cmd)
    _check_transfer(lu, n, lbyte)
    check_lba_range(lu, lba, n)
    bs = lu.block_size
    if bytchk == 0b00 or n == 0:
        return ScsiResult(GOOD)
    medium = await lu.backstore.read(lba * bs, n * bs)
    if bytchk == 0b01:
        expected_len = n * bs
        supplied = memoryview(cmd.data_out)[: min(len(cmd.data_out), expected_len) // bs * bs]
        off = _first_difference(supplied, memoryview(medium)[: len(supplied)])
    else:
        expected_len = bs
        pattern = bytes(cmd.data_out[:bs])
        off = -1
        if len(pattern) == bs:
            off = _first_difference(pattern * n, medium)
    if off >= 0:
        raise _miscompare(off)
    return ScsiResult(GOOD, data_out_length=expected_len)


async def synchronize_cache(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """SYNCHRONIZE CACHE (10)/(16), SBC-3 5.22-5.23; NUMBER OF BLOCKS 0 means to the last LBA.
    IMMED is accepted and the flush still completes before status (always allowed)."""
    lba, n, _ = _lba_and_length(cmd)
    check_lba_range(lu, lba, n)
    await lu.backstore.flush()
    return ScsiResult(GOOD)


# --- READ CAPACITY ---------------------------------------------------------------------------
async def read_capacity_10(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """READ CAPACITY (10), SBC-3 5.15: last LBA (FFFFFFFFh when it does not fit) and block length."""
    pmi = cmd.cdb[8] & 0x01
    if not pmi and cmd.u32(2):
        raise invalid_field(2)
    last = min(lu.num_blocks - 1, 0xFFFFFFFF)
    return ScsiResult(GOOD, struct.pack(">II", last, lu.block_size))


async def read_capacity_16(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """READ CAPACITY (16), SBC-3 5.16: adds LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (the LU's
    physical block, e.g. 3 for 4 KiB under 512-byte blocks), LBPME (thin provisioning) and LBPRZ
    (unmapped blocks read as zero)."""
    alloc = cmd.u32(10)
    b14 = 0xC0 if lu.thin else 0x00  # LBPME | LBPRZ; lowest aligned LBA 0
    data = struct.pack(">QIBBBB", lu.num_blocks - 1, lu.block_size, 0, lu.lbppbe, b14, 0) + bytes(16)
    return ScsiResult(GOOD, alloc_trim(data, alloc))


# --- GET LBA STATUS --------------------------------------------------------------------------
_LBA_STATUS_HEADER = struct.Struct(">I4x")
_LBA_STATUS_DESC = struct.Struct(">QIB3x")
_MAX_LBA_STATUS_DESCRIPTORS = 1024  # 16 KiB of descriptors; the device server may return fewer
_MAX_DESC_BLOCKS = 0xFFFFFFFF  # NUMBER OF LOGICAL BLOCKS is 32 bits: longer extents are split
PROVISIONING_MAPPED = 0x0
PROVISIONING_DEALLOCATED = 0x1
PROVISIONING_ANCHORED = 0x2  # never reported: ANC_SUP=0


async def get_lba_status(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """GET LBA STATUS, SBC-3 5.7: LBA status descriptors (5.7.2.2) from the STARTING LOGICAL BLOCK
    ADDRESS on, each a run of blocks with one provisioning status: 0h mapped, 1h deallocated (reads
    as zeros: LBPRZ=1).  As many descriptors as fit the ALLOCATION LENGTH (at least one, trimmed
    when even that does not fit), capped at 1024; the first starts at the requested LBA.  The
    SBC-4 REPORT TYPE field (byte 14) must be zero: every LBA is reported."""
    lba, alloc = cmd.u64(2), cmd.u32(10)
    if cmd.cdb[14] & 0x03:
        raise invalid_field(14, 1 if cmd.cdb[14] & 0x02 else 0)
    if lba >= lu.num_blocks:
        raise lba_out_of_range()
    room = max(1, min((alloc - _LBA_STATUS_HEADER.size) // _LBA_STATUS_DESC.size, _MAX_LBA_STATUS_DESCRIPTORS))
    bs = lu.block_size
    offset, length = lba * bs, (lu.num_blocks - lba) * bs
    store = lu.backstore
    if lu.thin and isinstance(store, ReportsAllocation):
        extents = await store.allocation(offset, length, limit=room)
    else:  # fully provisioned, or a backstore that cannot tell: every LBA is mapped
        extents = [(offset, length, True)]
    descs = bytearray()
    count = 0
    for start, size, mapped in extents:
        first, blocks = start // bs, size // bs
        status = PROVISIONING_MAPPED if mapped else PROVISIONING_DEALLOCATED
        while blocks and count < room:
            n = min(blocks, _MAX_DESC_BLOCKS)
            descs += _LBA_STATUS_DESC.pack(first, n, status)
            first, blocks, count = first + n, blocks - n, count + 1
    # PARAMETER DATA LENGTH counts the bytes after itself: the reserved 4 and the descriptors
    data = _LBA_STATUS_HEADER.pack(4 + len(descs)) + descs
    return ScsiResult(GOOD, alloc_trim(data, alloc))


# --- UNMAP / WRITE SAME ----------------------------------------------------------------------
_UNMAP_DESC = struct.Struct(">QI4x")


async def unmap(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """UNMAP, SBC-3 5.28: validate the parameter list (5.28.2) then deallocate every extent."""
    if cmd.cdb[1] & 0x01:  # ANCHOR: ANC_SUP=0 in the Logical Block Provisioning VPD page
        raise invalid_field(1, 0)
    plen = cmd.u16(7)
    if plen == 0:
        return ScsiResult(GOOD)
    if plen < 8:
        raise illegal(c.PARAMETER_LIST_LENGTH_ERROR)
    params = bytes(cmd.data_out[:plen])
    if len(params) < 8:
        raise CheckCondition(c.SenseKey.ILLEGAL_REQUEST, c.PARAMETER_LIST_LENGTH_ERROR, data_out_length=plen)
    bd_len = int.from_bytes(params[2:4], "big")
    usable = min(bd_len, len(params) - 8) // 16  # an incomplete trailing descriptor is ignored
    if usable > lu.limits.max_unmap_descriptors:
        raise invalid_param(2)
    extents: list[tuple[int, int]] = []
    total = 0
    for i in range(usable):
        lba, n = _UNMAP_DESC.unpack_from(params, 8 + 16 * i)
        check_lba_range(lu, lba, n)
        total += n
        if n:
            extents.append((lba, n))
    if total > lu.limits.max_unmap_lba_count:
        raise invalid_param(8 + 8)
    _check_writable(lu)
    bs = lu.block_size
    for lba, n in extents:
        async with lu.ranges.hold(lba, n):
            await lu.backstore.unmap(lba * bs, n * bs)
    return ScsiResult(GOOD, data_out_length=plen)


_WS_CHUNK = 1 << 20


async def write_same(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """WRITE SAME (10)/(16), SBC-3 5.41-5.42.  ANCHOR needs UNMAP and is unsupported (ANC_SUP=0);
    NDOB (16 only) writes zeros without Data-Out; NUMBER OF BLOCKS 0 (WSNZ=0) runs to the last LBA.
    On a thin LU, UNMAP=1 deallocates the range whatever the data block holds (as LIO does and
    iscsi-test-cu WriteSame*.UnmapUntilEnd expects); the blocks then read as zeros (LBPRZ=1)."""
    _check_protect(cmd)
    b1 = cmd.cdb[1]
    anchor, unmap_bit = bool(b1 & 0x10), bool(b1 & 0x08)
    ndob = cmd.cdb[0] == Opcode.WRITE_SAME_16 and bool(b1 & 0x01)
    if anchor:
        raise invalid_field(1, 4)
    lba, n, lbyte = _lba_and_length(cmd)
    if n > lu.limits.max_write_same_blocks:
        raise invalid_field(lbyte)
    if n == 0:
        if lba >= lu.num_blocks:
            raise lba_out_of_range()
        n = lu.num_blocks - lba
    check_lba_range(lu, lba, n)
    _check_writable(lu)
    bs = lu.block_size
    if ndob:
        block = bytes(bs)
        expected = 0
    else:
        expected = bs
        if len(cmd.data_out) != bs:  # exactly one logical block of Data-Out (SBC-3 5.41)
            raise invalid_field(lbyte)
        block = bytes(cmd.data_out)
    async with lu.ranges.hold(lba, n):
        if unmap_bit and lu.thin:
            await lu.backstore.unmap(lba * bs, n * bs)
        else:
            per = max(1, _WS_CHUNK // bs)
            chunk = block * min(per, n)
            done = 0
            while done < n:
                k = min(per, n - done)
                await lu.backstore.write((lba + done) * bs, memoryview(chunk)[: k * bs])
                done += k
    return ScsiResult(GOOD, data_out_length=expected)


async def compare_and_write(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """COMPARE AND WRITE, SBC-3 5.2: the Data-Out holds NUMBER OF BLOCKS of verify data then as
    many of write data; on a mismatch nothing is written and the INFORMATION field carries the
    offset of the first differing byte.  Atomic against other writes through the range lock."""
    _check_protect(cmd)
    lba, n, lbyte = _lba_and_length(cmd)
    if n > lu.limits.max_compare_and_write_blocks:
        raise invalid_field(lbyte)
    check_lba_range(lu, lba, n)
    _check_writable(lu)
    bs = lu.block_size
    expected = 2 * n * bs
    if len(cmd.data_out) != expected:
        # Data-Out that disagrees with NUMBER OF LOGICAL BLOCKS, including 256 blocks' worth sent with
        # the 8-bit field wrapped to 0 (iscsi-test-cu CompareAndWrite.Simple/InvalidDataOutSize)
        raise invalid_field(lbyte)
    if n == 0:
        return ScsiResult(GOOD)
    view = memoryview(cmd.data_out)
    fua = bool(cmd.cdb[1] & 0x08)
    async with lu.ranges.hold(lba, n):
        current = await lu.backstore.read(lba * bs, n * bs)
        off = _first_difference(view[: n * bs], current)
        if off >= 0:
            raise _miscompare(off)
        await lu.backstore.write(lba * bs, view[n * bs :], fua=fua)
    return ScsiResult(GOOD, data_out_length=expected)


# --- ORWRITE / WRITE ATOMIC ------------------------------------------------------------------
async def orwrite(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """ORWRITE (16) (SBC-3): the medium becomes the bitwise OR of its data and the Data-Out, read
    and written under the range lock (atomic against other writers).  ORPROTECT must be zero; DPO is
    accepted, FUA=1 writes through.  Whole blocks of Data-Out are used, as for WRITE."""
    _check_protect(cmd)
    lba, n, lbyte = _lba_and_length(cmd)
    _check_transfer(lu, n, lbyte)
    check_lba_range(lu, lba, n)
    _check_writable(lu)
    bs = lu.block_size
    expected = n * bs
    whole = min(len(cmd.data_out), expected) // bs * bs
    if whole:
        async with lu.ranges.hold(lba, n):
            current = await lu.backstore.read(lba * bs, whole)
            merged = int.from_bytes(current, "little") | int.from_bytes(cmd.data_out[:whole], "little")
            await lu.backstore.write(lba * bs, merged.to_bytes(whole, "little"), fua=bool(cmd.cdb[1] & 0x08))
    return ScsiResult(GOOD, data_out_length=expected)


@dataclass(frozen=True, slots=True)
class AtomicLimits:
    """The Block Limits VPD page's atomic fields (SBC-4 6.6.4): MAXIMUM ATOMIC TRANSFER LENGTH,
    ATOMIC ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY, in logical blocks (0: no constraint)."""

    max_transfer: int
    alignment: int
    granularity: int


def atomic_limits(lu: LogicalUnit) -> AtomicLimits:
    """Atomic writes are whole physical blocks: with 2^LBPPBE > 1 logical blocks per physical block
    they must start on one and cover whole ones."""
    per_physical = 1 << lu.lbppbe
    step = per_physical if per_physical > 1 else 0
    most = max(lu.limits.max_atomic_transfer_blocks // per_physical, 1) * per_physical
    return AtomicLimits(min(most, lu.limits.max_transfer_blocks), step, step)


async def write_atomic(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """WRITE ATOMIC (16) (SBC-4): the blocks are written whole or not at all, under the range lock,
    so no other writer interleaves (and on the event loop no reader sees half of it, as long as the
    backstore writes inline: see SbcLimits.max_atomic_transfer_blocks).  TRANSFER LENGTH beyond the
    MAXIMUM ATOMIC TRANSFER LENGTH, or not a multiple of the granularity, and an LBA off the alignment
    are INVALID FIELD IN CDB; ATOMIC BOUNDARY must be zero (MAXIMUM ATOMIC BOUNDARY SIZE is 0); the
    Data-Out must be exactly TRANSFER LENGTH blocks."""
    _check_protect(cmd)
    lba, n, lbyte = _lba_and_length(cmd)
    if cmd.u16(10):
        raise invalid_field(10)
    limits = atomic_limits(lu)
    if n > limits.max_transfer or (limits.granularity and n % limits.granularity):
        raise invalid_field(lbyte)
    if limits.alignment and lba % limits.alignment:
        raise invalid_field(2)
    check_lba_range(lu, lba, n)
    _check_writable(lu)
    bs = lu.block_size
    if len(cmd.data_out) != n * bs:
        raise invalid_field(lbyte)
    if n:
        async with lu.ranges.hold(lba, n):
            await lu.backstore.write(lba * bs, memoryview(cmd.data_out), fua=bool(cmd.cdb[1] & 0x08))
    return ScsiResult(GOOD, data_out_length=n * bs)


# --- PRE-FETCH / READ DEFECT DATA ------------------------------------------------------------
async def pre_fetch(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """PRE-FETCH (10)/(16) (SBC-3): the range is checked (PREFETCH LENGTH 0 runs to the last
    LBA) and nothing is read: the LU has no cache of its own (a file backstore's is the host's page
    cache).  GOOD, not CONDITION MET, says exactly that: not every block was put in a cache.  IMMED and
    the group number are accepted."""
    lba, n, _ = _lba_and_length(cmd)
    if n == 0:
        if lba >= lu.num_blocks:
            raise lba_out_of_range()
        n = lu.num_blocks - lba
    check_lba_range(lu, lba, n)
    return ScsiResult(GOOD)


# DEFECT LIST FORMAT (SBC-3): short block, long block, bytes from index, physical sector, vendor specific
_DEFECT_LIST_FORMATS = frozenset({0b000, 0b011, 0b100, 0b101, 0b110})


async def read_defect_data(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """READ DEFECT DATA (10)/(12) (SBC-3): a virtual disk has no defects, so both the primary
    (PLIST) and grown (GLIST) lists are empty; each requested one is reported valid, in the requested
    format.  A reserved format is INVALID FIELD IN CDB."""
    ten = cmd.cdb[0] == Opcode.READ_DEFECT_DATA_10
    flags_byte = 2 if ten else 1
    flags = cmd.cdb[flags_byte] & 0x1F  # REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT
    if flags & 0x07 not in _DEFECT_LIST_FORMATS:
        raise invalid_field(flags_byte, 2)
    # header: PLISTV / GLISTV / format in byte 1, then DEFECT LIST LENGTH 0 (2 bytes, or 4 after a reserved pair)
    header = struct.pack(">xBH", flags, 0) if ten else struct.pack(">xBxxI", flags, 0)
    return ScsiResult(GOOD, alloc_trim(header, cmd.u16(7) if ten else cmd.u32(6)))
