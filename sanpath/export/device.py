"""``ExportedDevice``: any BlockDevice seen the way an export protocol needs it, at byte granularity.

A BlockDevice takes block-aligned I/O only. Export clients mostly honour the block size we advertise,
but a client that never asked for it (NBD_OPT_EXPORT_NAME, or NBD_OPT_GO without NBD_INFO_BLOCK_SIZE)
may send any offset and length, and the protocol asks servers to cope. So:

- unaligned reads read the covering blocks and copy out the part asked for;
- unaligned writes read-modify-write the first and last blocks, one at a time (an asyncio lock), so
  two unaligned writes sharing a block cannot undo each other; aligned I/O never takes the lock;
- TRIM is advisory, so only the whole blocks inside the range are unmapped;
- WRITE ZEROES uses the device's WRITE SAME when it has one (``write_same(offset, length, block,
  unmap=)``, as ``ScsiDevice`` does), else writes zeros in bounded chunks from one shared buffer.

Reads go straight into the caller's buffer when the device offers ``read_into`` (the multipath and
session devices do), else through ``read``. Allocation (``allocation(offset, length, limit=)``, the
backstores' GET LBA STATUS source) is passed on when the device reports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sanpath.blockdev import BlockDevice
from sanpath.errors import ScsiCommandError

log = logging.getLogger(__name__)

ReadInto = Callable[[int, memoryview], Awaitable[None]]


class ExportedDevice:
    """Byte-granular reads, writes, trims and zeroing over a BlockDevice (see the module comment)."""

    def __init__(self, device: BlockDevice, *, zero_chunk: int = 1 << 20, write_same_max: int = 1 << 26) -> None:
        self.device = device
        self.size = device.size
        self.block_size = device.block_size
        self._read_into: ReadInto | None = getattr(device, "read_into", None)
        self._write_same: Callable[..., Awaitable[None]] | None = getattr(device, "write_same", None)
        self._allocation: Callable[..., Awaitable[list[tuple[int, int, bool]]]] | None = getattr(
            device, "allocation", None)
        bs = self.block_size
        self._zeros = bytes(max(bs, zero_chunk - zero_chunk % bs))
        self._write_same_max = max(bs, write_same_max - write_same_max % bs)
        self._rmw = asyncio.Lock()

    @property
    def reports_allocation(self) -> bool:
        return self._allocation is not None

    def _down(self, n: int) -> int:
        return n - n % self.block_size

    def _up(self, n: int) -> int:
        return -(-n // self.block_size) * self.block_size

    # --- reads ----------------------------------------------------------------------------------------

    async def _aligned_read_into(self, offset: int, view: memoryview) -> None:
        if self._read_into is not None:
            await self._read_into(offset, view)
        else:
            view[:] = await self.device.read(offset, len(view))

    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        """Fill ``buffer`` with the bytes at ``offset``."""
        view = memoryview(buffer).cast("B")
        n = len(view)
        if not n:
            return
        lo, hi = self._down(offset), self._up(offset + n)
        if lo == offset and hi == offset + n:
            await self._aligned_read_into(offset, view)
            return
        tmp = bytearray(hi - lo)
        await self._aligned_read_into(lo, memoryview(tmp))
        view[:] = memoryview(tmp)[offset - lo : offset - lo + n]

    # --- writes ---------------------------------------------------------------------------------------

    async def write(self, offset: int, data: bytes | bytearray | memoryview, *, fua: bool = False) -> None:
        view = memoryview(data).cast("B")
        n = len(view)
        if not n:
            if fua:
                await self.device.flush()
            return
        lo, hi = self._down(offset), self._up(offset + n)
        if lo == offset and hi == offset + n:
            await self.device.write(offset, view, fua=fua)
            return
        bs = self.block_size
        async with self._rmw:
            buf = bytearray(hi - lo)
            whole = memoryview(buf)
            if offset != lo:
                await self._aligned_read_into(lo, whole[:bs])
            if offset + n != hi and (hi - bs != lo or offset == lo):
                await self._aligned_read_into(hi - bs, whole[len(buf) - bs :])
            whole[offset - lo : offset - lo + n] = view
            await self.device.write(lo, memoryview(buf), fua=fua)

    async def flush(self) -> None:
        await self.device.flush()

    async def trim(self, offset: int, length: int, *, fua: bool = False) -> None:
        """Unmap the whole blocks inside the range (TRIM is a hint: partial blocks are left alone)."""
        lo, hi = self._up(offset), self._down(offset + length)
        if hi > lo:
            await self.device.unmap(lo, hi - lo)
        if fua:
            await self.device.flush()

    async def write_zeroes(self, offset: int, length: int, *, fua: bool = False, may_unmap: bool = True) -> None:
        """Make the range read as zeros; ``may_unmap`` lets WRITE SAME deallocate it (a thin LUN that
        reads deallocated blocks as zeros, LBPRZ=1, then holds no data for it)."""
        end = offset + length
        lo, hi = self._up(offset), self._down(end)
        if hi <= lo:  # inside one block, or two partial blocks
            await self.write(offset, bytes(length), fua=fua)
            return
        if offset < lo:
            await self.write(offset, bytes(lo - offset))
        if hi < end:
            await self.write(hi, bytes(end - hi))
        pos = lo
        if self._write_same is not None:
            try:
                while pos < hi:
                    n = min(self._write_same_max, hi - pos)
                    await self._write_same(pos, n, bytes(self.block_size), unmap=may_unmap)
                    pos += n
            except ScsiCommandError as e:
                log.info("WRITE SAME refused (%s); zeroing by writing zeros from now on", e)
                self._write_same = None
        while pos < hi:
            n = min(len(self._zeros), hi - pos)
            await self.device.write(pos, memoryview(self._zeros)[:n])
            pos += n
        if fua:
            await self.device.flush()

    # --- allocation -----------------------------------------------------------------------------------

    async def extents(self, offset: int, length: int, *, limit: int | None = None) -> list[tuple[int, bool]]:
        """(length, mapped) runs covering ``[offset, offset + length)`` from the start, at most
        ``limit`` of them; a device that does not report allocation is one mapped run. An unmapped
        run reads as zeros."""
        if self._allocation is None:
            return [(length, True)]
        end = offset + length
        lo, hi = self._down(offset), min(self._up(end), self.size)
        raw: Any = await self._allocation(lo, hi - lo, limit=limit)
        out: list[tuple[int, bool]] = []
        for start, n, mapped in raw:
            s, e = max(start, offset), min(start + n, end)
            if e <= s:
                continue
            if out and out[-1][1] == mapped:
                out[-1] = (out[-1][0] + e - s, mapped)
            else:
                out.append((e - s, bool(mapped)))
        return out or [(length, True)]
