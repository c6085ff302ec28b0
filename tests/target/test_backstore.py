"""MemoryBackstore and FileBackstore: BlockDevice behaviour, file creation, hole punching."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sanpath.blockdev import BlockDevice
from sanpath.errors import ConfigError, LocalProtocolError
from sanpath.target.backstore import FileBackstore, MemoryBackstore


async def test_memory_read_write_unmap() -> None:
    dev = MemoryBackstore(1 << 20)
    assert isinstance(dev, BlockDevice)
    assert (dev.size, dev.block_size) == (1 << 20, 512)
    assert await dev.read(0, 1024) == bytes(1024)
    assert dev.allocated_bytes == 0
    payload = bytes(range(256)) * 512  # 128 KiB crossing chunk boundaries
    await dev.write(4096 - 512, payload)
    assert await dev.read(4096 - 512, len(payload)) == payload
    await dev.unmap(4096, 64 * 1024)  # partial chunk then a whole one
    got = await dev.read(4096 - 512, len(payload))
    assert got[:512] == payload[:512] and got[512 : 512 + 64 * 1024] == bytes(64 * 1024)
    assert got[512 + 64 * 1024 :] == payload[512 + 64 * 1024 :]
    await dev.flush()
    dev.close()
    assert dev.closed


async def test_memory_unmap_releases_whole_chunks() -> None:
    dev = MemoryBackstore(1 << 20)
    await dev.write(0, b"\xaa" * (256 * 1024))
    before = dev.allocated_bytes
    await dev.unmap(0, 256 * 1024)
    assert dev.allocated_bytes == 0 < before


async def test_memory_rejects_misaligned_and_out_of_range() -> None:
    dev = MemoryBackstore(8192, block_size=4096)
    with pytest.raises(LocalProtocolError):
        await dev.read(512, 4096)
    with pytest.raises(LocalProtocolError):
        await dev.write(4096, bytes(8192))
    with pytest.raises(ConfigError):
        MemoryBackstore(1000)
    with pytest.raises(ConfigError):
        MemoryBackstore(4096, block_size=1000)


async def test_file_created_at_size(tmp_path: Path) -> None:
    path = tmp_path / "lun0.img"
    dev = FileBackstore(path, size=1 << 20)
    try:
        assert path.stat().st_size == 1 << 20 and dev.size == 1 << 20 and not dev.is_block_device
        await dev.write(512, b"x" * 512, fua=True)
        assert await dev.read(0, 1536) == bytes(512) + b"x" * 512 + bytes(512)
        await dev.flush()
    finally:
        dev.close()
    again = FileBackstore(path)  # existing file, size taken from the file
    try:
        assert again.size == 1 << 20
        assert await again.read(512, 512) == b"x" * 512
    finally:
        again.close()


async def test_file_extended_and_truncated_view(tmp_path: Path) -> None:
    path = tmp_path / "small.img"
    path.write_bytes(b"\1" * 4096)
    dev = FileBackstore(path, size=8192)
    dev.close()
    assert path.stat().st_size == 8192
    view = FileBackstore(path, size=4096)  # a larger file exposes only the first `size` bytes
    try:
        assert view.size == 4096
        with pytest.raises(LocalProtocolError):
            await view.read(4096, 512)
    finally:
        view.close()


def test_file_missing_without_size_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"backstore\.path"):
        FileBackstore(tmp_path / "absent.img")
    with pytest.raises(ConfigError, match=r"backstore\.size"):
        FileBackstore(tmp_path / "odd.img", size=1000)


async def test_file_unmap_punches_hole_and_reads_zero(tmp_path: Path) -> None:
    path = tmp_path / "thin.img"
    dev = FileBackstore(path, size=4 << 20)
    try:
        await dev.write(0, os.urandom(2 << 20))  # above inline_io_max: goes through a thread
        os.fsync(os.open(path, os.O_RDONLY))
        allocated = path.stat().st_blocks
        await dev.unmap(0, 1 << 20)
        await dev.unmap((1 << 20) + 512, 512)  # a single sector: partial page, zeroed
        assert await dev.read(0, 1 << 20) == bytes(1 << 20)
        assert await dev.read((1 << 20) + 512, 512) == bytes(512)
        assert path.stat().st_blocks < allocated  # space really given back (tmpfs/ext4/xfs punch holes)
        assert path.stat().st_size == 4 << 20  # KEEP_SIZE
    finally:
        dev.close()


async def test_file_unmap_falls_back_to_zero_writes(tmp_path: Path) -> None:
    dev = FileBackstore(tmp_path / "nopunch.img", size=1 << 20)
    dev._punch_hole = False  # what happens on a file system without FALLOC_FL_PUNCH_HOLE
    try:
        await dev.write(0, b"\xff" * 8192)
        await dev.unmap(4096, 4096)
        assert await dev.read(0, 8192) == b"\xff" * 4096 + bytes(4096)
    finally:
        dev.close()


async def test_file_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ro.img"
    path.write_bytes(bytes(4096))
    dev = FileBackstore(path, read_only=True)
    try:
        with pytest.raises(OSError):
            await dev.write(0, bytes(512))
    finally:
        dev.close()


async def test_file_reads_inline_only_what_the_page_cache_holds(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lun"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    store = FileBackstore(path)
    threads: list[object] = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(fn: Callable[..., object], *args: object) -> object:
        threads.append(fn)
        return await real_to_thread(fn, *args)

    monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)
    assert await store.read(4096, 8192) == data[4096:12288] and threads == []  # cached: inline
    monkeypatch.setattr(store, "_pread_cached", lambda offset, length: None)  # as if the pages were reclaimed
    assert await store.read(65536, 4096) == data[65536:69632] and len(threads) == 1  # waited for in a thread
    store.close()
