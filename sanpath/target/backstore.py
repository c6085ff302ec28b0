"""Backstores: where a logical unit's blocks live.  ``MemoryBackstore`` (sparse, in RAM) and
``FileBackstore`` (a regular file or a block device).  Both satisfy ``sanpath.blockdev.BlockDevice``
plus ``close()``; unmapped ranges read back as zeros (what LBPRZ=1 promises, SBC-3 4.7.3.4.2).

Both also report their provisioning state (``allocation``, the :class:`ReportsAllocation`
protocol) for GET LBA STATUS (SBC-3 5.7): which byte ranges are mapped and which are deallocated.
"""

from __future__ import annotations

import asyncio
import bisect
import ctypes
import ctypes.util
import errno
import heapq
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

from sanpath.errors import ConfigError, LocalProtocolError

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_ZERO_CHUNK = 1 << 20


T = TypeVar("T")


async def _settled(fn: Callable[..., T], *args: object) -> T:
    """Run a mutating ``fn`` in a thread. If the awaiting task is cancelled (ABORT TASK, LUN RESET, a
    dropped session), wait for the thread to finish before the cancellation goes on: an aborted write
    must be over, landed or not, before the abort completes, or it could land after newer data."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


def _check_block_size(block_size: int) -> None:
    if block_size < 512 or block_size & (block_size - 1):
        raise ConfigError("backstore.block_size", f"{block_size} is not a power of two >= 512")


def _check_range(dev: MemoryBackstore | FileBackstore, offset: int, length: int) -> None:
    bs = dev.block_size
    if offset < 0 or length < 0 or offset % bs or length % bs or offset + length > dev.size:
        raise LocalProtocolError(
            f"I/O at offset {offset} length {length} is not block aligned ({bs}) or beyond {dev.size} bytes"
        )


Extent = tuple[int, int, bool]
"""(offset, length, mapped) in bytes: one run of blocks that share a provisioning state."""


@runtime_checkable
class ReportsAllocation(Protocol):
    """A backstore that knows which of its blocks are mapped (GET LBA STATUS, SBC-3 5.7)."""

    async def allocation(self, offset: int, length: int, *, limit: int | None = None) -> list[Extent]:
        """Extents covering ``[offset, offset + length)`` in order, adjacent extents differing in
        state; with ``limit`` at most that many (a prefix of the range, each extent whole).
        Deallocated means the blocks read as zeros; when unsure, a backstore reports mapped."""
        ...


def _extents(offset: int, end: int, unmapped: Iterable[tuple[int, int]], limit: int | None) -> list[Extent]:
    """Fold deallocated ranges (sorted by start; may overlap, touch or run outside the window)
    into alternating mapped/deallocated extents of ``[offset, end)``, at most ``limit`` of them."""
    cap = limit if limit is not None else end - offset + 1
    out: list[Extent] = []
    pos = offset
    run: tuple[int, int] | None = None  # deallocated range still growing

    def flush(s: int, e: int) -> None:
        nonlocal pos
        if s > pos:
            out.append((pos, s - pos, True))
        out.append((s, e - s, False))
        pos = e

    for s, e in unmapped:
        s, e = max(s, offset), min(e, end)
        if s >= e:
            continue
        if run is not None and s <= run[1]:
            run = (run[0], max(run[1], e))
            continue
        if run is not None:
            flush(*run)
            if len(out) >= cap:
                return out[:cap]
        run = (s, e)
    if run is not None:
        flush(*run)
    if pos < end:
        out.append((pos, end - pos, True))
    return out[:cap]


class _ZeroedRanges:
    """Byte ranges that UNMAP deallocated but the storage still holds (as zeros) because they are
    smaller than its own allocation unit: part of a file system block or of a memory chunk, or a
    whole range where holes cannot be punched.  Kept so GET LBA STATUS reports them deallocated at
    the granularity the Block Limits VPD page promises.  In memory only and bounded: forgetting a
    range is always safe (it then reports mapped, and reads as zeros either way), while every
    write removes its range first so a written block is never reported deallocated."""

    MAX_RANGES = 16384

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __len__(self) -> int:
        return len(self._starts)

    def add(self, start: int, end: int) -> None:
        if start >= end:
            return
        i = bisect.bisect_left(self._ends, start)  # first range ending at or after start
        j = bisect.bisect_right(self._starts, end)  # ranges starting at or before end
        if i < j:
            start, end = min(start, self._starts[i]), max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]
        if len(self._starts) > self.MAX_RANGES:
            del self._starts[0], self._ends[0]

    def discard(self, start: int, end: int) -> None:
        if not self._starts:  # the write hot path: nothing to do
            return
        i = bisect.bisect_right(self._ends, start)  # first range ending after start
        j = bisect.bisect_left(self._starts, end)  # ranges starting before end
        if i >= j:
            return
        starts: list[int] = []
        ends: list[int] = []
        if self._starts[i] < start:
            starts.append(self._starts[i])
            ends.append(start)
        if self._ends[j - 1] > end:
            starts.append(end)
            ends.append(self._ends[j - 1])
        self._starts[i:j] = starts
        self._ends[i:j] = ends

    def within(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The ranges overlapping ``[start, end)``, clipped to it, in order."""
        i = bisect.bisect_right(self._ends, start)
        j = bisect.bisect_left(self._starts, end)
        for k in range(i, j):
            yield max(self._starts[k], start), min(self._ends[k], end)


class MemoryBackstore:
    """A sparse in-memory device: storage is allocated in chunks on first write and released by
    ``unmap``, so a large thin LUN costs only what was written."""

    CHUNK = 64 * 1024

    def __init__(self, size: int, block_size: int = 512) -> None:
        _check_block_size(block_size)
        if size <= 0 or size % block_size:
            raise ConfigError(
                "backstore.size", f"{size} is not a positive multiple of the block size {block_size}"
            )
        self._size = size
        self._block_size = block_size
        self._chunks: dict[int, bytearray] = {}
        self._zeroed = _ZeroedRanges()
        self.closed = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def allocated_bytes(self) -> int:
        """Bytes of RAM holding data (for tests and statistics)."""
        return len(self._chunks) * self.CHUNK

    def _spans(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(chunk index, start in chunk, length) for each chunk a byte range touches."""
        spans = []
        end = offset + length
        while offset < end:
            idx, start = divmod(offset, self.CHUNK)
            n = min(self.CHUNK - start, end - offset)
            spans.append((idx, start, n))
            offset += n
        return spans

    async def read(self, offset: int, length: int) -> bytes:
        _check_range(self, offset, length)
        out = bytearray(length)
        pos = 0
        for idx, start, n in self._spans(offset, length):
            chunk = self._chunks.get(idx)
            if chunk is not None:
                out[pos : pos + n] = chunk[start : start + n]
            pos += n
        return bytes(out)

    async def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        view = memoryview(data).cast("B")
        _check_range(self, offset, len(view))
        pos = 0
        for idx, start, n in self._spans(offset, len(view)):
            chunk = self._chunks.get(idx)
            if chunk is None:
                chunk = self._chunks[idx] = bytearray(self.CHUNK)
                # the rest of a new chunk was deallocated and still is, as far as reads can tell
                base = idx * self.CHUNK
                self._zeroed.add(base, base + start)
                self._zeroed.add(base + start + n, min(base + self.CHUNK, self._size))
            chunk[start : start + n] = view[pos : pos + n]
            pos += n
        self._zeroed.discard(offset, offset + len(view))

    async def flush(self) -> None:
        return None

    async def unmap(self, offset: int, length: int) -> None:
        _check_range(self, offset, length)
        for idx, start, n in self._spans(offset, length):
            base = idx * self.CHUNK
            chunk = self._chunks.get(idx)
            if chunk is None:
                continue  # never written or already released: deallocated
            if n < self.CHUNK:
                chunk[start : start + n] = bytes(n)
                self._zeroed.add(base + start, base + start + n)
                if next(self._zeroed.within(base, base + self.CHUNK)) != (base, base + self.CHUNK):
                    continue
            del self._chunks[idx]  # the whole chunk is deallocated: release it
            self._zeroed.discard(base, base + self.CHUNK)

    def _holes(self, offset: int, end: int) -> Iterator[tuple[int, int]]:
        """Ranges with no chunk behind them, in order."""
        lo, hi = offset // self.CHUNK, -(-end // self.CHUNK)
        pos = offset
        for idx in sorted(i for i in self._chunks if lo <= i < hi):
            start = idx * self.CHUNK
            if start > pos:
                yield pos, start
            pos = max(pos, start + self.CHUNK)
        if pos < end:
            yield pos, end

    async def allocation(self, offset: int, length: int, *, limit: int | None = None) -> list[Extent]:
        """Provisioning state (see :class:`ReportsAllocation`): a chunk never written or released
        by UNMAP, or the part of a chunk UNMAP zeroed, is deallocated."""
        _check_range(self, offset, length)
        end = offset + length
        merged = heapq.merge(self._holes(offset, end), self._zeroed.within(offset, end))
        return _extents(offset, end, merged, limit)

    def close(self) -> None:
        self._chunks.clear()
        self._zeroed = _ZeroedRanges()
        self.closed = True


def _load_fallocate() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        func = libc.fallocate
    except (OSError, AttributeError, TypeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    func.restype = ctypes.c_int
    return func


_fallocate = _load_fallocate()
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)  # preadv2 flag (Linux 4.14): fail with EAGAIN instead of waiting for I/O


class FileBackstore:
    """A regular file (created or extended to ``size`` when given) or a block device.

    A missing file with no ``size`` is a :class:`ConfigError`.  When ``size`` is smaller than an
    existing file only the first ``size`` bytes are exposed.
    """

    # Hot path measurement (benchmark: 3000 ops on a page-cached 64 MiB file, this 2-core VM):
    #   4 KiB   pread inline 1 us,  asyncio.to_thread 92-106 us (45-51 us/op with 32 in flight)
    #   128 KiB pread inline 11-12 us, to_thread 94-119 us (73-83 us/op with 32 in flight)
    #   pwrite  4 KiB inline 4.5 us / thread 90-112 us; 128 KiB inline 15-17 us / thread 129 us
    # A thread hop costs ~100 us while a cached copy costs microseconds, so requests up to
    # ``inline_io_max`` (256 KiB) run inline on the event loop; larger ones go to a thread so a
    # multi-megabyte copy (or a cold read that really hits the disk) does not stall every other
    # session.  For backing files on slow media pass ``inline_io_max=0`` to always use threads.
    INLINE_IO_MAX = 256 * 1024
    # An ``allocation`` scan costs at most two lseeks (a few microseconds each) per extent, so the
    # few descriptors GET LBA STATUS usually asks for (qemu asks for one) are found inline; longer
    # scans of a possibly fragmented file go to a thread.
    INLINE_EXTENTS_MAX = 64

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: int | None = None,
        block_size: int = 512,
        *,
        read_only: bool = False,
        inline_io_max: int = INLINE_IO_MAX,
    ) -> None:
        _check_block_size(block_size)
        self.path = os.fspath(path)
        self._block_size = block_size
        self._inline_max = inline_io_max
        self.read_only = read_only
        exists = os.path.exists(self.path)
        if not exists and size is None:
            raise ConfigError(
                "backstore.path",
                f"{self.path} does not exist; give a size to create it or name an existing file/device",
            )
        if size is not None and (size <= 0 or size % block_size):
            raise ConfigError(
                "backstore.size", f"{size} is not a positive multiple of the block size {block_size}"
            )
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | getattr(os, "O_CLOEXEC", 0)
        if not exists:
            flags |= os.O_CREAT
        try:
            self._fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise ConfigError("backstore.path", f"cannot open {self.path}: {exc.strerror}") from exc
        st = os.fstat(self._fd)
        self.is_block_device = stat.S_ISBLK(st.st_mode)
        if self.is_block_device:
            actual = os.lseek(self._fd, 0, os.SEEK_END)
        else:
            actual = st.st_size
            if size is not None and actual < size:
                if read_only:
                    os.close(self._fd)
                    raise ConfigError("backstore.size", f"{self.path} is {actual} bytes, smaller than {size}")
                os.ftruncate(self._fd, size)
                actual = size
        self._size = size if size is not None else actual - actual % block_size
        if self._size <= 0 or self._size > actual:
            os.close(self._fd)
            raise ConfigError(
                "backstore.size", f"{self.path} holds {actual} bytes; cannot expose {self._size}"
            )
        self._punch_hole = not self.is_block_device and _fallocate is not None
        self._seek_holes = not self.is_block_device
        self._fs_block = max(st.st_blksize, 1)  # the file system's allocation unit for holes
        self._zeroed = _ZeroedRanges()

    @property
    def size(self) -> int:
        return self._size

    @property
    def block_size(self) -> int:
        return self._block_size

    def _pread(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) < length:  # a short read past the end of a sparse file: zeros
            data += bytes(length - len(data))
        return data

    def _pwrite(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            n = os.pwrite(self._fd, view, offset)
            view = view[n:]
            offset += n

    def _pread_cached(self, offset: int, length: int) -> bytearray | None:
        """The bytes if all of them are in the page cache now, else None (preadv2 RWF_NOWAIT: the read
        never waits for the disk)."""
        buf = bytearray(length)
        try:
            n = os.preadv(self._fd, [buf], offset, _NOWAIT)
        except BlockingIOError:
            return None
        return buf if n == length else None

    async def read(self, offset: int, length: int) -> bytes | bytearray:
        _check_range(self, offset, length)
        if length <= self._inline_max:
            # Inline only what the page cache holds: a read that would wait for the disk (a cold file,
            # or pages the kernel reclaimed) goes to a thread, and the other sessions go on meanwhile.
            data = self._pread_cached(offset, length) if _NOWAIT else self._pread(offset, length)
            if data is not None:
                return data
        return await asyncio.to_thread(self._pread, offset, length)

    async def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        _check_range(self, offset, len(data))
        end = offset + len(data)
        if self._seek_holes and (offset % self._fs_block or end % self._fs_block):
            self._note_partial_fill(offset, end)
        self._zeroed.discard(offset, end)  # before the data lands: never stale
        if len(data) <= self._inline_max:
            self._pwrite(offset, data)
        else:
            await _settled(self._pwrite, offset, data)
        if fua:  # SBC-3 5.32: FUA=1 means the data must reach the medium before GOOD status
            await asyncio.to_thread(os.fdatasync, self._fd)

    async def flush(self) -> None:
        await asyncio.to_thread(os.fsync, self._fd)

    def _discard(self, offset: int, length: int) -> bool:
        """Deallocate a range: True when a hole was punched, False when zeros were written."""
        if self._punch_hole and _fallocate is not None:
            mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
            if _fallocate(self._fd, mode, offset, length) == 0:
                return True
            err = ctypes.get_errno()
            if err not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise OSError(err, os.strerror(err), self.path)
            self._punch_hole = False  # the file system cannot punch holes: write zeros from now on
        zeros = bytes(min(length, _ZERO_CHUNK))
        end = offset + length
        while offset < end:
            n = min(len(zeros), end - offset)
            self._pwrite(offset, memoryview(zeros)[:n])
            offset += n
        return False

    async def unmap(self, offset: int, length: int) -> None:
        _check_range(self, offset, length)
        if length <= self._inline_max:
            punched = self._discard(offset, length)
        else:
            punched = await _settled(self._discard, offset, length)
        end = offset + length
        if not punched:
            self._zeroed.add(offset, end)
            return
        # the file system frees only whole blocks of its own; the partial blocks at either end
        # were zeroed in place and stay allocated
        g = self._fs_block
        head_end = min(end, -(-offset // g) * g)
        self._zeroed.add(offset, head_end)
        self._zeroed.add(max(head_end, end // g * g), end)

    def _is_hole(self, start: int) -> bool:
        try:
            return os.lseek(self._fd, start, os.SEEK_DATA) >= start + self._fs_block
        except OSError as exc:
            return exc.errno == errno.ENXIO  # no data from here to the end of the file

    def _note_partial_fill(self, offset: int, end: int) -> None:
        """A write covering part of a file system block that is a hole makes the file system
        allocate all of it; the uncovered part was deallocated and reads as zeros still.  One
        lseek per unaligned end, and only for writes not aligned to the file system block."""
        g = self._fs_block
        head = offset // g * g
        if offset % g and self._is_hole(head):
            self._zeroed.add(head, offset)
        if end % g:
            tail = end // g * g
            if self._is_hole(tail):
                self._zeroed.add(end, min(tail + g, self._size))

    def _holes(self, offset: int, end: int) -> Iterator[tuple[int, int]]:
        """The file's holes (SEEK_DATA / SEEK_HOLE) within ``[offset, end)``, shrunk to whole
        logical blocks.  A block device, or a file system without hole support, has none."""
        bs = self._block_size
        pos = offset
        while self._seek_holes and pos < end:
            try:
                data = os.lseek(self._fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # EINVAL/EOPNOTSUPP: no hole support, all data
                    self._seek_holes = False
                    return
                data = end  # no data from pos to the end of the file
            hole_end = min(data, end) // bs * bs
            if hole_end > pos:
                yield pos, hole_end
            if data >= end:
                return
            pos = -(-os.lseek(self._fd, data, os.SEEK_HOLE) // bs) * bs

    async def allocation(self, offset: int, length: int, *, limit: int | None = None) -> list[Extent]:
        """Provisioning state (see :class:`ReportsAllocation`): holes in a regular file, and
        ranges UNMAP zeroed in place, are deallocated; a block device is otherwise all mapped."""
        _check_range(self, offset, length)
        end = offset + length
        zeroed = list(self._zeroed.within(offset, end))  # a snapshot: writes may change it
        if limit is not None and limit <= self.INLINE_EXTENTS_MAX:
            return self._scan(offset, end, zeroed, limit)
        return await asyncio.to_thread(self._scan, offset, end, zeroed, limit)

    def _scan(self, offset: int, end: int, zeroed: list[tuple[int, int]], limit: int | None) -> list[Extent]:
        return _extents(offset, end, heapq.merge(self._holes(offset, end), zeroed), limit)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
