"""No stale write from a dead path may overwrite a newer one (see sanpath/multipath/device.py).

The array holds a write from path A inside its backend (a thread that cannot be interrupted, like a disk
write in progress) while the path dies. The multipath device must not complete the reissued write, nor
let a newer write through, until the old one can no longer land: the fence (session reinstatement in
portal mode, a LUN reset for a multi-IQN array) waits for it. Then a newer write must win."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path as FsPath

import pytest

from sanpath.aio import within
from sanpath.initiator.discovery import DiscoveredTarget
from sanpath.initiator.session import SessionConfig
from sanpath.multipath.device import MultipathDevice
from sanpath.multipath.discovery import MultipathSpec, build_devices
from sanpath.multipath.monitor import PathMonitor
from sanpath.multipath.path import Path, PathSpec
from sanpath.multipath.policy import Policy
from sanpath.multipath.sessions import SessionPool
from sanpath.multipath.states import PathState
from sanpath.target import backstore as B
from sanpath.target.config import quick_config
from sanpath.target.lu import ScsiResult
from sanpath.testing.faultproxy import FaultProxy
from sanpath.testing.inproc import TEST_IQN, running_target

FAST = Policy(polling_interval=0.2, nop_interval=0.2, nop_timeout=0.5, relogin_backoff=5, command_timeout=30)
VICTIM = 8 * 4096


@pytest.mark.parametrize(("profile", "fence"), [("portal", "reinstatement"), ("multi-iqn", "LUN reset")])
async def test_stale_write_never_overwrites_a_newer_one(tmp_path: FsPath, profile: str, fence: str) -> None:
    spec = quick_config(TEST_IQN, ["127.0.0.1:0", "127.0.0.2:0"], [f"{tmp_path / 'lun.img'}:16MiB"], profile=profile)
    async with running_target(spec=spec) as server:
        lu = next(iter(next(iter(server.targets.values())).luns.values()))
        store = lu.backstore
        while not isinstance(store, B.FileBackstore):  # under any fault wrapper
            store = store.inner  # type: ignore[attr-defined]
        gate, landed = threading.Event(), threading.Event()
        original_execute = lu.execute
        held = {"done": False}

        async def execute(nexus, cdb, data_out):  # type: ignore[no-untyped-def]
            """The first WRITE(16) to VICTIM goes to a backend queue of its own, which neither the LU's
            range locks nor a cancelled task can stop: the case a fence exists for."""
            if cdb[0] == 0x8A and int.from_bytes(cdb[2:10], "big") * 512 == VICTIM and not held["done"]:
                held["done"] = True
                payload = bytes(data_out)

                def backend() -> None:
                    gate.wait(30)
                    store._pwrite(VICTIM, payload)
                    landed.set()

                await B._settled(backend)
                return ScsiResult(0)
            return await original_execute(nexus, cdb, data_out)

        lu.execute = execute  # type: ignore[method-assign]
        proxies = []
        for host, port in server.portals:
            proxy = FaultProxy(host, port, listen_host=host)
            await proxy.start()
            proxies.append(proxy)
        iqns = {t.iqn: t for t in server.targets.values()}
        records = []
        for proxy, (host, port) in zip(proxies, server.portals, strict=True):
            iqn = next(i for i, t in iqns.items() if any((host, port) in tpg.network_portals for tpg in t.tpgs))
            records.append(DiscoveredTarget(proxy.address[0], proxy.address[1], 1, iqn))
        pool = SessionPool()
        (device,) = await build_devices(records, MultipathSpec(()), SessionConfig("", login_timeout=3), FAST, pool)
        monitor = PathMonitor(device, pool)
        monitor.start()
        try:
            old, new = os.urandom(4096), os.urandom(4096)
            w1 = asyncio.ensure_future(device.write(VICTIM, old))
            while not any(p.inflight for p in device.paths):
                await asyncio.sleep(0.01)
            victim = next(p for p in device.paths if p.inflight)
            proxies[device.paths.index(victim)].blackhole()
            proxies[device.paths.index(victim)].reset_all()  # the path dies with the write inside the array
            while victim.state != PathState.FAULTY:
                await asyncio.sleep(0.01)
            done, _ = await asyncio.wait([w1], timeout=1.0)
            assert not done, "the write was acknowledged while its first copy could still land"
            gate.set()
            await within(w1, 30)
            assert landed.is_set()  # the fence waited for the held write
            await device.write(VICTIM, new)  # the newer write
            assert await device.read(VICTIM, 4096) == new
            fenced = [e for e in device.events if e.kind == "fenced" and e.path == victim.name]
            assert fenced and fence in fenced[0].reason, [str(e) for e in device.events]
        finally:
            gate.set()
            await monitor.stop()
            await pool.close()
            for p in proxies:
                await p.stop()


class _LiveSession:
    logged_in = True


async def test_each_dead_path_is_fenced_by_its_own_reinstatement() -> None:
    """Reinstating one dead path's session ends that I_T nexus only: a second dead path to the same
    target (another portal, another ISID) still has its own session in the array and needs its own
    fence. (Found in the lab: a host cable pull killed two paths, one fence covered both, and writes
    still queued on the second connection landed after newer ones.)"""
    paths = [Path(PathSpec(f"127.0.0.{i + 1}", 3260, TEST_IQN, 0), session=_LiveSession(),  # type: ignore[arg-type]
                  state=PathState.ACTIVE) for i in range(3)]
    device = MultipathDevice("wwid", paths, Policy(), size=1 << 20, block_size=512)
    reinstated: list[Path] = []

    async def by_reinstatement(dead: Path, live: list[Path]) -> bool:
        reinstated.append(dead)
        return True

    device._fence_by_reinstatement = by_reinstatement  # type: ignore[method-assign]
    for p in paths[:2]:
        device.fail_path(p, "connection lost")
    device._unfenced = list(paths[:2])
    await device._fence()
    assert reinstated == paths[:2]
    assert device._unfenced == []
