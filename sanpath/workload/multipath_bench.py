"""The bench over multipath: a multipath device assembled from a target spec (every path discovered, the
configuration applied), its path monitor, the load run on it, and when each reinstated path carries I/O
again; the result comes with per-path counters, events and the topology."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ..errors import ConfigError
from ..initiator.session import SessionConfig
from ..multipath.config import policy_source
from ..multipath.device import MultipathDevice
from ..multipath.discovery import MultipathSpec, assemble
from ..multipath.monitor import PathMonitor
from ..multipath.path import Path, PathEvent
from ..multipath.sessions import SessionPool
from ..multipath.status import render, topology
from .bench import BenchResult, BenchSpec
from .runner import ProgressSink, run_engine


async def open_multipath(base: SessionConfig, targets: str, iqn: str, scsi_id: str | None, sources: str,
                         config_path: str | None, assignments: list[str],
                         pool: SessionPool) -> tuple[MultipathDevice, PathMonitor]:
    spec = MultipathSpec.parse(targets, iqn, scsi_id, sources)
    devices = await assemble(spec, base, policy_source(config_path, assignments), pool)
    if len(devices) > 1:
        ids = ", ".join(d.wwid for d in devices)
        raise ConfigError("--scsi-id", f"{len(devices)} LUNs found ({ids}); choose one with --scsi-id")
    device = devices[0]
    monitor = PathMonitor(device, pool)
    monitor.start()
    return device, monitor


class FailbackWatch:
    """When each reinstated path carries I/O again: for every "reinstated" event, the wall-clock time of
    the path's first completed I/O after it (polled every ``interval``; None if none came). This is the
    failback a user sees, which the event alone does not prove. Path events and failbacks also go to
    ``note`` (the progress stream) as they happen, so a watcher can follow a run live."""

    def __init__(self, device: MultipathDevice, note: Any = None, interval: float = 0.005) -> None:
        self.device = device
        self.note = note
        self.interval = interval
        self.failbacks: list[dict[str, Any]] = []
        self._pending: list[tuple[dict[str, Any], Path, int]] = []  # (record, path, ios at reinstatement)
        self._task: asyncio.Task[None] | None = None
        device.listeners.append(self._event)

    def _event(self, event: PathEvent) -> None:
        if self.note is not None:
            self.note(str(event))
        if event.kind != "reinstated":
            return
        path = next((p for p in self.device.paths if p.name == event.path), None)
        if path is not None:
            record = {"path": event.path, "reinstated": event.time, "first_io": None}
            self.failbacks.append(record)
            self._pending.append((record, path, path.ios))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self._pending:
                continue
            now, still = time.time(), []
            for record, path, ios in self._pending:
                if path.ios > ios:
                    record["first_io"] = now
                    if self.note is not None:
                        self.note(f"{path.name}: carries I/O again "
                                  f"({(now - record['reinstated']) * 1000:.0f} ms after reinstatement)")
                else:
                    still.append((record, path, ios))
            self._pending = still

    async def stop(self) -> None:
        self.device.listeners.remove(self._event)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def multipath_bench(base: SessionConfig, targets: str, iqn: str, scsi_id: str | None, sources: str,
                          config_path: str | None, assignments: list[str], spec: BenchSpec,
                          printer: ProgressSink | None) -> tuple[BenchResult, dict[str, Any]]:
    pool = SessionPool()
    try:
        device, monitor = await open_multipath(base, targets, iqn, scsi_id, sources, config_path, assignments, pool)
        watch = FailbackWatch(device, printer.note if printer is not None else None)
        watch.start()
        try:
            result = await run_engine(device, device.wwid, spec, printer)
        finally:
            await watch.stop()
            await monitor.stop()
        topo = topology(device, events=200)
        extra = {
            "wwid": device.wwid,
            "per_path": {p.name: {"ios": p.ios, "bytes": p.bytes, "errors": p.errors, "state": p.state.value}
                         for p in device.paths},
            "events": topo["events"],
            "failbacks": watch.failbacks,  # per reinstatement: when the path carried I/O again (wall clock)
            "paths_active": topo["paths_active"],
            "mpath_counts": topo["mpath_counts"],
            "topology": render(device),
        }
        return result, extra
    finally:
        await asyncio.shield(pool.close())
