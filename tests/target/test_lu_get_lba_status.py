"""GET LBA STATUS (SBC-3 5.7) and the backstores' provisioning reports behind it: mapped and
deallocated runs after writes and UNMAP (including UNMAPs smaller than a file system block or a
memory chunk), ALLOCATION LENGTH truncation, descriptor splitting, LBA OUT OF RANGE, and a model
check that a block is never reported deallocated while it holds data."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sanpath.scsi import cdb
from sanpath.scsi.constants import SenseKey, Status
from sanpath.scsi.sense import FieldPointer, parse_sense
from sanpath.target.backstore import FileBackstore, MemoryBackstore, ReportsAllocation, _ZeroedRanges
from sanpath.target.lu import LogicalUnit, Nexus, ScsiResult

NAA = bytes.fromhex("6001405abcdef0123456789abcdef012")
N1 = Nexus("iqn.2026-01.org.example:host1,i,0x400001370000", "iqn.2026-01.org.example:array,t,0x0001", 1, 1)
BS = 512
BLOCKS = 16384  # 8 MiB
MAPPED, DEALLOCATED = 0, 1


def make_lu(store: MemoryBackstore | FileBackstore | None = None, **kw: object) -> LogicalUnit:
    return LogicalUnit(store or MemoryBackstore(BLOCKS * BS), naa=NAA, serial="SP0001", **kw)  # type: ignore[arg-type]


def glbas(lba: int, alloc: int = 8 + 16 * 64, report_type: int = 0) -> bytes:
    """GET LBA STATUS CDB: SERVICE ACTION IN (16), service action 12h."""
    return struct.pack(">BBQIBB", 0x9E, 0x12, lba, alloc, report_type, 0)


def descriptors(result: ScsiResult) -> list[tuple[int, int, int]]:
    assert result.status == Status.GOOD, parse_sense(result.sense)
    data = bytes(result.data)
    (length,) = struct.unpack_from(">I", data)
    assert length == len(data) - 4 and (length - 4) % 16 == 0
    return [struct.unpack_from(">QIB", data, off) for off in range(8, len(data), 16)]


async def status(lu: LogicalUnit, lba: int, alloc: int = 8 + 16 * 64) -> list[tuple[int, int, int]]:
    return descriptors(await lu.execute(N1, glbas(lba, alloc)))


async def write(lu: LogicalUnit, lba: int, n: int, fill: bytes = b"\xa5") -> None:
    assert (await lu.execute(N1, cdb.write_16(lba, n), fill * (n * BS))).status == Status.GOOD


async def unmap(lu: LogicalUnit, *extents: tuple[int, int]) -> None:
    params = cdb.unmap_parameter_list(list(extents))
    assert (await lu.execute(N1, cdb.unmap(len(params)), params)).status == Status.GOOD


def sense_of(result: ScsiResult) -> tuple[int, int, int]:
    assert result.status == Status.CHECK_CONDITION
    s = parse_sense(result.sense)
    return s.key, s.asc, s.ascq


# --- the command ------------------------------------------------------------------------------
async def test_fresh_thin_lu_is_all_deallocated() -> None:
    lu = make_lu()
    assert await status(lu, 0) == [(0, BLOCKS, DEALLOCATED)]
    assert await status(lu, BLOCKS - 1) == [(BLOCKS - 1, 1, DEALLOCATED)]


async def test_written_blocks_are_mapped() -> None:
    lu = make_lu()
    await write(lu, 0, 256)  # two whole 64 KiB chunks
    assert await status(lu, 0) == [(0, 256, MAPPED), (256, BLOCKS - 256, DEALLOCATED)]
    assert await status(lu, 100) == [(100, 156, MAPPED), (256, BLOCKS - 256, DEALLOCATED)]


async def test_unmap_single_blocks_report_deallocated_at_block_granularity() -> None:
    """iscsi-test-cu GetLBAStatus.UnmapSingle: 257 written blocks, one UNMAPped, reported as a
    single deallocated block (Block Limits promises an OPTIMAL UNMAP GRANULARITY of 1)."""
    lu = make_lu()
    for i in (0, 5, 127, 128, 255):
        await write(lu, 0, 257)
        await unmap(lu, (i, 1))
        assert (await status(lu, i, 24)) == [(i, 1, DEALLOCATED)]
    await write(lu, 0, 257)
    for i in (1, 77, 255):
        await write(lu, 0, 257)
        await unmap(lu, (0, i))
        assert await status(lu, 0, 24) == [(0, i, DEALLOCATED)]
        assert await status(lu, i - 1, 24) == [(i - 1, 1, DEALLOCATED)]


async def test_mixed_ranges_and_rewrite() -> None:
    lu = make_lu()
    await write(lu, 0, 1024)
    await unmap(lu, (10, 3), (128, 128), (600, 1))
    assert await status(lu, 0) == [
        (0, 10, MAPPED),
        (10, 3, DEALLOCATED),
        (13, 115, MAPPED),
        (128, 128, DEALLOCATED),
        (256, 344, MAPPED),
        (600, 1, DEALLOCATED),
        (601, 423, MAPPED),
        (1024, BLOCKS - 1024, DEALLOCATED),
    ]
    assert (await lu.execute(N1, cdb.read_16(600, 1))).data == bytes(BS)
    await write(lu, 11, 1)  # a write maps its block again, splitting the deallocated run
    assert (await status(lu, 10))[:3] == [(10, 1, DEALLOCATED), (11, 1, MAPPED), (12, 1, DEALLOCATED)]
    await write(lu, 128, 128)  # a released chunk comes back
    assert (await status(lu, 128))[0] == (128, 472, MAPPED)


async def test_write_same_unmap_deallocates() -> None:
    lu = make_lu()
    await write(lu, 0, 64)
    res = await lu.execute(N1, cdb.write_same_16(8, 8, unmap=True), bytes(BS))
    assert res.status == Status.GOOD
    assert await status(lu, 0) == [(0, 8, MAPPED), (8, 8, DEALLOCATED), (16, 48, MAPPED), (64, BLOCKS - 64, 1)]


async def test_allocation_length_caps_and_truncates() -> None:
    lu = make_lu()
    for lba in range(0, 64, 2):  # 63 alternating one-block runs, then the deallocated rest
        await write(lu, lba, 1)
        await unmap(lu, (lba + 1, 1))
    full = await status(lu, 0, 8 + 16 * 1024)
    assert len(full) == 64 and full[-1] == (63, BLOCKS - 63, DEALLOCATED)
    assert [d[2] for d in full[:4]] == [MAPPED, DEALLOCATED, MAPPED, DEALLOCATED]
    assert await status(lu, 0, 24) == full[:1]  # exactly one descriptor fits
    assert await status(lu, 0, 8 + 16 * 3 + 15) == full[:3]  # no partial descriptor is built
    assert await status(lu, 3, 40) == [(3, 1, DEALLOCATED), (4, 1, MAPPED)]
    # below one descriptor: one is built and the data cut at the ALLOCATION LENGTH (SPC-4 4.2.5.6)
    short = await lu.execute(N1, glbas(0, 12))
    assert short.status == Status.GOOD and bytes(short.data) == struct.pack(">I4xQ", 20, 0)[:12]
    assert bytes((await lu.execute(N1, glbas(0, 0))).data) == b""


async def test_lba_out_of_range_and_report_type() -> None:
    lu = make_lu()
    oob = (SenseKey.ILLEGAL_REQUEST, 0x21, 0x00)
    assert sense_of(await lu.execute(N1, glbas(BLOCKS))) == oob
    assert sense_of(await lu.execute(N1, glbas((1 << 64) - 1))) == oob
    bad = await lu.execute(N1, glbas(0, report_type=1))  # SBC-4 REPORT TYPE: only "all LBAs" here
    assert sense_of(bad) == (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00)
    assert parse_sense(bad.sense).field_pointer == FieldPointer(14, 0)


async def test_fully_provisioned_lu_reports_every_lba_mapped() -> None:
    lu = make_lu(thin=False)
    assert await status(lu, 7) == [(7, BLOCKS - 7, MAPPED)]


async def test_runs_longer_than_32_bits_of_blocks_are_split() -> None:
    blocks = (1 << 33) + 5  # a sparse 4 TiB memory LU costs nothing
    lu = LogicalUnit(MemoryBackstore(blocks * BS), naa=NAA, serial="SP0002")
    got = await status(lu, 0)
    assert got == [(0, 0xFFFFFFFF, 1), (0xFFFFFFFF, 0xFFFFFFFF, 1), (0x1FFFFFFFE, 7, 1)]
    assert await status(lu, 0, 24) == got[:1]


async def test_listed_by_report_supported_operation_codes() -> None:
    lu = make_lu()
    rsoc = bytes((0xA3, 0x0C, 0x02, 0x9E, 0x00, 0x12, 0, 0, 1, 0, 0, 0))  # one command, by service action
    one = bytes((await lu.execute(N1, rsoc)).data)
    assert one[1] & 0x07 == 3 and int.from_bytes(one[2:4], "big") == 16
    assert one[4:6] == bytes((0x9E, 0x1F)) and one[4 + 14] == 0x00  # REPORT TYPE not supported


# --- file backstore: holes plus sub-block residue ----------------------------------------------
async def test_file_lu_reports_holes_and_partial_unmaps(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    lu = make_lu(FileBackstore(path, BLOCKS * BS))
    assert await status(lu, 0) == [(0, BLOCKS, DEALLOCATED)]
    await write(lu, 2048, 2048)  # 1 MiB at 1 MiB
    assert await status(lu, 0) == [(0, 2048, DEALLOCATED), (2048, 2048, MAPPED), (4096, BLOCKS - 4096, DEALLOCATED)]
    await unmap(lu, (2049, 1), (3072, 128))  # one 512-byte block (within a 4 KiB fs block), 64 KiB aligned
    assert await status(lu, 2048) == [
        (2048, 1, MAPPED),
        (2049, 1, DEALLOCATED),
        (2050, 1022, MAPPED),
        (3072, 128, DEALLOCATED),
        (3200, 896, MAPPED),
        (4096, BLOCKS - 4096, DEALLOCATED),
    ]
    await write(lu, 2049, 1)
    assert (await status(lu, 2048))[0] == (2048, 1024, MAPPED)
    await lu.close()
    # a restart forgets what was only zeroed in place but still sees the punched hole
    again = make_lu(FileBackstore(path))
    assert (await status(again, 3072))[0] == (3072, 128, DEALLOCATED)
    await again.close()


async def test_file_allocation_scans_long_maps_in_a_thread(tmp_path: Path) -> None:
    store = FileBackstore(tmp_path / "frag.img", 4 << 20)
    for i in range(0, 4 << 20, 64 << 10):  # 32 data runs of 32 KiB, each followed by a 32 KiB hole
        await store.write(i, b"\x01" * (32 << 10))
    extents = await store.allocation(0, 4 << 20)  # no limit: the threaded path
    assert len(extents) == 128 and extents[0] == (0, 32 << 10, True) and extents[1] == (32 << 10, 32 << 10, False)
    assert await store.allocation(0, 4 << 20, limit=200) == extents
    assert await store.allocation(0, 4 << 20, limit=3) == extents[:3]
    store.close()


# --- the bookkeeping and a model check ----------------------------------------------------------
def test_zeroed_ranges_merge_split_and_bound() -> None:
    z = _ZeroedRanges()
    z.add(0, 10)
    z.add(20, 30)
    z.add(10, 20)  # touching both: one range
    assert list(z.within(0, 100)) == [(0, 30)]
    z.discard(5, 7)
    assert list(z.within(0, 100)) == [(0, 5), (7, 30)]
    assert list(z.within(6, 8)) == [(7, 8)]
    z.discard(0, 100)
    assert len(z) == 0
    for i in range(z.MAX_RANGES + 10):
        z.add(2 * i, 2 * i + 1)
    assert len(z) == z.MAX_RANGES  # forgetting is safe: the range then reports mapped


_OPS = st.lists(
    st.tuples(st.booleans(), st.integers(0, 511), st.integers(1, 300)),  # (write?, lba, blocks)
    max_size=30,
)


async def _check_model(store: MemoryBackstore | FileBackstore, ops: list[tuple[bool, int, int]]) -> None:
    """Replay writes and UNMAPs; the report must match a per-block model exactly: deallocated
    is precisely "never written, or UNMAPped since the last write" (never a block holding data,
    and every UNMAP visible at block granularity however the storage allocates)."""
    assert isinstance(store, ReportsAllocation)
    total = store.size // BS
    deallocated = set(range(total))
    for is_write, lba, n in ops:
        n = min(n, total - lba)
        if is_write:
            await store.write(lba * BS, b"\x5a" * (n * BS))
            deallocated -= set(range(lba, lba + n))
        else:
            await store.unmap(lba * BS, n * BS)
            deallocated |= set(range(lba, lba + n))
    extents = await store.allocation(0, store.size)
    pos = 0
    for i, (off, length, mapped) in enumerate(extents):
        assert off == pos and length > 0 and length % BS == 0
        assert i == 0 or extents[i - 1][2] != mapped  # adjacent extents differ
        pos += length
    assert pos == store.size
    reported = {b for off, length, m in extents if not m for b in range(off // BS, (off + length) // BS)}
    assert reported == deallocated, ops
    for off, length, mapped in extents:
        if not mapped:
            assert await store.read(off, length) == bytes(length)


@settings(max_examples=60, deadline=None)
@given(_OPS)
async def test_memory_allocation_model(ops: list[tuple[bool, int, int]]) -> None:
    await _check_model(MemoryBackstore(512 * BS), ops)


@settings(max_examples=30, deadline=None)
@given(_OPS)
async def test_file_allocation_model(ops: list[tuple[bool, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = FileBackstore(Path(d) / "m.img", 512 * BS)
        try:
            await _check_model(store, ops)
        finally:
            store.close()
