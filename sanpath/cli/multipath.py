"""The multipath side of the CLI: assembling a multipath device from a target spec for ``sanpath bench``
(and, later, ``sanpath attach``), with the configuration explained."""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import ConfigError
from ..initiator.bench import BenchResult, BenchSpec
from ..initiator.session import SessionConfig
from ..multipath import config as mpconfig
from ..multipath.device import MultipathDevice
from ..multipath.discovery import MultipathSpec, assemble
from ..multipath.monitor import PathMonitor
from ..multipath.policy import Policy
from ..multipath.sessions import SessionPool
from ..multipath.status import render, topology


def policy_source(config_path: str | None, assignments: list[str]) -> Any:
    """(vendor, product) -> Policy, from the built-in sections, the file and the command line."""
    conf = mpconfig.load(config_path) if config_path else mpconfig.parse({})
    overrides = mpconfig.parse_assignments(assignments)

    def policy_for(vendor: str, product: str) -> Policy:
        return conf.resolve(vendor, product, overrides).policy()

    policy_for("", "")  # bad keys or values fail here, before any login
    return policy_for


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


async def multipath_bench(base: SessionConfig, targets: str, iqn: str, scsi_id: str | None, sources: str,
                          config_path: str | None, assignments: list[str], spec: BenchSpec,
                          printer: Any) -> tuple[BenchResult, dict[str, Any]]:
    from .initiator import run_engine

    pool = SessionPool()
    try:
        device, monitor = await open_multipath(base, targets, iqn, scsi_id, sources, config_path, assignments, pool)
        try:
            result = await run_engine(device, device.wwid, spec, printer)
        finally:
            await monitor.stop()
        topo = topology(device, events=200)
        extra = {
            "wwid": device.wwid,
            "per_path": {p.name: {"ios": p.ios, "bytes": p.bytes, "errors": p.errors, "state": p.state.value}
                         for p in device.paths},
            "events": topo["events"],
            "paths_active": topo["paths_active"],
            "mpath_counts": topo["mpath_counts"],
            "topology": render(device),
        }
        return result, extra
    finally:
        await asyncio.shield(pool.close())
