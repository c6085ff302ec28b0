"""The management plane in one test process: a store (SQLite file or a PostgreSQL database), a pool and
its key, one host row, the supervisor and reconciler running, and the API app reachable through httpx
without a socket. Data-path processes are real subprocesses; they are all stopped on exit."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from ..mgmt.api import build_app
from ..mgmt.daemon import HostDaemon
from ..mgmt.poolkey import PoolKey
from ..mgmt.store import Store
from ..mgmt.store.model import Host
from ..mgmt.supervisor import Supervisor
from ..mgmt.workflow import Workflow
from ..target.server import TargetServer


@dataclass
class Plane:
    store: Store
    key: PoolKey
    host: Host
    supervisor: Supervisor
    daemon: HostDaemon
    workflow: Workflow
    api: httpx.AsyncClient
    run_dir: str

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   params: dict[str, Any] | None = None) -> httpx.Response:
        return await self.api.request(method, path, json=body, params=params)


def short_dir(prefix: str) -> str:
    """A directory with a short path: unix socket paths are limited to 107 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


@asynccontextmanager
async def running_plane(url: str, *, name: str = "host1", iqn: str = "iqn.2026-12.com.example:host1",
                        key: PoolKey | None = None) -> AsyncIterator[Plane]:
    """One host; with ``key``, a host joining the pool that store holds already (it gets its PBDs)."""
    base = short_dir("sp-mgmt-")
    store = await Store.open(url)
    joining = key is not None
    if key is None:
        key = PoolKey.create(os.path.join(base, "pool.key"))
        await store.create_pool("test pool", key)
    host = await store.add_host(name, iqn)
    supervisor = Supervisor(os.path.join(base, "run"))
    daemon = HostDaemon(store, key, host, supervisor)
    workflow = Workflow(store, key, daemon.wake.set)
    if joining:
        await workflow.join(host)
    await daemon.start()
    app = build_app(daemon, workflow)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sanpath", timeout=120)
    try:
        yield Plane(store, key, host, supervisor, daemon, workflow, client, os.path.join(base, "run"))
    finally:
        await client.aclose()
        await daemon.stop()
        for pbd in list(supervisor.running):
            with contextlib.suppress(Exception):
                await supervisor.stop(pbd, timeout=10)
        await store.close()
        shutil.rmtree(base, ignore_errors=True)


@asynccontextmanager
async def running_pool(url: str, names: Sequence[str] = ("host1", "host2", "host3")) -> AsyncIterator[list[Plane]]:
    """Several hosts in one pool, each with its own store connection, daemon and runtime directory, as
    separate machines would have (the first makes the pool, the others join it)."""
    async with AsyncExitStack() as stack:
        planes: list[Plane] = []
        for name in names:
            planes.append(await stack.enter_async_context(running_plane(
                url, name=name, iqn=f"iqn.2026-12.com.example:{name}", key=planes[0].key if planes else None)))
        yield planes


def portals_of(server: TargetServer) -> str:
    """An in-process array's portals as a ``target`` value: ADDR:PORT,ADDR:PORT."""
    return ",".join(f"{h}:{p}" for h, p in server.portals)


async def sr_on_only_lun(plane: Plane, server: TargetServer, iqn: str, name: str) -> tuple[dict[str, Any], str]:
    """Probe the array's one LUN behind ``iqn`` and create an SR on it; (the SR as the API answered, SCSIid)."""
    target = portals_of(server)
    r = await plane.call("POST", "/sr/probe", {"target": target, "targetIQN": iqn})
    [lun] = r.json()["luns"]
    made = await plane.call("POST", "/srs", {"name_label": name, "target": target, "targetIQN": iqn,
                                             "SCSIid": lun["SCSIid"]})
    assert made.status_code == 200, made.text
    return dict(made.json()), str(lun["SCSIid"])
