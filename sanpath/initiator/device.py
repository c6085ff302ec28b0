"""A LUN reached through one session, as a ``BlockDevice`` with SCSI helpers: INQUIRY and VPD pages,
the SCSIid, READ CAPACITY 16, REPORT LUNS, READ/WRITE 16, SYNCHRONIZE CACHE, UNMAP, WRITE SAME, RTPG.

Errors: any status other than GOOD raises ``ScsiCommandError`` with the decoded sense in the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ScsiCommandError
from ..scsi import cdb as C
from ..scsi import parse as S
from ..scsi.constants import Status
from ..scsi.sense import parse_sense
from .session import CommandResult, Session

MAX_TRANSFER = 8 << 20  # split larger READ/WRITE requests: bounds buffers and keeps latency even


@dataclass(frozen=True, slots=True)
class LunInfo:
    """What ``sanpath luns`` prints for one LUN."""

    lun: int
    device_type: int
    size: int
    block_size: int
    vendor: str
    product: str
    revision: str
    serial: str
    scsi_id: str
    lbpme: bool


class ScsiDevice:
    """LUN ``lun`` of ``session``; ``open()`` reads its capacity."""

    def __init__(self, session: Session, lun: int) -> None:
        self.session = session
        self.lun = lun
        self.capacity: S.ReadCapacity | None = None
        self._jobs: set[asyncio.Task[None]] = set()  # I/Os of start_io that went the slow way

    @property
    def size(self) -> int:
        assert self.capacity is not None, "call open() first"
        return self.capacity.size

    @property
    def block_size(self) -> int:
        assert self.capacity is not None, "call open() first"
        return self.capacity.block_length

    async def open(self) -> ScsiDevice:
        self.capacity = await self.read_capacity()
        return self

    async def command(self, cdb: bytes, *, read_length: int = 0, data_out: bytes | memoryview | None = None,
                      buffer: bytearray | memoryview | None = None, check: bool = True) -> CommandResult:
        result = await self.session.execute(self.lun, cdb, read_length=read_length, data_out=data_out,
                                            buffer=buffer)
        if check and result.status != Status.GOOD:
            raise self._error(cdb, result)
        return result

    # read_into and write call session.execute themselves: one coroutine less per I/O on the hot path

    def _error(self, cdb: bytes, result: CommandResult) -> ScsiCommandError:
        detail = f"status 0x{result.status:02x}"
        if result.sense:
            try:
                detail += f", {parse_sense(result.sense)}"
            except Exception:
                detail += f", sense {result.sense.hex()}"
        return ScsiCommandError(f"LUN {self.lun}: command 0x{cdb[0]:02x} failed: {detail}",
                                portal=self.session.portal, status=result.status, sense=result.sense)

    # --- identification --------------------------------------------------------------------

    async def inquiry(self) -> S.StandardInquiry:
        r = await self.command(C.inquiry(alloc=255), read_length=255)
        return S.parse_standard_inquiry(r.data)

    async def vpd(self, page: int) -> bytes:
        r = await self.command(C.inquiry(evpd=True, page=page, alloc=4096), read_length=4096)
        return bytes(r.data)

    async def supported_vpd_pages(self) -> tuple[int, ...]:
        return S.parse_supported_vpd_pages(await self.vpd(0x00))

    async def serial(self) -> str:
        return S.parse_unit_serial_number(await self.vpd(0x80))

    async def scsi_id(self) -> str:
        """The SCSIid as udev's scsi_id writes it: VPD 0x83 first, the serial page as the fallback."""
        pages = await self.supported_vpd_pages()
        vpd83 = await self.vpd(0x83) if 0x83 in pages else None
        vpd80 = await self.vpd(0x80) if 0x80 in pages else None
        std = await self.inquiry()
        return S.scsi_id(vpd83, vpd80, vendor=std.vendor, product=std.product)

    async def read_capacity(self) -> S.ReadCapacity:
        r = await self.command(C.read_capacity_16(32), read_length=32)
        return S.parse_read_capacity_16(r.data)

    async def report_luns(self) -> tuple[int, ...]:
        r = await self.command(C.report_luns(alloc=65536), read_length=65536)
        return S.parse_report_luns(r.data)

    async def report_target_port_groups(self) -> S.TargetPortGroups:
        r = await self.command(C.report_target_port_groups(4096, extended=True), read_length=4096)
        return S.parse_report_target_port_groups(r.data)

    async def info(self) -> LunInfo:
        std = await self.inquiry()
        cap = await self.read_capacity()
        pages = await self.supported_vpd_pages()
        serial = await self.serial() if 0x80 in pages else ""
        return LunInfo(self.lun, std.peripheral_device_type, cap.size, cap.block_length, std.vendor, std.product,
                       std.revision, serial, await self.scsi_id(), cap.lbpme)

    # --- BlockDevice -------------------------------------------------------------------------

    def _blocks(self, offset: int, length: int) -> tuple[int, int]:
        bs = self.block_size
        if offset % bs or length % bs:
            raise ValueError(f"offset {offset} and length {length} must be multiples of the block size {bs}")
        if offset + length > self.size:
            raise ValueError(f"I/O at {offset}+{length} past the end of LUN {self.lun} ({self.size} bytes)")
        return offset // bs, length // bs

    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        """Read ``len(buffer)`` bytes at ``offset`` straight into ``buffer``."""
        view = memoryview(buffer).cast("B")
        lba, blocks = self._blocks(offset, len(view))
        step = MAX_TRANSFER // self.block_size
        for i in range(0, blocks, step):
            n = min(step, blocks - i)
            part = view[i * self.block_size : (i + n) * self.block_size]
            cdb = C.read_16(lba + i, n)
            result = await self.session.execute(self.lun, cdb, read_length=len(part), buffer=part)
            if result.status != Status.GOOD:
                raise self._error(cdb, result)

    def start_io(self, offset: int, buffer: bytearray | memoryview, is_read: bool,
                 done: Callable[[BaseException | None], None]) -> None:
        """Start a read into ``buffer`` (or a write of it) at ``offset``; ``done(None)`` or ``done(error)``
        is called when it ends, from the event loop, never from inside this call.

        The fast path for engines with many I/Os in flight: one command issued at once, with no future,
        task or coroutine per I/O (``Session.start``). An I/O that needs several commands, waits for the
        command window, or ends in UNIT ATTENTION goes through ``read_into``/``write`` on a task instead.
        """
        view = memoryview(buffer).cast("B")
        lba, blocks = self._blocks(offset, len(view))
        if len(view) <= MAX_TRANSFER:
            cdb = C.read_16(lba, blocks) if is_read else C.write_16(lba, blocks)

            def finished(outcome: CommandResult | BaseException) -> None:
                if isinstance(outcome, BaseException):
                    done(outcome)
                elif outcome.status == Status.GOOD:
                    done(None)
                elif self.session.unit_attention(self.lun, outcome):
                    self._io_task(offset, view, is_read, done)
                else:
                    done(self._error(cdb, outcome))

            if (self.session.start(self.lun, cdb, finished, read_length=len(view), buffer=view) if is_read
                    else self.session.start(self.lun, cdb, finished, data_out=view)):
                return
        self._io_task(offset, view, is_read, done)

    def _io_task(self, offset: int, view: memoryview, is_read: bool,
                 done: Callable[[BaseException | None], None]) -> None:
        job = asyncio.get_running_loop().create_task(self.read_into(offset, view) if is_read
                                                     else self.write(offset, view))
        self._jobs.add(job)

        def ended(job: asyncio.Task[None]) -> None:
            self._jobs.discard(job)
            done(asyncio.CancelledError() if job.cancelled() else job.exception())

        job.add_done_callback(ended)

    async def read(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        await self.read_into(offset, buf)
        return bytes(buf)

    async def write(self, offset: int, data: bytes | bytearray | memoryview, *, fua: bool = False) -> None:
        view = memoryview(data).cast("B")
        lba, blocks = self._blocks(offset, len(view))
        step = MAX_TRANSFER // self.block_size
        for i in range(0, blocks, step):
            n = min(step, blocks - i)
            cdb = C.write_16(lba + i, n, fua=fua)
            result = await self.session.execute(self.lun, cdb,
                                                data_out=view[i * self.block_size : (i + n) * self.block_size])
            if result.status != Status.GOOD:
                raise self._error(cdb, result)

    async def flush(self) -> None:
        await self.command(C.synchronize_cache_16())

    async def unmap(self, offset: int, length: int) -> None:
        lba, blocks = self._blocks(offset, length)
        params = C.unmap_parameter_list([(lba, blocks)])
        await self.command(C.unmap(len(params)), data_out=params)

    async def allocation(self, offset: int, length: int, *, limit: int | None = None) -> list[tuple[int, int, bool]]:
        """(offset, length, mapped) runs from GET LBA STATUS covering ``[offset, offset+length)``, at most
        ``limit`` of them; anchored counts as unmapped (it reads as zeros, SBC-3 4.7.3.3)."""
        bs = self.block_size
        end = min(offset + length, self.size)
        out: list[tuple[int, int, bool]] = []
        pos = offset - offset % bs
        while pos < end and (limit is None or len(out) < limit):
            r = await self.command(C.get_lba_status(pos // bs, 4096), read_length=4096)
            descriptors = S.parse_lba_status(r.data)
            if not descriptors:
                break
            for lba, blocks, status in descriptors:
                start, stop = max(lba * bs, pos), min((lba + blocks) * bs, end)
                if stop > start:
                    out.append((start, stop - start, status == 0))
            last = descriptors[-1]
            nxt = (last[0] + last[1]) * bs
            if nxt <= pos:
                break
            pos = nxt
        return out[:limit] if limit is not None else out

    async def write_same(self, offset: int, length: int, block: bytes, *, unmap: bool = False) -> None:
        lba, blocks = self._blocks(offset, length)
        await self.command(C.write_same_16(lba, blocks, unmap=unmap), data_out=block)
