"""ExportedDevice: byte-granular I/O over a block-aligned BlockDevice."""

from __future__ import annotations

import asyncio
import os

import pytest

from sanpath.errors import ScsiCommandError
from sanpath.export.device import ExportedDevice
from sanpath.target.backstore import MemoryBackstore

MiB = 1 << 20


class ReadIntoOnly(MemoryBackstore):
    """A device with read_into (like MultipathDevice); ``read`` must not be used."""

    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        memoryview(buffer)[:] = await super().read(offset, len(buffer))

    async def read(self, offset: int, length: int) -> bytes:
        raise AssertionError("read_into should have been used")


class WithWriteSame(MemoryBackstore):
    def __init__(self, size: int, *, refuse: bool = False) -> None:
        super().__init__(size)
        self.calls: list[tuple[int, int, bool]] = []
        self.refuse = refuse

    async def write_same(self, offset: int, length: int, block: bytes, *, unmap: bool = False) -> None:
        if self.refuse:
            raise ScsiCommandError("WRITE SAME not supported", status=2)
        assert block == bytes(self.block_size)
        self.calls.append((offset, length, unmap))
        await self.unmap(offset, length)


@pytest.mark.parametrize("cls", [MemoryBackstore, ReadIntoOnly])
async def test_unaligned_reads_and_writes(cls: type[MemoryBackstore]) -> None:
    dev = ExportedDevice(cls(MiB))
    ref = bytearray(os.urandom(8192))
    await dev.write(0, ref)
    for off, n in [(1, 10), (511, 2), (100, 1000), (0, 513), (700, 3000), (4096, 4096), (1000, 24)]:
        data = os.urandom(n)
        await dev.write(off, data)
        ref[off : off + n] = data
        buf = bytearray(8192)
        await dev.read_into(0, buf)
        assert buf == ref, (off, n)
        part = bytearray(min(n + 7, len(ref) - off - 3))
        await dev.read_into(off + 3, part)
        assert part == ref[off + 3 : off + 3 + len(part)]
    await dev.write(5, b"")


async def test_concurrent_unaligned_writes_to_one_block_both_land() -> None:
    dev = ExportedDevice(MemoryBackstore(MiB))
    await asyncio.gather(*(dev.write(i * 16, bytes([i + 1]) * 16) for i in range(32)))
    buf = bytearray(512)
    await dev.read_into(0, buf)
    assert buf == b"".join(bytes([i + 1]) * 16 for i in range(32))


async def test_trim_unmaps_whole_blocks_only() -> None:
    back = MemoryBackstore(MiB)
    dev = ExportedDevice(back)
    await dev.write(0, b"\xff" * 4096)
    await dev.trim(100, 2000)  # blocks 1..3 (512..2047) are whole inside
    data = await back.read(0, 4096)
    assert data[:512] == b"\xff" * 512 and data[512:2048] == bytes(1536) and data[2048:] == b"\xff" * 2048


@pytest.mark.parametrize("kind", ["plain", "write_same", "refused"])
async def test_write_zeroes(kind: str) -> None:
    back = MemoryBackstore(4 * MiB) if kind == "plain" else WithWriteSame(4 * MiB, refuse=kind == "refused")
    dev = ExportedDevice(back, zero_chunk=64 * 1024, write_same_max=MiB)
    await dev.write(0, b"\xee" * 4 * MiB)
    await dev.write_zeroes(100, 3 * MiB, fua=True)
    data = await back.read(0, 4 * MiB)
    assert data[:100] == b"\xee" * 100
    assert data[100 : 100 + 3 * MiB] == bytes(3 * MiB)
    assert data[100 + 3 * MiB :] == b"\xee" * (MiB - 100)
    if isinstance(back, WithWriteSame) and not back.refuse:
        assert [c[1] for c in back.calls] == [MiB, MiB, MiB - 512] and all(c[2] for c in back.calls)
    await dev.write_zeroes(10, 20)  # inside one block
    assert (await back.read(0, 512))[10:30] == bytes(20)


async def test_extents() -> None:
    back = MemoryBackstore(4 * MiB)
    dev = ExportedDevice(back)
    assert dev.reports_allocation
    await dev.write(MiB, b"x" * 65536)
    assert await dev.extents(0, 4 * MiB) == [(MiB, False), (65536, True), (3 * MiB - 65536, False)]
    assert await dev.extents(MiB + 100, 1000) == [(1000, True)]
    assert await dev.extents(0, 4 * MiB, limit=1) == [(MiB, False)]
    plain = ExportedDevice(ReadIntoOnly(MiB))
    plain._allocation = None
    assert await plain.extents(0, 4096) == [(4096, True)]
