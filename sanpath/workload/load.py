"""The data-path part of ``sanpath demo --lab``: attach to an array over every path (one multipath device),
export it over NBD on a unix socket, run verified random I/O through the export while a ``Fault`` takes
some paths down and brings them back, and show the live status. ``attach_and_load`` takes the fault as
a ``Fault``, built once the device (and so its paths) exists."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Protocol

from ..export.nbd.client import NbdClient
from ..host.attach import AttachService, NbdEndpoint
from ..initiator.session import SessionConfig
from ..multipath.device import MultipathDevice
from ..multipath.discovery import MultipathSpec
from ..multipath.path import Path
from ..multipath.policy import Policy
from ..multipath.status import render
from .demo import DemoResult, verified_load

IQN = "iqn.2026-11.org.sanpath:demo"
# Tight liveness so that the demo shows a sub-second failover (see multipath/config.py for the defaults).
POLICY = Policy(polling_interval=0.5, nop_interval=0.25, nop_timeout=0.5, relogin_backoff=0.25)
WATCH_INTERVAL = 0.5


class Fault(Protocol):
    """What the demo does to its paths half-way through the load, and how it undoes it."""

    @property
    def victims(self) -> Sequence[Path]:
        """The paths the fault takes down (failover: all of them down; failback: all carry I/O again)."""

    def describe(self) -> str: ...

    async def inject(self) -> None: ...

    async def restore(self) -> None: ...


FaultFor = Callable[[MultipathDevice], Fault]


async def attach_and_load(spec: MultipathSpec, *, seconds: float, fault_for: FaultFor,
                          out: Callable[[str], None]) -> DemoResult:
    """Attach to ``spec`` (every path, one multipath device), export it over NBD on a unix socket, run
    verified random I/O through the export for ``seconds`` while ``fault_for(device)`` fails some paths
    and restores them, showing the live status; return what the load saw."""
    workdir = tempfile.mkdtemp(prefix="sanpath-demo-")
    nbd_path = os.path.join(workdir, "nbd.sock")
    service = AttachService(spec, SessionConfig("", login_timeout=5), lambda vendor, product: POLICY,
                            NbdEndpoint("unix", path=nbd_path), os.path.join(workdir, "control.sock"))
    try:
        uri = await service.start()
        device = service.device
        assert device is not None
        out(f"attached: {device.wwid}, {device.active_paths} of {len(device.paths)} paths active")
        out(f"NBD export: {uri}")
        out(render(device, events=0))
        fault = fault_for(device)
        # The verified load goes through the NBD export, as qemu or nbdcopy would use the LUN.
        client = await NbdClient.connect_unix(nbd_path, device.wwid)
        try:
            end = asyncio.get_running_loop().time() + seconds
            result, (failed_over, failed_back) = await verified_load(
                client, device.size, seconds, fail_and_restore(device, fault, seconds, end, out))
        finally:
            await client.close()
        out(render(device, events=8))
        return DemoResult(result, failed_over, failed_back, uri)
    finally:
        await service.stop()
        with contextlib.suppress(OSError):
            os.rmdir(workdir)


async def fail_and_restore(device: MultipathDevice, fault: Fault, seconds: float, end: float,
                           out: Callable[[str], None]) -> tuple[bool, bool]:
    """A quarter into the load, inject ``fault`` and watch every victim fail; restore it and watch (until
    the load ends at loop time ``end``) every victim come back and carry I/O again. Returns whether the
    failover and the failback were seen."""
    victims = fault.victims
    await asyncio.sleep(seconds * 0.25)
    out(f"\n>>> {fault.describe()}")
    await fault.inject()
    failed_over = await _watch(device, lambda: all(not v.state.up for v in victims), seconds * 0.3, out)
    out(f">>> restoring: {', '.join(v.spec.portal for v in victims)} should come back")
    await fault.restore()
    before = [v.ios for v in victims]
    limit = max(seconds * 0.35, end - asyncio.get_running_loop().time() - WATCH_INTERVAL)
    failed_back = await _watch(
        device, lambda: all(v.state.usable and v.ios > n for v, n in zip(victims, before, strict=True)), limit, out)
    return failed_over, failed_back


async def _watch(device: MultipathDevice, done: Callable[[], bool], limit: float, out: Callable[[str], None]) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    seen = False
    while loop.time() < end:
        await asyncio.sleep(WATCH_INTERVAL)
        active, total = device.active_paths, len(device.paths)
        states = ", ".join(f"{p.spec.portal} {p.state.value} ios={p.ios}" for p in device.paths)
        out(f"    {active} of {total} paths active: {states}")
        seen = seen or done()
    return seen

