"""``sanpath demo``: the whole system in one command, no root and no array to bring.

It starts the embedded sanpath array with two portals on two loopback addresses (127.0.0.1 and
127.0.0.2: two paths), attaches (discovery, a login per portal, one multipath device), exports it over
NBD on a unix socket, runs verified random writes and reads through the export, fails one path by
black-holing its portal (no RST: only liveness can tell) and restores it while showing the live status,
and ends with a summary. It exits 0 only if no I/O failed and no verify check found wrong data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from .attach import AttachService, NbdEndpoint
from .export.nbd.client import NbdClient
from .initiator.bench import Bench, BenchResult, BenchSpec
from .initiator.session import SessionConfig
from .multipath.discovery import MultipathSpec
from .multipath.policy import Policy
from .multipath.status import render
from .target.config import quick_config
from .target.server import TargetServer

IQN = "iqn.2026-11.org.sanpath:demo"
# Tight liveness so that the demo shows a sub-second failover (see multipath/config.py for the defaults).
POLICY = Policy(polling_interval=0.5, nop_interval=0.25, nop_timeout=0.5, relogin_backoff=0.25)


@dataclass
class DemoResult:
    bench: BenchResult
    failed_over: bool
    failed_back: bool
    nbd: str

    @property
    def ok(self) -> bool:
        return (self.bench.errors == 0 and self.bench.verify_failures == 0 and self.failed_over
                and self.failed_back)


async def run_demo(*, seconds: float = 12.0, size: str = "256MiB", out: Callable[[str], None] = print) -> DemoResult:
    spec = quick_config(IQN, ["127.0.0.1:0", "127.0.0.2:0"], [f"mem:{size}"])
    server = TargetServer(spec)
    portals = await server.start()
    out(f"array: {IQN}, {size} LUN, portals {', '.join(f'{h}:{p}' for h, p in portals)}")
    workdir = tempfile.mkdtemp(prefix="sanpath-demo-")
    nbd_path = os.path.join(workdir, "nbd.sock")
    host, port = portals[0]
    service = AttachService(MultipathSpec(((host, port),), IQN), SessionConfig("", login_timeout=5),
                            lambda vendor, product: POLICY, NbdEndpoint("unix", path=nbd_path),
                            os.path.join(workdir, "control.sock"))
    try:
        uri = await service.start()
        device = service.device
        assert device is not None
        out(f"attached: {device.wwid}, {device.active_paths} of {len(device.paths)} paths active")
        out(f"NBD export: {uri}")
        out(render(device, events=0))
        # The verified load goes through the NBD export, as qemu or nbdcopy would use the LUN.
        client = await NbdClient.connect_unix(nbd_path, device.wwid)
        try:
            bench = Bench(client, BenchSpec(rw="randrw", bs=4096, qd=16, seconds=seconds, verify=True,
                                            size=min(device.size, 64 << 20), seed=1))
            run = asyncio.ensure_future(bench.run())
            failed_over, failed_back = await _fail_and_restore(server, device, seconds, out)
            result = await run
        finally:
            await client.close()
        out(render(device, events=8))
        return DemoResult(result, failed_over, failed_back, uri)
    finally:
        await service.stop()
        await server.stop()
        with contextlib.suppress(OSError):
            os.rmdir(workdir)


async def _fail_and_restore(server: TargetServer, device: object, seconds: float,
                            out: Callable[[str], None]) -> tuple[bool, bool]:
    from .multipath.device import MultipathDevice

    assert isinstance(device, MultipathDevice)
    victim = device.paths[1]
    await asyncio.sleep(seconds * 0.25)
    out(f"\n>>> black-holing portal {victim.spec.portal} (a pulled cable: no RST, no FIN)")
    fault = server.faults.inject("blackhole", portal=_target_portal(server, victim.spec.host))
    failed_over = await _watch(device, lambda: not victim.state.up, seconds * 0.3, out)
    out(f">>> restoring {victim.spec.portal}")
    await server.faults.restore(fault.id)
    failed_back = await _watch(device, lambda: victim.state.usable and victim.ios > 0, seconds * 0.35, out)
    return failed_over, failed_back


def _target_portal(server: TargetServer, host: str) -> str:
    h, p = next((h, p) for h, p in server.portals if h == host)
    return f"{h}:{p}"


async def _watch(device: object, done: Callable[[], bool], limit: float, out: Callable[[str], None]) -> bool:
    from .multipath.device import MultipathDevice

    assert isinstance(device, MultipathDevice)
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    seen = False
    while loop.time() < end:
        await asyncio.sleep(0.5)
        active, total = device.active_paths, len(device.paths)
        states = ", ".join(f"{p.spec.portal} {p.state.value} ios={p.ios}" for p in device.paths)
        out(f"    {active} of {total} paths active: {states}")
        seen = seen or done()
    return seen


def summary(r: DemoResult) -> str:
    b = r.bench
    verdict = "PASS: nothing lost" if r.ok else "FAIL"
    return (f"\nsummary: {b.ios} I/Os ({b.read_ios} reads, {b.write_ios} writes), {b.bytes} bytes, "
            f"{b.errors} errors, {b.verify_failures} verify failures, longest stall {b.max_stall_ms:.0f} ms; "
            f"failover {'seen' if r.failed_over else 'NOT seen'}, failback {'seen' if r.failed_back else 'NOT seen'}"
            f"\n{verdict}")
