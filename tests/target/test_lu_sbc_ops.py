"""LogicalUnit SBC commands beyond plain reads and writes: ORWRITE (16), WRITE ATOMIC (16) and the
Block Limits atomic fields, PRE-FETCH (10)/(16), READ DEFECT DATA (10)/(12), and the physical block
geometry (READ CAPACITY (16) LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from sanpath.errors import ConfigError
from sanpath.scsi import cdb
from sanpath.scsi.constants import SenseKey, Status
from sanpath.scsi.parse import parse_block_limits, parse_read_capacity_16
from sanpath.scsi.sense import FieldPointer, parse_sense
from sanpath.target.lu import LogicalUnit
from tests.target.test_lu_sbc import BLOCKS, BS, ILLEGAL_FIELD, LBA_OOB, N1, make_lu, sense_of


def orwrite(lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", 0x8B, flags, lba, n, 0, 0)


def write_atomic(lba: int, n: int, flags: int = 0, boundary: int = 0) -> bytes:
    return struct.pack(">BBQHHBB", 0x9C, flags, lba, boundary, n, 0, 0)


def pre_fetch_10(lba: int, n: int, immed: bool = False, group: int = 0) -> bytes:
    return struct.pack(">BBIBHB", 0x34, 0x02 if immed else 0, lba, group, n, 0)


def pre_fetch_16(lba: int, n: int, immed: bool = False, group: int = 0) -> bytes:
    return struct.pack(">BBQIBB", 0x90, 0x02 if immed else 0, lba, n, group, 0)


async def read_back(lu: LogicalUnit, lba: int, n: int) -> bytes:
    return bytes((await lu.execute(N1, cdb.read_16(lba, n))).data)


# --- geometry ----------------------------------------------------------------------------------------


async def test_read_capacity_16_reports_the_physical_block_exponent() -> None:
    plain = parse_read_capacity_16((await make_lu().execute(N1, cdb.read_capacity_16())).data)
    assert plain.lbppbe == 0 and plain.lowest_aligned_lba == 0
    four_k = parse_read_capacity_16((await make_lu(lbppbe=3).execute(N1, cdb.read_capacity_16())).data)
    assert (four_k.lbppbe, four_k.block_length, four_k.blocks, four_k.lbpme) == (3, BS, BLOCKS, True)
    with pytest.raises(ConfigError, match=r"lu\.lbppbe"):
        make_lu(lbppbe=16)


async def test_block_limits_follow_the_physical_block() -> None:
    plain = parse_block_limits((await make_lu().execute(N1, cdb.inquiry(evpd=True, page=0xB0, alloc=64))).data)
    assert plain.optimal_transfer_length_granularity == 1 and plain.optimal_unmap_granularity == 1
    assert (plain.atomic_alignment, plain.atomic_transfer_length_granularity) == (0, 0)
    assert 256 <= plain.max_atomic_transfer_length <= plain.max_transfer_length
    lu = make_lu(lbppbe=3)
    raw = bytes((await lu.execute(N1, cdb.inquiry(evpd=True, page=0xB0, alloc=64))).data)
    assert len(raw) == 64 and raw[3] == 0x3C
    bl = parse_block_limits(raw)
    assert bl.optimal_transfer_length_granularity == 8 and bl.optimal_unmap_granularity == 8
    assert (bl.atomic_alignment, bl.atomic_transfer_length_granularity) == (8, 8)
    assert bl.max_atomic_transfer_length % 8 == 0 and bl.max_atomic_transfer_length >= 256
    assert raw[56:64] == bytes(8)  # no atomic boundaries


# --- ORWRITE (16) ------------------------------------------------------------------------------------


async def test_orwrite_ors_the_data_into_the_medium() -> None:
    lu = make_lu()
    await lu.execute(N1, cdb.write_16(10, 2), bytes([0x0F]) * BS + bytes([0x00]) * BS)
    res = await lu.execute(N1, orwrite(10, 2), bytes([0xF0]) * BS + bytes([0x5A]) * BS)
    assert res.status == Status.GOOD and res.data_out_length == 2 * BS
    assert await read_back(lu, 10, 2) == bytes([0xFF]) * BS + bytes([0x5A]) * BS
    assert (await lu.execute(N1, orwrite(0, 0))).status == Status.GOOD  # zero blocks: nothing
    fua = await lu.execute(N1, orwrite(12, 1, flags=0x18), bytes([1]) * BS)  # DPO and FUA accepted
    assert fua.status == Status.GOOD and await read_back(lu, 12, 1) == bytes([1]) * BS


async def test_orwrite_errors() -> None:
    lu = make_lu()
    for lba, n in ((BLOCKS, 1), (BLOCKS - 1, 2), (1 << 63, 1), ((1 << 64) - 1, 1), (BLOCKS + 1, 0)):
        assert sense_of(await lu.execute(N1, orwrite(lba, n), bytes(n * BS))) == LBA_OOB
    for protect in range(1, 8):  # ORPROTECT: no protection information
        res = await lu.execute(N1, orwrite(0, 1, flags=protect << 5), bytes(BS))
        assert sense_of(res) == ILLEGAL_FIELD and parse_sense(res.sense).field_pointer == FieldPointer(1, 7)
    ro = make_lu(read_only=True)
    assert sense_of(await ro.execute(N1, orwrite(0, 1), bytes(BS))) == (SenseKey.DATA_PROTECT, 0x27, 0)


# --- WRITE ATOMIC (16) -------------------------------------------------------------------------------


async def test_write_atomic_writes_whole_aligned_physical_blocks() -> None:
    lu = make_lu(lbppbe=3)
    data = bytes(range(256)) * (16 * BS // 256)
    res = await lu.execute(N1, write_atomic(8, 16), data)
    assert res.status == Status.GOOD and res.data_out_length == 16 * BS
    assert await read_back(lu, 8, 16) == data
    assert (await lu.execute(N1, write_atomic(0, 0))).status == Status.GOOD
    assert (await lu.execute(N1, write_atomic(BLOCKS - 256, 256), bytes(256 * BS))).status == Status.GOOD


async def test_write_atomic_refuses_what_it_cannot_do_atomically() -> None:
    lu = make_lu(lbppbe=3)
    most = parse_block_limits((await lu.execute(N1, cdb.inquiry(evpd=True, page=0xB0, alloc=64))).data)
    cases = [
        (write_atomic(1, 8), 8, FieldPointer(2)),  # LBA off the atomic alignment
        (write_atomic(0, 1), 1, FieldPointer(12)),  # not a multiple of the granularity
        (write_atomic(0, most.max_atomic_transfer_length + 8), most.max_atomic_transfer_length + 8, FieldPointer(12)),
        (write_atomic(0, 8, boundary=8), 8, FieldPointer(10)),  # ATOMIC BOUNDARY: none supported
        (write_atomic(0, 8, flags=0x20), 8, FieldPointer(1, 7)),  # WRPROTECT
    ]
    for c, n, pointer in cases:
        res = await lu.execute(N1, c, bytes(n * BS))
        assert sense_of(res) == ILLEGAL_FIELD and parse_sense(res.sense).field_pointer == pointer, c.hex()
    # Data-Out shorter than TRANSFER LENGTH: nothing is written (all or nothing)
    await lu.execute(N1, cdb.write_16(0, 8), bytes(8 * BS))
    assert sense_of(await lu.execute(N1, write_atomic(0, 16), bytes([7]) * (8 * BS))) == ILLEGAL_FIELD
    assert await read_back(lu, 0, 8) == bytes(8 * BS)
    for lba in (BLOCKS, BLOCKS - 8, 1 << 63, (1 << 64) - 8):
        assert sense_of(await lu.execute(N1, write_atomic(lba, 16), bytes(16 * BS))) == LBA_OOB
    ro = make_lu(read_only=True)
    assert sense_of(await ro.execute(N1, write_atomic(0, 1), bytes(BS))) == (SenseKey.DATA_PROTECT, 0x27, 0)


async def test_write_atomic_without_a_physical_block_has_no_alignment() -> None:
    lu = make_lu()
    assert (await lu.execute(N1, write_atomic(3, 5), bytes(5 * BS))).status == Status.GOOD


# --- PRE-FETCH (10)/(16) -----------------------------------------------------------------------------


@pytest.mark.parametrize("build", [pre_fetch_10, pre_fetch_16])
async def test_pre_fetch_checks_the_range_and_answers_good(build: Callable[..., bytes]) -> None:
    lu = make_lu()
    for args in ((0, 1), (BLOCKS - 256, 256), (0, 0), (BLOCKS - 1, 0)):
        res = await lu.execute(N1, build(*args))
        assert res.status == Status.GOOD and res.data == b""  # GOOD, not CONDITION MET: no cache
    assert (await lu.execute(N1, build(0, 1, immed=True, group=3))).status == Status.GOOD
    for lba, n in ((BLOCKS, 1), (BLOCKS - 1, 2), (BLOCKS, 0), (BLOCKS + 1, 0)):
        assert sense_of(await lu.execute(N1, build(lba, n))) == LBA_OOB


async def test_pre_fetch_16_beyond_32_bits() -> None:
    assert sense_of(await make_lu().execute(N1, pre_fetch_16(1 << 63, 1))) == LBA_OOB


# --- READ DEFECT DATA (10)/(12) ----------------------------------------------------------------------


async def test_read_defect_data_returns_empty_lists() -> None:
    lu = make_lu()
    res = await lu.execute(N1, struct.pack(">BBB4xHB", 0x37, 0, 0x18 | 0b011, 255, 0))  # PLIST, GLIST, long
    assert res.status == Status.GOOD and bytes(res.data) == bytes((0, 0x1B, 0, 0))
    res = await lu.execute(N1, struct.pack(">BBB4xHB", 0x37, 0, 0, 32, 0))
    assert bytes(res.data) == bytes(4)
    res = await lu.execute(N1, struct.pack(">BBIIBB", 0xB7, 0x08, 0, 32, 0, 0))  # GLIST, short block
    assert res.status == Status.GOOD and bytes(res.data) == bytes((0, 0x08)) + bytes(6)
    short = await lu.execute(N1, struct.pack(">BBB4xHB", 0x37, 0, 0x18, 2, 0))
    assert bytes(short.data) == bytes((0, 0x18))  # ALLOCATION LENGTH truncates


async def test_read_defect_data_reserved_format() -> None:
    lu = make_lu()
    res = await lu.execute(N1, struct.pack(">BBB4xHB", 0x37, 0, 0b111, 32, 0))
    assert sense_of(res) == ILLEGAL_FIELD and parse_sense(res.sense).field_pointer == FieldPointer(2, 2)
    res = await lu.execute(N1, struct.pack(">BBIIBB", 0xB7, 0b001, 0, 32, 0, 0))
    assert sense_of(res) == ILLEGAL_FIELD and parse_sense(res.sense).field_pointer == FieldPointer(1, 2)


async def test_new_commands_are_reported_by_rsoc() -> None:
    lu = make_lu()
    for opcode, length, flags in ((0x8B, 16, 0x18), (0x9C, 16, 0x18), (0x34, 10, 0x02), (0x90, 16, 0x02),
                                  (0x37, 10, 0x00), (0xB7, 12, 0x1F)):
        one = bytes((await lu.execute(N1, bytes((0xA3, 0x0C, 0x01, opcode, 0, 0, 0, 0, 1, 0, 0, 0)))).data)
        assert one[1] & 0x07 == 3 and int.from_bytes(one[2:4], "big") == length and one[4] == opcode
        assert one[5] == flags
