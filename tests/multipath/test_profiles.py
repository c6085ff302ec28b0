"""The multipath handler against the sanpath array in every profile: portal mode; multi-IQN through the
wildcard ``*``; ALUA (I/O only on active/optimized paths while one is up, failover to non-optimized or
standby, transitions followed); RDAC (ownership moves on failover and I/O continues). Paths come from
real discovery; faults come from the array's own fault injection."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from sanpath.initiator.session import SessionConfig
from sanpath.multipath.device import MultipathDevice
from sanpath.multipath.discovery import MultipathSpec, assemble
from sanpath.multipath.monitor import PathMonitor
from sanpath.multipath.policy import Policy
from sanpath.multipath.sessions import SessionPool
from sanpath.multipath.states import PathState
from sanpath.target.config import quick_config
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import TEST_IQN, running_target
from sanpath.testing.waiting import wait_until

HANG_GUARD = 60.0
FAST = Policy(polling_interval=0.2, nop_interval=0.2, nop_timeout=0.5, relogin_backoff=0.1, command_timeout=10)
PORTALS = ["127.0.0.1:0", "127.0.0.2:0", "127.0.0.3:0", "127.0.0.4:0"]  # A: first half, B: second half


@asynccontextmanager
async def multipath(profile: str, policy: Policy, iqn: str = "*", **profile_args: object
                    ) -> AsyncIterator[tuple[TargetServer, MultipathDevice]]:
    spec = quick_config(TEST_IQN, PORTALS, ["mem:16MiB"], profile=profile, **profile_args)  # type: ignore[arg-type]
    async with running_target(spec=spec) as server:
        pool = SessionPool()
        first = server.portals[0]
        devices = await assemble(MultipathSpec(((first[0], first[1]),), iqn), SessionConfig("", login_timeout=3),
                                 policy, pool)
        assert len(devices) == 1
        device = devices[0]
        monitor = PathMonitor(device, pool)
        monitor.start()
        try:
            yield server, device
        finally:
            await monitor.stop()
            await pool.close()




def controller_of(server: TargetServer, port: int) -> str:
    bound = [p for _, p in server.portals]
    return "A" if bound.index(port) < len(bound) // 2 else "B"


async def write_read(device: MultipathDevice, n: int = 40, base: int = 0) -> None:
    for i in range(n):
        data = os.urandom(4096)
        await device.write(base + i * 4096, data)
        assert await device.read(base + i * 4096, 4096) == data


@pytest.mark.parametrize(("profile", "iqn_count"), [("portal", 1), ("multi-iqn", 4)])
async def test_active_active_profiles_use_every_path_and_survive_a_controller(profile: str, iqn_count: int) -> None:
    async with multipath(profile, FAST) as (server, device):
        assert len(device.paths) == 4 and len({p.spec.iqn for p in device.paths}) == iqn_count
        await write_read(device)
        assert all(p.ios > 0 for p in device.paths)  # multibus round robin over every path
        for host, port in server.portals[2:]:  # pull both cables to the second half of the portals
            server.faults.inject("blackhole", portal=f"{host}:{port}")
        await write_read(device, base=1 << 20)  # I/O goes on through the others, nothing lost
        await wait_until(lambda: device.active_paths == 2, "B's paths to fail")
        await server.faults.restore("all")
        await wait_until(lambda: device.active_paths == 4, "B's paths to come back")


async def test_alua_io_only_on_optimized_then_failover_to_non_optimized() -> None:
    policy = replace(FAST, path_grouping_policy="group_by_prio", prio="alua")
    async with multipath("alua", policy) as (server, device):
        await wait_until(lambda: len(device.groups) == 2, "two priority groups")
        await write_read(device)
        optimized = [p for p in device.paths if controller_of(server, p.spec.port) == "A"]
        others = [p for p in device.paths if p not in optimized]
        assert all(p.ios > 0 for p in optimized) and all(p.ios == 0 for p in others)
        assert all(p.alua_state == 0 for p in optimized) and all(p.alua_state == 1 for p in others)
        server.faults.inject("controller", controller="A")  # implicit transition: B becomes the owner
        await write_read(device, base=1 << 20)
        assert all(p.ios > 0 for p in others)
        await wait_until(lambda: all(p.alua_state == 0 for p in others), "B's paths to be active/optimized")


async def test_alua_standby_failover_follows_the_transition() -> None:
    policy = replace(FAST, path_grouping_policy="group_by_prio", prio="alua")
    async with multipath("alua", policy, non_owner_state="standby") as (server, device):
        standby = [p for p in device.paths if controller_of(server, p.spec.port) == "B"]
        await wait_until(lambda: all(p.state == PathState.GHOST for p in standby), "standby paths to be ghosts")
        await write_read(device)
        server.faults.inject("controller", controller="A")
        await write_read(device, base=1 << 20)  # no error: the array moved the LUN to B, I/O followed
        assert sum(p.ios for p in standby) > 0
        await wait_until(lambda: all(p.state.usable for p in standby), "every path to B to be in use")
        await write_read(device, base=2 << 20)
        assert all(p.ios > 0 for p in standby)


async def test_rdac_ownership_moves_on_failover_and_io_continues() -> None:
    policy = replace(FAST, path_grouping_policy="group_by_prio", prio="rdac", path_checker="rdac", handler="rdac")
    async with multipath("rdac", policy) as (server, device):
        passive = [p for p in device.paths if controller_of(server, p.spec.port) == "B"]
        owner = [p for p in device.paths if p not in passive]
        await wait_until(lambda: all(p.state == PathState.GHOST for p in passive), "B's paths to be passive")
        await write_read(device)
        for p in owner:  # pull every cable to controller A (the array itself notices nothing)
            server.faults.inject("blackhole", portal=f"{p.spec.host}:{p.spec.port}")
        await write_read(device, base=1 << 20)  # no error: ownership moved to B
        assert sum(p.ios for p in passive) > 0
        await wait_until(lambda: all(p.state.usable for p in passive), "every path to B to be in use")
        kinds = [e.kind for e in device.events]
        assert "activate" in kinds  # the rdac handler moved ownership with MODE SELECT page 2Ch


@pytest.mark.parametrize(("checker", "caught"), [("tur", False), ("readsector0", True)])
async def test_backstore_dead_but_tur_good_is_caught_by_the_read_checker(checker: str, caught: bool) -> None:
    """PEERS.md failure mode 1: the array answers TEST UNIT READY with GOOD while its backing store is
    dead. A TUR checker keeps such paths up; the read-based checker fails them."""
    async with multipath("portal", replace(FAST, path_checker=checker)) as (server, device):
        await write_read(device, n=4)
        fault = server.faults.inject("medium-error", lun=0)
        if caught:
            await wait_until(lambda: device.active_paths == 0, "the read checker to fail every path")
            assert all("readsector0" in p.reason for p in device.paths)
        else:
            await asyncio.sleep(1.0)  # several polling intervals
            assert device.active_paths == len(device.paths)  # TUR says GOOD: nothing noticed
        await server.faults.restore(fault.id)
        await wait_until(lambda: device.active_paths == len(device.paths), "every path up again")
        await write_read(device, n=4)
