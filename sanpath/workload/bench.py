"""A fio-like load engine over any block device: sequential or random reads and writes at a fixed queue
depth for a fixed time, with latency percentiles, the longest stall, and optional data verification.

It needs only ``size``, ``block_size``, ``read_into(offset, buffer)`` and ``write(offset, data)``, so the
same engine drives one ``ScsiDevice`` today and a multipath device tomorrow.

Hot path: ``qd`` slots, each with its own preallocated buffers and one I/O in flight at a time. A
device with ``start_io(offset, buffer, is_read, done)`` (``ScsiDevice``) is driven by callbacks: the
completion of one I/O issues the slot's next from inside the receive path, with no future, task or
coroutine per I/O (3 to 6 µs less CPU per 128 KiB read against tgtd, of some 55-60). Any other device
gets one worker coroutine per slot (no task or buffer per I/O either). Latencies go into a fixed
log-linear histogram (32 sub-buckets per power of two, under 3 % error) instead of a growing list, so a
long run costs no memory.

Verification: every logical block written carries a header and a trailer stamped with its LBA and the
generation of the write (a per-unit counter), and the bytes between them come from a per-run random
template; a read is compared byte for byte against what the last write to that unit must have left.
Units with an I/O in flight are not picked again until it completes, so reads and writes never race.
Read-only modes first write the whole region (generation 1); write-only modes read back every unit
they wrote after the timed phase.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..errors import SanpathError

MODES = ("read", "write", "randread", "randwrite", "randrw")
MAX_MESSAGES = 10  # first error and verify-failure messages kept in the result
STALL_RECORD_NS = 50_000_000  # gaps with no I/O completing at least this long are listed in ``stalls``
MAX_STALLS = 10_000
MAX_VERIFY_UNITS = 64 << 20  # the generation table costs 4 bytes per unit
PREFILL_CHUNK = 1 << 20

_HEADER = struct.Struct(">8sQQ")  # magic, LBA, generation: at the start of every logical block
_TRAILER = struct.Struct(">QQ")  # LBA, generation: at its end (catches torn and shifted blocks)
_MAGIC = b"SANPATHV"
_UNKNOWN = 0xFFFFFFFF  # generation of a unit whose last write failed: its content is not checked


class BenchDevice(Protocol):
    """What the engine drives: a ``BlockDevice`` that can read into a caller's buffer (and may offer
    ``start_io``, the callback fast path, as ``ScsiDevice`` does)."""

    @property
    def size(self) -> int: ...

    @property
    def block_size(self) -> int: ...

    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None: ...

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> Any: ...


@dataclass(frozen=True, slots=True)
class BenchSpec:
    """One run. ``size`` None means from ``offset`` to the end of the device."""

    rw: str = "randread"
    bs: int = 4096
    qd: int = 1
    seconds: float = 10.0
    verify: bool = False
    offset: int = 0
    size: int | None = None
    rwmix_read: int = 50  # percent of reads in randrw
    max_errors: int = 100  # stop the run after this many failed I/Os; 0 = never stop
    seed: int | None = None

    @property
    def reads(self) -> bool:
        return self.rw in ("read", "randread", "randrw")

    @property
    def writes(self) -> bool:
        return self.rw in ("write", "randwrite", "randrw")


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report: totals so far and rates over the last interval."""

    elapsed: float
    ios: int
    bytes: int
    iops: float
    mbps: float
    errors: int
    verify_failures: int
    phase: str = "run"  # "prefill", "run" or "verify"


@dataclass(frozen=True, slots=True)
class Latency:
    p50: float
    p99: float
    p999: float
    max: float
    mean: float


@dataclass(frozen=True, slots=True)
class BenchResult:
    rw: str
    bs: int
    qd: int
    seconds: float  # the timed phase as it actually ran, drain included
    bytes: int
    ios: int
    read_ios: int
    write_ios: int
    iops: float
    mbps: float  # 10^6 bytes per second, as fio's MB/s
    lat_us: Latency
    errors: int
    verify: bool
    verify_failures: int
    verify_reads: int  # reads checked (the run's own, plus the read-back of write-only modes)
    max_stall_ms: float  # the longest time with no I/O completing, from start to end of the run
    region_offset: int
    region_size: int
    stopped_early: str = ""
    messages: tuple[str, ...] = field(default=())
    # every gap of at least STALL_RECORD_NS: (wall-clock time it began, as time.time(), length in ms), so
    # that a stall can be matched with what caused it (a cable pull in the lab benchmarks)
    stalls: tuple[tuple[float, float], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["messages"] = list(self.messages)
        d["stalls"] = [list(x) for x in self.stalls]
        return d


class BenchError(SanpathError):
    """The run cannot start: the spec does not fit the device."""


# --- latency histogram ---------------------------------------------------------------------------


class Histogram:
    """Log-linear histogram of nanosecond values: exact below 64 ns, then 32 buckets per power of two."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = [0] * 2048
        self.count = 0
        self.total = 0
        self.max = 0

    @staticmethod
    def index(v: int) -> int:
        if v < 64:
            return v
        n = v.bit_length()
        return 64 + (n - 7) * 32 + (v >> (n - 6)) - 32

    @staticmethod
    def bucket_mid(i: int) -> float:
        if i < 64:
            return float(i)
        n, sub = divmod(i - 64, 32)
        shift = n + 1  # bit_length - 6
        low = (32 + sub) << shift
        return low + ((1 << shift) - 1) / 2

    def add(self, v: int) -> None:
        self.counts[self.index(v)] += 1
        self.count += 1
        self.total += v
        if v > self.max:
            self.max = v

    def percentile(self, p: float) -> float:
        if not self.count:
            return 0.0
        want = max(1, int(p / 100 * self.count + 0.5))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= want:
                return min(self.bucket_mid(i), float(self.max))
        return float(self.max)


# --- verification stamps -------------------------------------------------------------------------


class Stamper:
    """Builds and checks the expected content of one unit (``bs`` bytes at block ``lba``)."""

    def __init__(self, bs: int, block_size: int, seed: int) -> None:
        if block_size < _HEADER.size + _TRAILER.size:
            raise BenchError(f"block size {block_size} is too small to carry verify stamps")
        self.bs = bs
        self.block_size = block_size
        pattern = random.Random(seed).randbytes(min(bs, 65536))
        self.template = (pattern * (bs // len(pattern) + 1))[:bs]

    def filled(self, length: int) -> bytearray:
        """A buffer of ``length`` (a multiple of bs) holding the template; stamp() rewrites only stamps."""
        return bytearray(self.template * (length // self.bs))

    def stamp(self, buf: bytearray, lba: int, gen: int) -> None:
        bsz = self.block_size
        tail = bsz - _TRAILER.size
        hdr, trl = _HEADER.pack_into, _TRAILER.pack_into
        for off in range(0, len(buf), bsz):
            hdr(buf, off, _MAGIC, lba, gen)
            trl(buf, off + tail, lba, gen)
            lba += 1

    def explain(self, got: bytearray, expect: bytearray, lba: int) -> str:
        """What is wrong with the first mismatching logical block."""
        bsz = self.block_size
        for off in range(0, len(got), bsz):
            if got[off : off + bsz] == expect[off : off + bsz]:
                continue
            b = lba + off // bsz
            _, want_lba, want_gen = _HEADER.unpack_from(expect, off)
            magic, got_lba, got_gen = _HEADER.unpack_from(got, off)
            t_lba, t_gen = _TRAILER.unpack_from(got, off + bsz - _TRAILER.size)
            if magic != _MAGIC:
                what = "no stamp of this run (never written, or overwritten by someone else)"
            elif (got_lba, got_gen) != (t_lba, t_gen):
                what = f"a torn block: header says LBA {got_lba} gen {got_gen}, trailer LBA {t_lba} gen {t_gen}"
            elif got_lba != want_lba:
                what = f"the block of LBA {got_lba} (gen {got_gen}): misplaced data"
            elif got_gen != want_gen:
                what = f"generation {got_gen}: stale data (a lost or reordered write)"
            else:
                what = "the right stamps but corrupted bytes between them"
            return f"LBA {b}: expected LBA {want_lba} generation {want_gen}, found {what}"
        return f"LBA {lba}: mismatch"  # pragma: no cover - equal blocks mean equal buffers


# --- the engine ----------------------------------------------------------------------------------


class _Slot:
    """One of the ``qd`` streams of I/O: its buffers and the I/O it has in flight."""

    __slots__ = ("done", "expect", "gen", "is_read", "offset", "rbuf", "t0", "unit", "wbuf")

    rbuf: bytearray
    wbuf: bytearray
    expect: bytearray
    unit: int
    offset: int
    is_read: bool
    gen: int  # the generation a verified write stamps
    t0: int  # monotonic ns when the I/O was issued
    done: Callable[[BaseException | None], None]


class Bench:
    """One run of ``spec`` on ``device``; ``await run()`` returns the result."""

    def __init__(self, device: BenchDevice, spec: BenchSpec, *,
                 progress: Callable[[Progress], None] | None = None, interval: float = 1.0) -> None:
        if spec.rw not in MODES:
            raise BenchError(f"--rw {spec.rw!r}: expected one of {', '.join(MODES)}")
        bsz = device.block_size
        if spec.bs <= 0 or spec.bs % bsz:
            raise BenchError(f"--bs {spec.bs}: must be a positive multiple of the block size {bsz}")
        if spec.qd < 1:
            raise BenchError(f"--qd {spec.qd}: must be at least 1")
        if spec.seconds <= 0:
            raise BenchError(f"--time {spec.seconds}: must be positive")
        if spec.offset < 0 or spec.offset % bsz or spec.offset >= device.size:
            raise BenchError(f"--offset {spec.offset}: must be a multiple of {bsz} below the device size "
                             f"{device.size}")
        size = device.size - spec.offset if spec.size is None else min(spec.size, device.size - spec.offset)
        self.units = size // spec.bs
        if self.units < 1:
            raise BenchError(f"the region ({size} bytes at offset {spec.offset}) is smaller than --bs {spec.bs}")
        if spec.verify and self.units < spec.qd:
            raise BenchError(f"--verify needs at least --qd ({spec.qd}) units of --bs in the region; "
                             f"it holds {self.units}")
        if spec.verify and self.units > MAX_VERIFY_UNITS:
            raise BenchError(f"--verify over {self.units} units of {spec.bs} bytes needs too much memory; "
                             "limit the region with --size or raise --bs")
        self.device = device
        self.spec = spec
        self.region_size = self.units * spec.bs
        self.progress = progress
        self.interval = interval
        seed = spec.seed if spec.seed is not None else int.from_bytes(os.urandom(4), "big")
        self.rng = random.Random(seed)
        self.stamper = Stamper(spec.bs, bsz, seed) if spec.verify else None
        self.gen = array("I", bytes(4 * self.units)) if spec.verify else array("I")
        self.busy: set[int] = set()
        self.track_busy = spec.verify and spec.writes
        self.cursor = 0
        self.hist = Histogram()
        self.ios = self.read_ios = self.write_ios = self.bytes = 0
        self.errors = self.verify_failures = self.verify_reads = 0
        self.messages: list[str] = []
        self.stopped = ""
        self.phase = "run"
        self.max_gap = 0
        self.last_done = 0
        self.deadline = 0
        self.stalls: list[tuple[int, int]] = []  # (monotonic ns when the gap began, its length in ns)

    def stop(self, reason: str) -> None:
        """End the run early (Ctrl-C): I/Os in flight complete, then the result says why it stopped."""
        if not self.stopped:
            self.stopped = reason

    # --- choosing the next I/O ----------------------------------------------------------------

    def _next_unit(self) -> int:
        spec = self.spec
        if spec.rw in ("read", "write"):
            u = self.cursor
            while self.track_busy and u in self.busy:
                u = (u + 1) % self.units
            self.cursor = (u + 1) % self.units
        else:
            randbelow = self.rng.randrange
            u = randbelow(self.units)
            while self.track_busy and u in self.busy:
                u = randbelow(self.units)
        return u

    def _is_read(self) -> bool:
        rw = self.spec.rw
        if rw == "randrw":
            return self.rng.random() * 100 < self.spec.rwmix_read
        return rw in ("read", "randread")

    # --- bookkeeping --------------------------------------------------------------------------

    def _error(self, what: str, offset: int, e: BaseException) -> None:
        self.errors += 1
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(f"{what} at byte {offset}: {e}")
        if self.spec.max_errors and self.errors >= self.spec.max_errors and not self.stopped:
            self.stopped = f"stopped after {self.errors} errors (max_errors)"

    def _check(self, buf: bytearray, expect: bytearray, unit: int) -> None:
        assert self.stamper is not None
        gen = self.gen[unit]
        if gen in (0, _UNKNOWN):  # never written by this run, or its last write failed
            return
        lba = (self.spec.offset + unit * self.spec.bs) // self.device.block_size
        self.verify_reads += 1
        self.stamper.stamp(expect, lba, gen)
        if buf != expect:
            self.verify_failures += 1
            if len(self.messages) < MAX_MESSAGES:
                self.messages.append("verify: " + self.stamper.explain(buf, expect, lba))

    def _stall(self, began: int, length: int) -> None:
        if len(self.stalls) < MAX_STALLS:
            self.stalls.append((began, length))

    # --- the load: qd slots, each with one I/O in flight at a time ----------------------------

    def _slot(self) -> _Slot:
        slot = _Slot()
        bs = self.spec.bs
        if self.stamper is not None:
            slot.rbuf, slot.wbuf, slot.expect = bytearray(bs), self.stamper.filled(bs), self.stamper.filled(bs)
        else:
            slot.rbuf = slot.wbuf = slot.expect = bytearray(os.urandom(bs))
        return slot

    def _begin(self, slot: _Slot) -> bool:
        """Choose the slot's next I/O (stamping the data of a verified write); False when the run is over."""
        now = time.monotonic_ns()
        if self.stopped or now >= self.deadline:
            return False
        unit = self._next_unit()
        slot.unit, slot.offset, slot.gen = unit, self.spec.offset + unit * self.spec.bs, 0
        slot.is_read = self._is_read()
        if self.track_busy:
            self.busy.add(unit)
        if not slot.is_read and self.stamper is not None:
            gen = self.gen[unit]
            slot.gen = gen + 1 if gen < _UNKNOWN - 1 else 1
            self.stamper.stamp(slot.wbuf, slot.offset // self.device.block_size, slot.gen)
            now = time.monotonic_ns()  # the I/O starts after the stamping
        slot.t0 = now
        return True

    def _end(self, slot: _Slot, error: BaseException | None) -> None:
        """Account for the slot's I/O that just ended: latency, stalls, counts, verification."""
        if error is not None:
            if self.stamper is not None and not slot.is_read:
                self.gen[slot.unit] = _UNKNOWN  # the unit may hold the old or the new data, or a mix
            self._error("read" if slot.is_read else "write", slot.offset, error)
            self.busy.discard(slot.unit)
            return
        # the hot path: a few integer operations per I/O
        t1 = time.monotonic_ns()
        self.hist.add(t1 - slot.t0)
        gap = t1 - self.last_done
        if gap > self.max_gap:
            self.max_gap = gap
        if gap >= STALL_RECORD_NS:  # rare: one comparison per I/O otherwise
            self._stall(self.last_done, gap)
        self.last_done = t1
        self.ios += 1
        self.bytes += self.spec.bs
        if slot.is_read:
            self.read_ios += 1
            if self.stamper is not None:
                self._check(slot.rbuf, slot.expect, slot.unit)
        else:
            self.write_ios += 1
            if self.stamper is not None:
                self.gen[slot.unit] = slot.gen
        if self.track_busy:
            self.busy.discard(slot.unit)

    async def _load(self) -> None:
        """Keep ``qd`` I/Os in flight until the deadline (or a stop), then let the last ones finish."""
        qd = self.spec.qd
        start_io = getattr(self.device, "start_io", None)
        if start_io is None:  # any BlockDevice: one coroutine per slot
            await asyncio.gather(*(self._worker(self._slot()) for _ in range(qd)))
            return
        # Devices with start_io (ScsiDevice) are driven by callbacks: no task or coroutine per I/O
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        left = qd

        def drive(slot: _Slot) -> None:
            nonlocal left
            if self._begin(slot):
                start_io(slot.offset, slot.rbuf if slot.is_read else slot.wbuf, slot.is_read, slot.done)
                return
            left -= 1
            if left == 0 and not finished.done():
                finished.set_result(None)

        def ended(slot: _Slot, error: BaseException | None) -> None:
            if error is not None and not isinstance(error, SanpathError | OSError):
                if not finished.done():  # a bug: end the run with it, as the coroutine path would
                    finished.set_exception(error)
                self.stop(f"internal error: {error!r}")
                return
            self._end(slot, error)
            if error is None:
                drive(slot)
            else:
                loop.call_later(0.01, drive, slot)  # a dead device fails at once: do not spin

        for _ in range(qd):
            slot = self._slot()
            slot.done = functools.partial(ended, slot)
            drive(slot)
        try:
            await finished
        except asyncio.CancelledError:
            self.stop("cancelled")  # the slots stop issuing; their I/Os in flight end on their own
            raise

    async def _worker(self, slot: _Slot) -> None:
        read_into, write = self.device.read_into, self.device.write
        while self._begin(slot):
            try:
                if slot.is_read:
                    await read_into(slot.offset, slot.rbuf)
                else:
                    await write(slot.offset, slot.wbuf)
            except (SanpathError, OSError) as e:
                self._end(slot, e)
                await asyncio.sleep(0.01)  # a dead device fails at once: do not spin
                continue
            self._end(slot, None)

    async def _prefill(self) -> None:
        """Write the whole region at generation 1, so that every read of a read mode can be checked."""
        stamper = self.stamper
        assert stamper is not None
        spec, bsz = self.spec, self.device.block_size
        chunk = max(spec.bs, PREFILL_CHUNK // spec.bs * spec.bs)
        next_off = 0

        async def filler() -> None:
            nonlocal next_off
            buf = stamper.filled(chunk)
            while next_off < self.region_size and not self.stopped:
                off = next_off
                n = min(chunk, self.region_size - off)
                next_off += n
                view = memoryview(buf)[:n]
                stamper.stamp(buf, (spec.offset + off) // bsz, 1)
                try:
                    await self.device.write(spec.offset + off, view)
                except (SanpathError, OSError) as e:
                    self._error("prefill write", spec.offset + off, e)
                    for u in range(off // spec.bs, (off + n) // spec.bs):
                        self.gen[u] = _UNKNOWN
                    continue
                for u in range(off // spec.bs, (off + n) // spec.bs):
                    self.gen[u] = 1
                self.bytes += n

        self.phase = "prefill"
        await asyncio.gather(*(filler() for _ in range(min(spec.qd, 8))))
        self.bytes = 0

    async def _read_back(self) -> None:
        """After a write-only run: read every unit written and check it."""
        assert self.stamper is not None
        spec = self.spec
        self.phase = "verify"
        todo = iter([u for u in range(self.units) if self.gen[u] not in (0, _UNKNOWN)])

        async def reader() -> None:
            assert self.stamper is not None
            rbuf, expect = bytearray(spec.bs), self.stamper.filled(spec.bs)
            for u in todo:
                offset = spec.offset + u * spec.bs
                try:
                    await self.device.read_into(offset, rbuf)
                except (SanpathError, OSError) as e:
                    self._error("verify read", offset, e)
                    continue
                self._check(rbuf, expect, u)

        await asyncio.gather(*(reader() for _ in range(spec.qd)))

    async def _reporter(self, start: int) -> None:
        assert self.progress is not None
        last_ios, last_bytes, last_t = self.ios, self.bytes, start
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic_ns()
            dt = max(now - last_t, 1) / 1e9
            self.progress(Progress((now - start) / 1e9, self.ios, self.bytes, (self.ios - last_ios) / dt,
                                   (self.bytes - last_bytes) / dt / 1e6, self.errors, self.verify_failures,
                                   self.phase))
            last_ios, last_bytes, last_t = self.ios, self.bytes, now

    async def run(self) -> BenchResult:
        spec = self.spec
        reporter: asyncio.Task[None] | None = None
        start = time.monotonic_ns()
        if self.progress is not None:
            reporter = asyncio.get_running_loop().create_task(self._reporter(start))
        try:
            if spec.verify and spec.reads:
                await self._prefill()
            self.phase = "run"
            start = time.monotonic_ns()
            self.last_done = start
            self.deadline = start + int(spec.seconds * 1e9)
            await self._load()
            end = time.monotonic_ns()
            self.max_gap = max(self.max_gap, end - self.last_done)
            if end - self.last_done >= STALL_RECORD_NS:
                self._stall(self.last_done, end - self.last_done)
            run_ios, run_bytes = self.ios, self.bytes
            if spec.verify and not spec.reads and not self.stopped:
                await self._read_back()
        finally:
            if reporter is not None:
                reporter.cancel()
        seconds = (end - start) / 1e9
        wall = time.time() - time.monotonic_ns() / 1e9  # monotonic -> wall clock, for ``stalls``
        h = self.hist
        lat = Latency(p50=round(h.percentile(50) / 1e3, 1), p99=round(h.percentile(99) / 1e3, 1),
                      p999=round(h.percentile(99.9) / 1e3, 1), max=round(h.max / 1e3, 1),
                      mean=round(h.total / h.count / 1e3, 1) if h.count else 0.0)
        return BenchResult(
            rw=spec.rw, bs=spec.bs, qd=spec.qd, seconds=round(seconds, 3), bytes=run_bytes, ios=run_ios,
            read_ios=self.read_ios, write_ios=self.write_ios, iops=round(run_ios / seconds, 1),
            mbps=round(run_bytes / seconds / 1e6, 2), lat_us=lat, errors=self.errors, verify=spec.verify,
            verify_failures=self.verify_failures, verify_reads=self.verify_reads,
            max_stall_ms=round(self.max_gap / 1e6, 2), region_offset=spec.offset, region_size=self.region_size,
            stopped_early=self.stopped, messages=tuple(self.messages),
            stalls=tuple((round(wall + t / 1e9, 4), round(n / 1e6, 2)) for t, n in self.stalls))


async def run_bench(device: BenchDevice, spec: BenchSpec, *, progress: Callable[[Progress], None] | None = None,
                    interval: float = 1.0) -> BenchResult:
    """Run ``spec`` against ``device``; ``progress`` is called every ``interval`` seconds."""
    return await Bench(device, spec, progress=progress, interval=interval).run()
