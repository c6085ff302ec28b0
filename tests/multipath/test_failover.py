"""Failover and failback through real sockets: a sanpath target with two portals, each path through a fault
proxy (a "cable" that can be pulled without root). Verified I/O must see no error and no corruption."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import pytest

from sanpath.aio import within
from sanpath.errors import NoPathError
from sanpath.initiator.discovery import DiscoveredTarget
from sanpath.initiator.session import SessionConfig
from sanpath.multipath.device import MultipathDevice
from sanpath.multipath.discovery import MultipathSpec, build_devices
from sanpath.multipath.monitor import PathMonitor
from sanpath.multipath.policy import Policy
from sanpath.multipath.sessions import SessionPool
from sanpath.multipath.states import PathState
from sanpath.target.server import TargetServer
from sanpath.testing.faultproxy import FaultProxy
from sanpath.testing.inproc import TEST_IQN, running_target
from sanpath.testing.waiting import wait_until

HANG_GUARD = 60.0
SIZE = 16 << 20
FAST = Policy(polling_interval=0.2, nop_interval=0.2, nop_timeout=0.4, relogin_backoff=0.1, command_timeout=10)


@dataclass
class Rig:
    server: TargetServer
    proxies: list[FaultProxy]
    device: MultipathDevice
    monitor: PathMonitor
    pool: SessionPool


@asynccontextmanager
async def rig(policy: Policy = FAST, paths: int = 2) -> AsyncIterator[Rig]:
    async with running_target(luns=(f"mem:{SIZE}",), portals=("127.0.0.1:0", "127.0.0.2:0")) as server:
        proxies = []
        for i in range(paths):
            host, port = server.portals[i % len(server.portals)]
            proxy = FaultProxy(host, port, listen_host=host)
            await proxy.start()
            proxies.append(proxy)
        records = [DiscoveredTarget(p.address[0], p.address[1], 1, TEST_IQN) for p in proxies]
        pool = SessionPool()
        devices = await build_devices(records, MultipathSpec(()), SessionConfig("", login_timeout=2), policy, pool)
        assert len(devices) == 1
        device = devices[0]
        monitor = PathMonitor(device, pool)
        monitor.start()
        try:
            yield Rig(server, proxies, device, monitor, pool)
        finally:
            await monitor.stop()
            await pool.close()
            for p in proxies:
                await p.stop()


async def verified_writes(device: MultipathDevice, *, qd: int, until: asyncio.Event, bs: int = 4096) -> dict[str, int]:
    """Random writes of stamped blocks from ``qd`` workers, each block read back and checked, until
    ``until`` is set. Each worker owns its own blocks, so a read must return exactly its last write."""
    stats = {"ios": 0, "errors": 0, "verify_failures": 0}
    blocks = device.size // bs

    async def worker(w: int) -> None:
        rng = random.Random(w)
        mine = [b for b in range(w, blocks, qd)]
        last: dict[int, bytes] = {}
        while not until.is_set():
            b = rng.choice(mine)
            data = os.urandom(bs)
            try:
                await device.write(b * bs, data)
                last[b] = data
                back = await device.read(b * bs, bs)
            except Exception:
                stats["errors"] += 1
                continue
            stats["ios"] += 2
            if back != last[b]:
                stats["verify_failures"] += 1
        for b, data in last.items():  # everything acknowledged is still there
            if await device.read(b * bs, bs) != data:
                stats["verify_failures"] += 1

    await asyncio.gather(*(worker(w) for w in range(qd)))
    return stats




async def test_round_robin_uses_every_path() -> None:
    async with rig() as r:
        data = os.urandom(4096)
        for i in range(20):
            await r.device.write(i * 4096, data)
        assert [p.ios for p in r.device.paths] == [10, 10]
        assert r.device.counts() == (2, 2)


@pytest.mark.parametrize("fault", ["reset", "blackhole"])
async def test_cable_pull_during_verified_writes_loses_nothing(fault: str) -> None:
    async with rig() as r:
        stop = asyncio.Event()
        load = asyncio.ensure_future(verified_writes(r.device, qd=32, until=stop))
        await asyncio.sleep(0.5)
        victim = r.device.paths[0]
        if fault == "reset":
            r.proxies[0].blackhole()
            r.proxies[0].reset_all()
        else:
            r.proxies[0].blackhole()  # no RST, no FIN: only liveness can tell
        await wait_until(lambda: victim.state == PathState.FAULTY, "the pulled path to fail")
        ios_on_victim = victim.ios
        await asyncio.sleep(0.5)
        assert victim.ios == ios_on_victim  # nothing goes to a faulty path
        r.proxies[0].restore()
        if fault == "blackhole":
            r.proxies[0].reset_all()  # the dead connections stay dead; new logins go through
        await wait_until(lambda: victim.state.usable, "the path to come back")
        await wait_until(lambda: victim.ios > ios_on_victim + 10, "the path to carry I/O again")
        stop.set()
        stats = await within(load, HANG_GUARD)
        assert stats["errors"] == 0 and stats["verify_failures"] == 0, stats
        assert stats["ios"] > 0
        kinds = [e.kind for e in r.device.events if e.path == victim.name]
        assert "failed" in kinds and "reinstated" in kinds
        if fault == "blackhole":
            failed = next(e for e in r.device.events if e.path == victim.name and e.kind == "failed")
            # found by liveness (the session's NOP-Out or the checker's bounded TUR), not by a TCP timeout
            assert "NOP-Out" in failed.reason or "no answer within" in failed.reason, failed


async def test_all_paths_down_with_queue_then_restored() -> None:
    async with rig(replace(FAST, no_path_retry="queue")) as r:
        data = os.urandom(65536)
        await r.device.write(0, data)
        for p in r.proxies:
            p.blackhole()
            p.reset_all()
        await wait_until(lambda: r.device.active_paths == 0, "every path to fail")
        pending = asyncio.ensure_future(r.device.write(65536, data))
        await asyncio.sleep(0.5)
        assert not pending.done()  # queued, not failed
        for p in r.proxies:
            p.restore()
        await within(pending, HANG_GUARD)
        assert await r.device.read(0, 131072) == data + data


async def test_all_paths_down_with_fail_after_intervals() -> None:
    async with rig(replace(FAST, no_path_retry="2")) as r:
        for p in r.proxies:
            p.blackhole()
            p.reset_all()
        await wait_until(lambda: r.device.active_paths == 0, "every path to fail")
        with pytest.raises(NoPathError) as exc:
            await within(r.device.read(0, 4096), HANG_GUARD)
        assert "no_path_retry 2" in str(exc.value) and "0 of 2 paths up" in str(exc.value)


def kinds_of(r: Rig, path_name: str) -> list[str]:
    return [e.kind for e in r.device.events if e.path == path_name]


async def flap(r: Rig, proxy: int, times: int) -> None:
    """Reset the connections through ``proxy`` ``times`` times, each once its path is back."""
    name = r.device.paths[proxy].name
    for _ in range(times):
        await wait_until(lambda: r.device.paths[proxy].state.alive, "the path to be back")
        failed = kinds_of(r, name).count("failed")
        r.proxies[proxy].reset_all()
        await wait_until(lambda n=failed: kinds_of(r, name).count("failed") > n, "the path to fail")


async def test_a_flapping_path_is_held_back_but_is_the_last_resort() -> None:
    policy = replace(FAST, marginal_failures=2, marginal_window=60, marginal_hold=3600)
    async with rig(policy) as r:
        victim, other = r.device.paths
        await flap(r, 0, 2)
        await wait_until(lambda: victim.state == PathState.MARGINAL, "the flapping path to be marginal")
        held = victim.ios
        for i in range(10):
            await r.device.write(i * 4096, bytes(4096))  # I/O goes on over the other path only
        assert victim.ios == held and other.state == PathState.ACTIVE
        assert r.device.active_group is not None and victim not in r.device.active_group.paths

        r.proxies[1].blackhole()  # the steady path goes dark: the marginal one must carry I/O, not queue
        r.proxies[1].reset_all()
        await wait_until(lambda: other.state == PathState.FAULTY, "the other path to fail")
        data = os.urandom(4096)
        await within(r.device.write(0, data), HANG_GUARD)
        assert await within(r.device.read(0, 4096), HANG_GUARD) == data
        assert victim.ios > held and victim.state == PathState.MARGINAL
        assert "last-resort" in kinds_of(r, victim.name)
        assert r.device.active_group is not None and r.device.active_group.last_resort

        r.proxies[1].restore()  # the steady path returns: I/O leaves the marginal path
        await wait_until(lambda: other.state.usable, "the other path to come back")
        held = victim.ios
        for i in range(10):
            await r.device.write(i * 4096, bytes(4096))
        assert victim.ios == held and other.state == PathState.ACTIVE


async def test_every_path_failing_at_once_is_not_flapping() -> None:
    """Three outages of the whole array (every connection reset together): an array-wide event each
    time, so no path turns marginal, and the event log says why."""
    policy = replace(FAST, marginal_failures=2, marginal_window=60, marginal_hold=3600)
    async with rig(policy) as r:
        for _ in range(3):
            await wait_until(lambda: all(p.state.usable for p in r.device.paths), "every path to be back")
            failed = [e.kind for e in r.device.events].count("failed")
            for p in r.proxies:
                p.reset_all()
            await wait_until(lambda n=failed: [e.kind for e in r.device.events].count("failed") >= n + 2,
                             "both paths to fail")
        await wait_until(lambda: all(p.state.usable for p in r.device.paths), "every path to be back")
        assert all(p.state != PathState.MARGINAL for p in r.device.paths)
        assert [e.kind for e in r.device.events].count("correlated") == 3
        await r.device.write(0, bytes(4096))


@pytest.mark.parametrize(("failback", "returns"), [("immediate", True), ("followover", True), ("manual", False)])
async def test_failback_policies(failback: str, returns: bool) -> None:
    async with rig(replace(FAST, path_grouping_policy="failover", failback=failback)) as r:
        first, second = r.device.paths
        assert r.device.active_group is not None and r.device.active_group.paths == [first]
        r.proxies[0].blackhole()  # the first path stays down until restored
        r.proxies[0].reset_all()
        await wait_until(lambda: first.state == PathState.FAULTY, "the first path to fail")
        await r.device.write(0, bytes(4096))
        assert second.state == PathState.ACTIVE  # failed over to the second group
        r.proxies[0].restore()
        await wait_until(lambda: first.state.usable, "the first path to come back")
        await asyncio.sleep(0.5)  # a few polling intervals: failback happens now or never
        assert (r.device.active_group is not None and r.device.active_group.paths == [first]) == returns


async def test_write_same_zeroes_a_range_through_the_paths() -> None:
    async with rig() as r:
        await r.device.write(0, os.urandom(1 << 20))
        await r.device.write_same(0, 1 << 20, bytes(512), unmap=True)  # the NBD export's WRITE_ZEROES
        assert await r.device.read(0, 1 << 20) == bytes(1 << 20)


async def test_allocation_reports_mapped_and_deallocated_runs() -> None:
    async with rig() as r:
        await r.device.write(1 << 20, os.urandom(1 << 20))
        runs = await r.device.allocation(0, 4 << 20)
        mapped = [(o, n) for o, n, m in runs if m]
        assert mapped == [(1 << 20, 1 << 20)]
        assert sum(n for _, n, _ in runs) == 4 << 20
