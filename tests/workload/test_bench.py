"""The load engine: every mode verifies clean on a correct device, and each kind of wrong data (corrupt,
misplaced, lost write, torn block) and failed I/O is caught, counted and explained. Then the same
engine over a real session to the in-process target."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanpath.aio import within
from sanpath.errors import IscsiError
from sanpath.initiator.device import ScsiDevice
from sanpath.initiator.session import Session, SessionConfig
from sanpath.testing.inproc import TEST_IQN, running_target
from sanpath.workload.bench import MODES, Bench, BenchError, BenchSpec, Histogram, Progress, run_bench

MiB = 1 << 20


class MemDevice:
    """A correct in-memory device; each I/O yields to the loop so that workers interleave."""

    def __init__(self, size: int = 4 * MiB, block_size: int = 512) -> None:
        self.data = bytearray(size)
        self.block_size = block_size
        self.reads = self.writes = self.started = self.calls = 0

    @property
    def size(self) -> int:
        return len(self.data)

    def nth(self, n: int) -> bool:
        """True on every ``n``-th call, counted when the I/O is issued (however many are in flight)."""
        self.calls += 1
        return self.calls % n == 0

    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        await asyncio.sleep(0)
        self.reads += 1
        buffer[:] = self.data[offset : offset + len(buffer)]

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = bytes(data)  # taken at submission, as a transport would
        await asyncio.sleep(0)
        self.writes += 1
        self.data[offset : offset + len(view)] = view


class CorruptReads(MemDevice):
    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        await super().read_into(offset, buffer)
        if self.reads % 50 == 0:
            buffer[100] ^= 0xFF  # inside the first block, between header and trailer


class MisdirectedWrites(MemDevice):
    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if self.nth(20) and offset + 2 * len(data) <= self.size:
            offset += len(data)  # lands on the neighbouring unit
        await super().write(offset, data)


class ShiftedReads(MemDevice):
    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        if self.nth(30) and offset + 2 * len(buffer) <= self.size:
            offset += len(buffer)  # the neighbouring unit's data
        await super().read_into(offset, buffer)


class LostWrites(MemDevice):
    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if self.writes % 10 == 9 and self.writes > 100:
            self.writes += 1
            await asyncio.sleep(0)
            return  # acknowledged, never written
        await super().write(offset, data)


class TornWrites(MemDevice):
    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if self.writes % 15 == 14 and self.writes > 100:
            self.writes += 1
            half = bytes(data)[: self.block_size // 2]
            self.data[offset : offset + len(half)] = half  # half of the first block only
            return
        await super().write(offset, data)


class FailingReads(MemDevice):
    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        await asyncio.sleep(0)
        raise IscsiError("read failed (test)", portal="127.0.0.1:1")


DRIVERS = ("coroutines", "callbacks")


def driven(dev: MemDevice, driver: str) -> MemDevice:
    """``callbacks``: give ``dev`` a ``start_io`` built on its coroutines, so the engine drives it by
    callbacks, as it drives a ScsiDevice, instead of by one coroutine per slot. ``dev.started`` counts
    the calls; ``dev.jobs`` holds the I/Os in flight."""
    if driver == "callbacks":
        jobs: set[asyncio.Task[None]] = set()

        def start_io(offset: int, buffer: bytearray, is_read: bool, done: Callable[[BaseException | None], None]
                     ) -> None:
            async def one() -> None:
                try:
                    await (dev.read_into(offset, buffer) if is_read else dev.write(offset, buffer))
                except Exception as e:
                    done(e)
                    return
                done(None)

            dev.started += 1
            job = asyncio.get_running_loop().create_task(one())
            jobs.add(job)
            job.add_done_callback(jobs.discard)

        dev.start_io = start_io  # type: ignore[attr-defined]
        dev.jobs = jobs  # type: ignore[attr-defined]
    return dev


def spec(**kw: object) -> BenchSpec:
    base: dict[str, object] = {"bs": 4096, "qd": 8, "seconds": 0.3, "verify": True, "seed": 7}
    base.update(kw)
    return BenchSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("rw", MODES)
async def test_every_mode_verifies_clean(rw: str, driver: str) -> None:
    dev = driven(MemDevice(), driver)
    r = await run_bench(dev, spec(rw=rw))
    assert dev.started == (r.ios if driver == "callbacks" else 0)
    assert (r.errors, r.verify_failures, r.messages) == (0, 0, ())
    assert r.ios > 0 and r.verify_reads > 0
    assert r.bytes == r.ios * 4096 and r.read_ios + r.write_ios == r.ios
    if rw in ("read", "randread"):
        assert r.write_ios == 0 and r.verify_reads == r.read_ios
    if rw in ("write", "randwrite"):
        assert r.read_ios == 0 and dev.reads == r.verify_reads  # the read-back after the run
    if rw == "randrw":
        assert r.read_ios > 0 and r.write_ios > 0


@pytest.mark.parametrize(("device", "rw", "words"), [
    (CorruptReads, "randread", "corrupted bytes"),
    (ShiftedReads, "read", "misplaced"),
    (MisdirectedWrites, "write", "stale data"),  # the unit it missed still holds the previous pass
    (MisdirectedWrites, "randrw", ""),
    (LostWrites, "randrw", "stale data"),
    (TornWrites, "randwrite", "torn block"),
])
@pytest.mark.parametrize("driver", DRIVERS)
async def test_wrong_data_is_caught(device: type[MemDevice], rw: str, words: str, driver: str) -> None:
    r = await run_bench(driven(device(), driver), spec(rw=rw, seconds=0.5))
    assert r.verify_failures > 0, r
    assert r.errors == 0
    assert r.messages and all(m.startswith("verify: LBA ") for m in r.messages)
    assert any(words in m for m in r.messages), r.messages


@pytest.mark.parametrize("driver", DRIVERS)
async def test_errors_are_counted_and_stop_the_run(driver: str) -> None:
    r = await run_bench(driven(FailingReads(), driver), spec(rw="randread", verify=False, max_errors=5, seconds=30))
    assert r.errors >= 5 and r.ios == 0
    assert "stopped after" in r.stopped_early
    assert "read failed (test)" in r.messages[0] and "at byte" in r.messages[0]


class BuggyReads(MemDevice):
    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        await asyncio.sleep(0)
        raise ZeroDivisionError("a bug, not an I/O error")


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_bug_below_the_engine_ends_the_run_with_it(driver: str) -> None:
    with pytest.raises(ZeroDivisionError):
        await within(run_bench(driven(BuggyReads(), driver), spec(rw="randread", verify=False,
                                                                            seconds=30)), 10)


async def test_cancelling_a_callback_driven_run_stops_issuing() -> None:
    dev = driven(MemDevice(), "callbacks")
    run = asyncio.ensure_future(run_bench(dev, spec(rw="randrw", verify=False, seconds=30)))
    while dev.started < 100:
        await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    async def drained() -> None:
        while dev.jobs:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)

    await within(drained(), 10)  # the I/Os in flight end on their own, long before the 30 s...
    started = dev.started
    await asyncio.sleep(0.1)
    assert dev.started == started  # ...and none follows them


async def test_no_verify_reads_nothing_back() -> None:
    dev = MemDevice()
    r = await run_bench(dev, spec(rw="write", verify=False))
    assert r.verify_reads == 0 and dev.reads == 0 and r.write_ios == dev.writes


async def test_region_is_respected() -> None:
    dev = MemDevice(size=8 * MiB)
    r = await run_bench(dev, spec(rw="randwrite", verify=False, offset=MiB, size=MiB))
    assert r.region_offset == MiB and r.region_size == MiB
    assert not any(dev.data[:MiB]) and not any(dev.data[2 * MiB :])
    assert any(dev.data[MiB : 2 * MiB])


async def test_progress_reports() -> None:
    seen: list[Progress] = []
    await run_bench(MemDevice(), spec(rw="randrw", seconds=0.5), progress=seen.append, interval=0.05)
    assert seen and all(p.phase in ("prefill", "run") for p in seen)
    assert seen[-1].ios > 0


def test_json_schema() -> None:
    r = asyncio.run(run_bench(MemDevice(), spec(rw="randread", verify=False)))
    d = r.to_json()
    for key in ("rw", "bs", "qd", "seconds", "bytes", "iops", "mbps", "errors", "verify_failures", "max_stall_ms"):
        assert key in d
    assert set(d["lat_us"]) >= {"p50", "p99", "max"}
    assert d["lat_us"]["p50"] <= d["lat_us"]["p99"] <= d["lat_us"]["max"]


@pytest.mark.parametrize(("kw", "match"), [
    ({"bs": 1000}, "multiple of the block size"),
    ({"bs": 0}, "multiple of the block size"),
    ({"qd": 0}, "at least 1"),
    ({"seconds": 0}, "positive"),
    ({"rw": "trim"}, "expected one of"),
    ({"offset": 4 * MiB}, "below the device size"),
    ({"offset": 100}, "multiple of 512"),
    ({"size": 2048}, "smaller than --bs"),
    ({"size": 4096 * 4, "qd": 8}, "at least --qd"),
])
def test_bad_specs(kw: dict[str, object], match: str) -> None:
    with pytest.raises(BenchError, match=match):
        Bench(MemDevice(), spec(**kw))


@given(st.integers(min_value=0, max_value=1 << 40))
def test_histogram_buckets_are_close(v: int) -> None:
    i = Histogram.index(v)
    assert abs(Histogram.bucket_mid(i) - v) <= max(0.5, v / 32)
    if v:
        assert Histogram.index(v - 1) <= i  # monotonic


def test_histogram_percentiles() -> None:
    h = Histogram()
    for v in range(1, 10001):
        h.add(v * 1000)
    assert math.isclose(h.percentile(50), 5_000_000, rel_tol=0.04)
    assert math.isclose(h.percentile(99), 9_900_000, rel_tol=0.04)
    assert h.percentile(100) == h.max == 10_000_000


@pytest.mark.parametrize("rw", MODES)
async def test_against_the_target(rw: str) -> None:
    async with running_target(luns=("mem:8MiB",)) as server:
        host, port = server.portals[0]
        session = await Session.open(SessionConfig(host, port, TEST_IQN))
        try:
            dev = await ScsiDevice(session, 0).open()
            r = await run_bench(dev, BenchSpec(rw=rw, bs=16384, qd=16, seconds=0.5, verify=True, size=2 * MiB))
        finally:
            await session.logout()
    assert (r.errors, r.verify_failures) == (0, 0), r.messages
    assert r.ios > 0 and r.verify_reads > 0
