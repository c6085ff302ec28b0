"""LogicalUnit SBC-3 commands: reads and writes with residual Data-Out, LBA range and field
checks, VERIFY / COMPARE AND WRITE miscompare offsets, UNMAP validation, WRITE SAME, READ CAPACITY,
write protection and medium errors."""

from __future__ import annotations

import asyncio
import struct

import pytest

from sanpath.scsi import cdb
from sanpath.scsi.constants import SenseKey, Status
from sanpath.scsi.parse import parse_read_capacity_10, parse_read_capacity_16
from sanpath.scsi.sense import FieldPointer, parse_sense
from sanpath.target.backstore import MemoryBackstore
from sanpath.target.lu import LogicalUnit, Nexus, SbcLimits, ScsiResult

NAA = bytes.fromhex("6001405abcdef0123456789abcdef012")
N1 = Nexus("iqn.2026-01.org.example:host1,i,0x400001370000", "iqn.2026-01.org.example:array,t,0x0001", 1, 1)
BS = 512
BLOCKS = 16384  # 8 MiB


def make_lu(**kw: object) -> LogicalUnit:
    return LogicalUnit(MemoryBackstore(BLOCKS * BS), naa=NAA, serial="SP0001", **kw)  # type: ignore[arg-type]


def sense_of(result: ScsiResult) -> tuple[int, int, int]:
    assert result.status == Status.CHECK_CONDITION
    s = parse_sense(result.sense)
    return s.key, s.asc, s.ascq


ILLEGAL_FIELD = (SenseKey.ILLEGAL_REQUEST, 0x24, 0)
LBA_OOB = (SenseKey.ILLEGAL_REQUEST, 0x21, 0)


def cdb12(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIIBB", op, flags, lba, n, 0, 0)


async def test_write_then_read_every_size() -> None:
    lu = make_lu()
    payload = bytes(range(256)) * 8  # 4 blocks
    for wcdb, rcdb in (
        (bytes((0x0A, 0, 0, 8, 4, 0)), bytes((0x08, 0, 0, 8, 4, 0))),
        (cdb.write_10(8, 4), cdb.read_10(8, 4)),
        (cdb12(0xAA, 8, 4), cdb12(0xA8, 8, 4)),
        (cdb.write_16(8, 4, fua=True), cdb.read_16(8, 4, fua=True, dpo=True)),
    ):
        res = await lu.execute(N1, wcdb, payload)
        assert res.status == Status.GOOD and res.data_out_length == 4 * BS
        got = await lu.execute(N1, rcdb)
        assert got.data == payload
        await lu.execute(N1, cdb.write_10(8, 4), bytes(4 * BS))


async def test_read_6_zero_length_means_256_blocks() -> None:
    res = await make_lu().execute(N1, bytes((0x08, 0, 0, 0, 0, 0)))
    assert res.status == Status.GOOD and len(res.data) == 256 * BS


async def test_zero_blocks_and_lba_out_of_range() -> None:
    lu = make_lu()
    assert (await lu.execute(N1, cdb.read_10(0, 0))).data == b""
    assert (await lu.execute(N1, cdb.read_10(BLOCKS, 0))).status == Status.GOOD
    assert sense_of(await lu.execute(N1, cdb.read_10(BLOCKS + 1, 0))) == LBA_OOB
    assert sense_of(await lu.execute(N1, cdb.read_10(0xFFFFFFFF, 0))) == LBA_OOB
    assert sense_of(await lu.execute(N1, cdb.read_16(BLOCKS - 1, 2))) == LBA_OOB
    assert sense_of(await lu.execute(N1, cdb.read_16((1 << 64) - 1, 1))) == LBA_OOB
    assert sense_of(await lu.execute(N1, cdb.write_16(BLOCKS, 1), bytes(BS))) == LBA_OOB


@pytest.mark.parametrize("op", [0x28, 0x2A, 0x2F, 0x2E])
async def test_protect_field_is_invalid_without_protection_information(op: int) -> None:
    res = await make_lu().execute(N1, bytes((op, 0x20, 0, 0, 0, 0, 0, 0, 1, 0)), bytes(BS))
    assert sense_of(res) == ILLEGAL_FIELD
    assert parse_sense(res.sense).field_pointer == FieldPointer(1, 7)


async def test_transfer_length_limit() -> None:
    lu = make_lu(limits=SbcLimits(max_transfer_blocks=8))
    res = await lu.execute(N1, cdb.read_10(0, 9))
    assert sense_of(res) == ILLEGAL_FIELD and parse_sense(res.sense).field_pointer == FieldPointer(7)


async def test_write_residuals_follow_the_data_that_arrived() -> None:
    """iSCSI EDTL disagreeing with the SCSI transfer length (libiscsi test_write10_residuals)."""
    lu = make_lu()
    await lu.execute(N1, cdb.write_10(0, 2), b"a" * 2 * BS)
    short = await lu.execute(N1, cdb.write_10(0, 2), b"b" * BS)  # EDTL one block, CDB two
    assert short.status == Status.GOOD and short.data_out_length == 2 * BS
    assert (await lu.execute(N1, cdb.read_10(0, 2))).data == b"b" * BS + b"a" * BS
    long = await lu.execute(N1, cdb.write_10(0, 1), b"c" * 2 * BS)  # EDTL two blocks, CDB one
    assert long.data_out_length == BS
    assert (await lu.execute(N1, cdb.read_10(0, 2))).data == b"c" * BS + b"a" * BS
    nothing = await lu.execute(N1, cdb.write_10(0, 1), b"d" * 200)  # less than one block
    assert nothing.status == Status.GOOD and nothing.data_out_length == BS
    assert (await lu.execute(N1, cdb.read_10(0, 1))).data == b"c" * BS


async def test_read_only_lu() -> None:
    lu = make_lu(read_only=True)
    protect = (SenseKey.DATA_PROTECT, 0x27, 0)
    assert sense_of(await lu.execute(N1, cdb.write_10(0, 1), bytes(BS))) == protect
    assert sense_of(await lu.execute(N1, cdb.write_same_16(0, 1, unmap=True), bytes(BS))) == protect
    assert sense_of(await lu.execute(N1, cdb.unmap(24), cdb.unmap_parameter_list([(0, 1)]))) == protect
    assert (await lu.execute(N1, cdb.read_10(0, 1))).status == Status.GOOD
    assert (await lu.execute(N1, cdb.synchronize_cache_10())).status == Status.GOOD


async def test_read_capacity() -> None:
    lu = make_lu()
    rc10 = parse_read_capacity_10((await lu.execute(N1, cdb.read_capacity_10())).data)
    assert (rc10.last_lba, rc10.block_length) == (BLOCKS - 1, BS)
    res16 = await lu.execute(N1, cdb.read_capacity_16(32))
    assert len(res16.data) == 32
    rc16 = parse_read_capacity_16(res16.data)
    assert rc16.blocks == BLOCKS and rc16.lbpme and rc16.lbprz and not rc16.prot_en
    assert len((await lu.execute(N1, cdb.read_capacity_16(15))).data) == 15
    bad = bytes((0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0))  # LBA set with PMI=0
    assert sense_of(await lu.execute(N1, bad)) == ILLEGAL_FIELD
    thick = make_lu(thin=False)
    assert not parse_read_capacity_16((await thick.execute(N1, cdb.read_capacity_16())).data).lbpme


async def test_read_capacity_10_saturates_for_huge_lus() -> None:
    big = LogicalUnit(MemoryBackstore((1 << 32) * 4096, block_size=4096), naa=NAA, serial="big")
    rc10 = parse_read_capacity_10((await big.execute(N1, cdb.read_capacity_10())).data)
    assert rc10.last_lba == 0xFFFFFFFF
    assert parse_read_capacity_16((await big.execute(N1, cdb.read_capacity_16())).data).blocks == 1 << 32


def verify10(lba: int, n: int, bytchk: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2F, bytchk << 1, lba, 0, n, 0)


async def test_verify_bytchk_modes_and_miscompare_offset() -> None:
    lu = make_lu()
    data = bytes(range(256)) * 4  # 2 blocks
    await lu.execute(N1, cdb.write_10(10, 2), data)
    assert (await lu.execute(N1, verify10(10, 2, 0))).status == Status.GOOD  # no data compared
    ok = await lu.execute(N1, verify10(10, 2, 1), data)
    assert ok.status == Status.GOOD and ok.data_out_length == 2 * BS
    wrong = bytearray(data)
    wrong[BS + 27] ^= 0xFF
    res = await lu.execute(N1, verify10(10, 2, 1), bytes(wrong))
    assert sense_of(res) == (SenseKey.MISCOMPARE, 0x1D, 0) and parse_sense(res.sense).information == BS + 27
    await lu.execute(N1, cdb.write_10(20, 3), b"\x5a" * 3 * BS)
    same = await lu.execute(N1, verify10(20, 3, 3), b"\x5a" * BS)
    assert same.status == Status.GOOD and same.data_out_length == BS
    diff = await lu.execute(N1, verify10(19, 3, 3), b"\x5a" * BS)
    assert parse_sense(diff.sense).information == 0
    assert sense_of(await lu.execute(N1, verify10(0, 1, 2), bytes(BS))) == ILLEGAL_FIELD
    assert sense_of(await lu.execute(N1, verify10(BLOCKS, 1, 0))) == LBA_OOB
    v16 = struct.pack(">BBQIBB", 0x8F, 0x02, 10, 2, 0, 0)
    assert (await lu.execute(N1, v16, data)).status == Status.GOOD


async def test_write_and_verify() -> None:
    lu = make_lu()
    res = await lu.execute(N1, bytes((0x2E, 0x02, 0, 0, 0, 5, 0, 0, 1, 0)), b"q" * BS)
    assert res.status == Status.GOOD and (await lu.execute(N1, cdb.read_10(5, 1))).data == b"q" * BS


async def test_synchronize_cache_range() -> None:
    lu = make_lu()
    assert (await lu.execute(N1, cdb.synchronize_cache_16(BLOCKS - 1, 1))).status == Status.GOOD
    assert sense_of(await lu.execute(N1, cdb.synchronize_cache_16(BLOCKS - 1, 2))) == LBA_OOB


async def test_compare_and_write_success_and_miscompare() -> None:
    lu = make_lu()
    await lu.execute(N1, cdb.write_16(100, 2), b"A" * 2 * BS)
    caw = struct.pack(">BBQBBBBBB", 0x89, 0, 100, 0, 0, 0, 2, 0, 0)
    res = await lu.execute(N1, caw, b"A" * 2 * BS + b"B" * 2 * BS)
    assert res.status == Status.GOOD and res.data_out_length == 4 * BS
    assert (await lu.execute(N1, cdb.read_16(100, 2))).data == b"B" * 2 * BS
    verify_part = bytearray(b"B" * 2 * BS)
    verify_part[2 * BS - 27] = ord("C")
    res = await lu.execute(N1, caw, bytes(verify_part) + b"Z" * 2 * BS)
    assert sense_of(res) == (SenseKey.MISCOMPARE, 0x1D, 0)
    assert parse_sense(res.sense).information == 2 * BS - 27
    assert (await lu.execute(N1, cdb.read_16(100, 2))).data == b"B" * 2 * BS  # nothing written


async def test_compare_and_write_field_checks() -> None:
    lu = make_lu()
    caw = struct.pack(">BBQBBBBBB", 0x89, 0, 0, 0, 0, 0, 1, 0, 0)
    assert (
        sense_of(await lu.execute(N1, caw, bytes(4 * BS)))[0] == SenseKey.ILLEGAL_REQUEST
    )  # wrong Data-Out size
    too_many = struct.pack(">BBQBBBBBB", 0x89, 0, 0, 0, 0, 0, 255, 0, 0)
    small = make_lu(limits=SbcLimits(max_compare_and_write_blocks=4))
    res = await small.execute(N1, too_many, bytes(2 * 255 * BS))
    assert sense_of(res) == ILLEGAL_FIELD and parse_sense(res.sense).field_pointer == FieldPointer(13)
    wrapped = struct.pack(">BBQBBBBBB", 0x89, 0, 0, 0, 0, 0, 0, 0, 0)  # 256 blocks sent, field wrapped to 0
    assert sense_of(await lu.execute(N1, wrapped, bytes(2 * 256 * BS))) == ILLEGAL_FIELD
    assert (await lu.execute(N1, wrapped)).status == Status.GOOD  # a real zero-length COMPARE AND WRITE
    oob = struct.pack(">BBQBBBBBB", 0x89, 0, BLOCKS - 1, 0, 0, 0, 2, 0, 0)
    assert sense_of(await lu.execute(N1, oob, bytes(4 * BS))) == LBA_OOB


class SlowBackstore(MemoryBackstore):
    """Yields inside read and write so interleavings are possible."""

    async def read(self, offset: int, length: int) -> bytes:
        await asyncio.sleep(0.001)
        return await super().read(offset, length)

    async def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        await asyncio.sleep(0.001)
        await super().write(offset, data, fua=fua)


async def test_compare_and_write_is_atomic_against_concurrent_writers() -> None:
    """Many COMPARE AND WRITEs incrementing a counter block: with atomic compare+write exactly one
    succeeds per value, so the final value equals the number of successes."""
    lu = LogicalUnit(SlowBackstore(64 * BS), naa=NAA, serial="slow")
    await lu.execute(N1, cdb.write_10(3, 1), (0).to_bytes(BS, "big"))

    async def bump() -> int:
        wins = 0
        for _ in range(20):
            cur = (await lu.execute(N1, cdb.read_10(3, 1))).data
            new = (int.from_bytes(cur, "big") + 1).to_bytes(BS, "big")
            caw = struct.pack(">BBQBBBBBB", 0x89, 0, 3, 0, 0, 0, 1, 0, 0)
            res = await lu.execute(N1, caw, bytes(cur) + new)
            wins += res.status == Status.GOOD
        return wins

    wins = sum(await asyncio.gather(*(bump() for _ in range(6))))
    final = int.from_bytes((await lu.execute(N1, cdb.read_10(3, 1))).data, "big")
    assert final == wins > 0


async def test_unmap_reads_back_zero_and_validates() -> None:
    lu = make_lu()
    await lu.execute(N1, cdb.write_10(0, 256), b"a" * 256 * BS)
    params = cdb.unmap_parameter_list([(0, 10), (20, 0), (100, 1)])
    res = await lu.execute(N1, cdb.unmap(len(params)), params)
    assert res.status == Status.GOOD and res.data_out_length == len(params)
    data = bytes((await lu.execute(N1, cdb.read_10(0, 101))).data)
    assert data[: 10 * BS] == bytes(10 * BS) and data[10 * BS : 100 * BS] == b"a" * 90 * BS
    assert data[100 * BS :] == bytes(BS)
    assert (await lu.execute(N1, cdb.unmap(0))).status == Status.GOOD  # empty parameter list
    assert sense_of(await lu.execute(N1, cdb.unmap(6), bytes(6))) == (SenseKey.ILLEGAL_REQUEST, 0x1A, 0)
    oob = cdb.unmap_parameter_list([(BLOCKS - 1, 2)])
    assert sense_of(await lu.execute(N1, cdb.unmap(len(oob)), oob)) == LBA_OOB
    anchor = await lu.execute(N1, cdb.unmap(len(params), anchor=True), params)
    assert sense_of(anchor) == ILLEGAL_FIELD
    limited = make_lu(limits=SbcLimits(max_unmap_descriptors=2, max_unmap_lba_count=50))
    three = cdb.unmap_parameter_list([(0, 1), (2, 1), (4, 1)])
    assert sense_of(await limited.execute(N1, cdb.unmap(len(three)), three)) == (
        SenseKey.ILLEGAL_REQUEST,
        0x26,
        0,
    )
    big = cdb.unmap_parameter_list([(0, 51)])
    assert sense_of(await limited.execute(N1, cdb.unmap(len(big)), big)) == (
        SenseKey.ILLEGAL_REQUEST,
        0x26,
        0,
    )
    # a trailing partial descriptor is ignored
    partial = params[:8] + params[8:24] + params[24:30]
    partial = struct.pack(">HH", len(partial) - 2, len(partial) - 8) + partial[4:]
    assert (await lu.execute(N1, cdb.unmap(len(partial)), partial)).status == Status.GOOD


async def test_unmap_unsupported_when_fully_provisioned() -> None:
    res = await make_lu(thin=False).execute(N1, cdb.unmap(24), cdb.unmap_parameter_list([(0, 1)]))
    assert sense_of(res) == (SenseKey.ILLEGAL_REQUEST, 0x20, 0)


def ws10(lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", 0x41, flags, lba, 0, n, 0)


async def test_write_same_pattern_unmap_and_until_end() -> None:
    lu = make_lu()
    res = await lu.execute(N1, ws10(0, 300), b"\x11" * BS)
    assert res.status == Status.GOOD and res.data_out_length == BS
    assert (await lu.execute(N1, cdb.read_10(0, 300))).data == b"\x11" * 300 * BS
    assert (await lu.execute(N1, ws10(0, 10, 0x08), bytes(BS))).status == Status.GOOD  # UNMAP=1, zero block
    data = bytes((await lu.execute(N1, cdb.read_10(0, 11))).data)
    assert data == bytes(10 * BS) + b"\x11" * BS
    # on a thin LU, UNMAP=1 deallocates whatever the data block holds; a thick LU writes the data
    await lu.execute(N1, cdb.write_10(0, 2), b"\x44" * 2 * BS)
    assert (await lu.execute(N1, ws10(0, 2, 0x08), b"\x22" * BS)).status == Status.GOOD
    assert (await lu.execute(N1, cdb.read_10(0, 2))).data == bytes(2 * BS)
    thick = make_lu(thin=False)
    assert (await thick.execute(N1, ws10(0, 2, 0x08), b"\x22" * BS)).status == Status.GOOD
    assert (await thick.execute(N1, cdb.read_10(0, 2))).data == b"\x22" * 2 * BS
    # NUMBER OF LOGICAL BLOCKS 0 runs to the last LBA (WSNZ=0)
    assert (await lu.execute(N1, cdb.write_same_16(BLOCKS - 4, 0), b"\x33" * BS)).status == Status.GOOD
    assert (await lu.execute(N1, cdb.read_16(BLOCKS - 4, 4))).data == b"\x33" * 4 * BS
    # NDOB: no Data-Out, zeros
    ndob = await lu.execute(N1, cdb.write_same_16(BLOCKS - 4, 4, ndob=True, unmap=True))
    assert ndob.status == Status.GOOD and ndob.data_out_length == 0
    assert (await lu.execute(N1, cdb.read_16(BLOCKS - 4, 4))).data == bytes(4 * BS)


async def test_write_same_field_checks() -> None:
    lu = make_lu(limits=SbcLimits(max_write_same_blocks=128))
    assert (
        sense_of(await lu.execute(N1, ws10(0, 1, 0x10), bytes(BS))) == ILLEGAL_FIELD
    )  # ANCHOR without UNMAP
    assert sense_of(await lu.execute(N1, ws10(0, 1, 0x18), bytes(BS))) == ILLEGAL_FIELD  # ANC_SUP=0
    assert sense_of(await lu.execute(N1, ws10(0, 129), bytes(BS))) == ILLEGAL_FIELD
    assert sense_of(await lu.execute(N1, ws10(0, 1), bytes(BS // 2)))[0] == SenseKey.ILLEGAL_REQUEST
    assert sense_of(await lu.execute(N1, ws10(0, 1), bytes(2 * BS)))[0] == SenseKey.ILLEGAL_REQUEST
    assert sense_of(await lu.execute(N1, ws10(BLOCKS - 1, 2), bytes(BS))) == LBA_OOB
    assert sense_of(await lu.execute(N1, cdb.write_same_16(BLOCKS, 0), bytes(BS))) == LBA_OOB


class FailingBackstore(MemoryBackstore):
    async def read(self, offset: int, length: int) -> bytes:
        raise OSError(5, "Input/output error")

    async def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        raise OSError(5, "Input/output error")


async def test_backstore_errors_become_medium_errors() -> None:
    lu = LogicalUnit(FailingBackstore(64 * BS), naa=NAA, serial="bad")
    assert sense_of(await lu.execute(N1, cdb.read_10(0, 1))) == (SenseKey.MEDIUM_ERROR, 0x11, 0)
    assert sense_of(await lu.execute(N1, cdb.write_10(0, 1), bytes(BS))) == (SenseKey.MEDIUM_ERROR, 0x0C, 0)


async def test_close_flushes_and_closes_backstore() -> None:
    store = MemoryBackstore(64 * BS)
    lu = LogicalUnit(store, naa=NAA, serial="c")
    await lu.close()
    assert store.closed
