"""``python -m benchmarks.pool_scale``: a simulated pool in PostgreSQL, to show what the management plane
costs as the pool grows. A simulator writes the rows (hosts x SRs, one PBD per pair, each with the
device-config and reported other-config a real PBD carries); no daemon backs the other hosts. For each
pool size it measures, on host0:

- the API (in process, no socket): p50 and p99 of list and show requests;
- one reconcile pass in the steady state (every PBD of host0 plugged, attached and quiet): the daemon
  reads its host row and its own PBDs, and asks no data-path process anything. Goal: O(the host's own
  PBDs), so the pass costs the same in a pool of 8 hosts and of 64.

No peer runs beside it (there is no XenServer pool here); the figures are absolute and drift with the
machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from sanpath.mgmt.api import build_app
from sanpath.mgmt.daemon import HostDaemon
from sanpath.mgmt.poolkey import PoolKey
from sanpath.mgmt.store import Store
from sanpath.mgmt.store.model import PBD, PIF, SR, Host, new_uuid
from sanpath.mgmt.supervisor import DataPath, Supervisor
from sanpath.mgmt.workflow import Workflow
from sanpath.testing.postgres import postgres_cluster

from . import report

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Management: a simulated pool in PostgreSQL"
SIM_IQN = "iqn.2026-12.org.sanpath.sim"
PORTALS = [["198.18.1.1", 3260, f"{SIM_IQN}:a1"], ["198.18.1.2", 3260, f"{SIM_IQN}:b1"],
           ["198.18.2.1", 3260, f"{SIM_IQN}:a2"], ["198.18.2.2", 3260, f"{SIM_IQN}:b2"]]


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _device_config(scsi_id: str) -> dict[str, Any]:
    return {"target": "198.18.1.1,198.18.1.2,198.18.2.1,198.18.2.2", "port": "3260", "targetIQN": "*",
            "SCSIid": scsi_id, "multihomed": "auto", "multihomelist": ",".join(f"{a}:{p}" for a, p, _ in PORTALS),
            "multiSession": "".join(f"{a},{p},{i}|" for a, p, i in PORTALS)}


async def populate(store: Store, hosts: int, srs: int, now: float) -> tuple[str, list[str]]:
    """The simulator's rows; returns host0's uuid and its PBDs."""
    host_rows = [{"uuid": new_uuid(), "name_label": f"host{n}", "iqn": f"iqn.2026-12.org.sanpath.sim:host{n}",
                  "enabled": True, "multipathing": True, "multipath_handle": "dmp", "heartbeat": now,
                  "other_config": {}} for n in range(hosts)]
    pif_rows = [{"uuid": new_uuid(), "host_uuid": h["uuid"], "device": dev, "mac": "02:00:00:00:00:01", "mtu": 9000,
                 "carrier": True, "kind": "", "master": "", "addresses": [f"198.18.{k}.{10 + n}/24"],
                 "purpose": "management" if k == 0 else "storage", "present": True, "other_config": {}}
                for n, h in enumerate(host_rows) for k, dev in enumerate(("mgmt", "s1", "s2"))]
    sr_rows = []
    for i in range(srs):
        scsi_id = f"36001405{i:024x}"
        sr_rows.append({"uuid": new_uuid(), "name_label": f"sr{i}", "type": "lvmoiscsi", "shared": True,
                        "scsi_id": scsi_id, "device_config": _device_config(scsi_id),
                        "sm_config": {"multipathable": "true", "portals": PORTALS, "size": str(64 << 30)},
                        "other_config": {}})
    pbd_rows = []
    for h in host_rows:
        for sr in sr_rows:
            paths = [{"name": f"198.18.{k}.10->{a}:{p}/{i}", "routed": False, "logged_in": True}
                     for k, (a, p, i) in enumerate(PORTALS, start=1)]
            pbd_rows.append({"uuid": new_uuid(), "sr_uuid": sr["uuid"], "host_uuid": h["uuid"],
                             "device_config": sr["device_config"], "plugged": True, "currently_attached": True,
                             "generation": 1, "observed_generation": 1, "error": {},
                             "other_config": {"multipathed": "true", "iscsi_sessions": "4",
                                              f"mpath-{sr['scsi_id']}": "[4, 4]", "nbd_clients": "1",
                                              "nbd_accepting": "true", "paths": paths,
                                              "nbd": f"nbd+unix:///{sr['scsi_id']}?socket=/run/sanpath/nbd/x.sock"}})
    async with store.engine.begin() as conn:
        for table, rows in ((Host, host_rows), (PIF, pif_rows), (SR, sr_rows), (PBD, pbd_rows)):
            for start in range(0, len(rows), 2000):
                await conn.execute(insert(table), rows[start:start + 2000])
    mine = [p["uuid"] for p in pbd_rows if p["host_uuid"] == host_rows[0]["uuid"]]
    return str(host_rows[0]["uuid"]), mine


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, hosts: int, srs: int, requests: int, passes: int, tmp: str) -> dict[str, Any]:
    store = await Store.open(url)
    try:
        key = PoolKey.create(os.path.join(tmp, f"pool-{hosts}-{srs}.key"))
        await store.create_pool("simulated", key)
        began = time.monotonic()
        host0, mine = await populate(store, hosts, srs, await store.now())
        _say(f"{hosts} hosts x {srs} SRs: {hosts * srs} PBDs written in {time.monotonic() - began:.1f} s")
        supervisor = Supervisor(os.path.join(tmp, f"run-{hosts}-{srs}"))
        daemon = HostDaemon(store, key, await store.host(host0), supervisor)
        idle = asyncio.get_running_loop().create_future()  # stands for each PBD's watcher, which waits
        for uuid in mine:  # steady state: a quiet data-path process per plugged PBD
            supervisor.running[uuid] = DataPath(uuid, 1, supervisor.control_path(uuid), "")
            daemon._watchers[uuid] = idle  # type: ignore[assignment]
            daemon._looked[uuid] = float("inf")
        times = []
        for _ in range(passes):
            t0 = time.perf_counter()
            await daemon.reconcile()
            times.append((time.perf_counter() - t0) * 1000)
        result: dict[str, Any] = {"hosts": hosts, "srs": srs, "pbds": hosts * srs, "own": len(mine),
                                  "reconcile": (statistics.median(times), _p(times, 0.99))}
        app = build_app(daemon, Workflow(store, key))
        some_sr = (await store.srs())[srs // 2].uuid
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sanpath") as c:
            cases = {"GET /hosts": "/hosts", "GET /srs": "/srs", "GET /pbds?host=host0": "/pbds?host=host0",
                     "GET /srs/{uuid}": f"/srs/{some_sr}", "GET /pbds/{uuid}": f"/pbds/{mine[0]}",
                     "GET /pbds (every PBD)": "/pbds"}
            for label, path in cases.items():
                n = max(5, requests // 10) if label == "GET /pbds (every PBD)" else requests
                took = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = await c.get(path)
                    took.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text[:300]
                result[label] = (statistics.median(took), _p(took, 0.99))
        supervisor.running.clear()
        daemon._watchers.clear()
        idle.cancel()
        return result
    finally:
        await store.close()


def run(sizes: list[tuple[int, int]], requests: int, passes: int) -> list[dict[str, Any]]:
    out = []
    with postgres_cluster() as cluster, tempfile.TemporaryDirectory(prefix="sp-scale-", dir="/tmp") as tmp:
        for i, (hosts, srs) in enumerate(sizes):
            url = cluster.create_database(f"scale{i}")
            out.append(asyncio.run(measure(url, hosts, srs, requests, passes, tmp)))
            _say(f"{hosts} hosts x {srs} SRs: reconcile {out[-1]['reconcile'][0]:.1f} ms p50")
    return out


def render(results: list[dict[str, Any]], rerun: str, started: str, load0: float, requests: int, passes: int) -> str:
    api = [k for k in results[0] if k.startswith("GET ")]
    head = "| hosts x SRs | PBDs (host0's) | reconcile pass p50 / p99 ms | " + " | ".join(api) + " |"
    lines = [
        SECTION, "",
        "A pool written into PostgreSQL (Debian's, in a temporary directory, fsync off) by a simulator: no daemon "
        "stands behind the hosts. host0's daemon object runs one reconcile pass at a time in the steady state "
        "(every PBD of host0 plugged, attached, its data-path process quiet), and its API app answers in process "
        f"(httpx's ASGI transport, no socket). {passes} passes and {requests} requests per cell "
        f"({max(5, requests // 10)} for the list of every PBD); times in ms, p50 / p99. No peer: these are absolute "
        "figures.", "",
        head, "|---|---:|---:|" + "---:|" * len(api),
    ]
    for r in results:
        cells = " | ".join(f"{r[k][0]:,.1f} / {r[k][1]:,.1f}" for k in api)
        lines.append(f"| {r['hosts']} x {r['srs']} | {r['pbds']:,} ({r['own']}) | "
                     f"{r['reconcile'][0]:,.1f} / {r['reconcile'][1]:,.1f} | {cells} |")
    same_own = [r for r in results if r["srs"] == results[-1]["srs"]]
    if len(same_own) >= 2:
        small, big = same_own[0], same_own[-1]
        ratio = big["reconcile"][0] / small["reconcile"][0]
        grown = big["pbds"] // small["pbds"]
        lines += ["", f"Growth: with host0's own PBDs fixed at {small['own']}, a pool {grown}x "
                      f"larger ({small['pbds']:,} -> {big['pbds']:,} PBDs) makes the reconcile pass {ratio:.2f}x as "
                      f"costly (goal: ≈ 1, the pass is O(the host's own PBDs): "
                      f"{'met' if ratio < 1.5 else '**missed**'}). Lists of the whole pool grow with it, as they must."]
    lines += ["", "Rerun:", "", "```", rerun, "```", "",
              f"Date: {started}. Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}. "
              f"Load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pool_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="8x256,16x256,32x256,64x64,64x256",
                   help="hosts x SRs, comma-separated (default 8x256,16x256,32x256,64x64,64x256)")
    p.add_argument("--requests", type=int, default=100, help="requests per API cell (default 100)")
    p.add_argument("--passes", type=int, default=50, help="reconcile passes per size (default 50)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = p.parse_args(argv)
    sizes = [(int(h), int(s)) for h, s in (x.split("x") for x in args.sizes.split(","))]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    results = run(sizes, args.requests, args.passes)
    rerun = (f".venv/bin/python -m benchmarks.pool_scale --sizes {args.sizes} --requests {args.requests} "
             f"--passes {args.passes}")
    section = render(results, rerun, started, load0, args.requests, args.passes)
    report.write(args.output, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
