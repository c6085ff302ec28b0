"""The host daemon's HTTP API (FastAPI): pool, hosts, PIFs, SRs, PBDs, messages; maintenance mode and
multipath settings; /events (server-sent events of new messages) and /metrics (Prometheus). JSON in and
out; errors as ``{"error", "code", "params", "message", "advice"}`` with XenServer's names and codes (the
store's STORE_UNREACHABLE is a 503 while it is away; I/O is not touched by that). Secrets go in (CHAP on
sr probe/create) and never come out: every device-config shown has its secrets masked.

Served on a root-only unix socket with no token, and on TCP only with TLS and a bearer token (the same
app, built with ``tcp``): the store keeps the tokens' SHA-256 digests only, and the tokens are made and
deleted over the unix socket alone."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from .. import __version__
from . import alerts, events, metrics
from .advisor import service as advisor_service
from .daemon import HostDaemon
from .errors import XenError
from .events import message_json
from .maintenance import EVACUATE_TIMEOUT, HostOps, in_maintenance
from .store.model import PBD, PIF, SR, Host
from .store.store import token_digest
from .workflow import Chap, TargetSpec, Workflow, live

TOKEN_CACHE = 30.0  # seconds a token found in the store is taken without asking it again

MASK = "******"


class ChapBody(BaseModel):
    chapuser: str = Field("", max_length=255)
    chappassword: str = Field("", max_length=255)
    incoming_chapuser: str = Field("", max_length=255)
    incoming_chappassword: str = Field("", max_length=255)

    def chap(self) -> Chap:
        return Chap(self.chapuser, self.chappassword, self.incoming_chapuser, self.incoming_chappassword)


class ProbeBody(ChapBody):
    target: str = Field("", max_length=4096, description="comma-separated target addresses")
    port: int = 3260
    targetIQN: str = Field("", max_length=223)
    SCSIid: str = Field("", max_length=255)

    def spec(self) -> TargetSpec:
        return TargetSpec(self.target, self.port, self.targetIQN, self.SCSIid, self.chap())


class CreateBody(ProbeBody):
    name_label: str = Field(..., min_length=1, max_length=255)
    multihomed: str = Field("auto", pattern="^(auto|true|false)$")
    strict: bool = Field(False, description="refuse, rather than warn, when the hosts' multipathing differs")


class MaintenanceBody(BaseModel):
    mode: str = Field(..., pattern="^(enter|exit)$")
    force: bool = False
    timeout: float = Field(EVACUATE_TIMEOUT, ge=0, le=86400)


class MultipathingBody(BaseModel):
    enabled: bool
    handler: str | None = Field(None, pattern="^(dmp|rdac)$")


class RollingBody(MultipathingBody):
    force: bool = False
    timeout: float = Field(EVACUATE_TIMEOUT, ge=0, le=86400)


class EnabledBody(BaseModel):
    enabled: bool


class PoolConfigBody(BaseModel):
    multipath_alert_period: float = Field(..., ge=1, le=86400)


class TokenBody(BaseModel):
    name_label: str = Field(..., min_length=1, max_length=255)


class IqnBody(BaseModel):
    iqn: str = Field(..., max_length=223)


class PurposeBody(BaseModel):
    purpose: str = Field(..., pattern="^(storage|management|none)$")


def host_json(h: Host, now: float) -> dict[str, Any]:
    return {"uuid": h.uuid, "name_label": h.name_label, "iqn": h.iqn, "enabled": h.enabled,
            "maintenance_mode": in_maintenance(h), "multipathing": h.multipathing,
            "multipath_handle": h.multipath_handle, "live": live(h, now), "heartbeat": h.heartbeat,
            "other_config": h.other_config}


def masked(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (MASK if "password" in k and not k.endswith("_secret") else v) for k, v in config.items()}


def pif_json(p: PIF) -> dict[str, Any]:
    return {"uuid": p.uuid, "host": p.host_uuid, "device": p.device, "mac": p.mac, "mtu": p.mtu,
            "carrier": p.carrier, "kind": p.kind, "master": p.master, "addresses": p.addresses,
            "purpose": p.purpose, "present": p.present, "other_config": p.other_config}


def sr_json(s: SR) -> dict[str, Any]:
    return {"uuid": s.uuid, "name_label": s.name_label, "type": s.type, "shared": s.shared, "SCSIid": s.scsi_id,
            "device_config": masked(s.device_config), "sm_config": s.sm_config, "other_config": s.other_config}


def pbd_json(p: PBD, live_hosts: set[str]) -> dict[str, Any]:
    """``state`` is what the PBD's host last reported (attached, detached), or unknown when that host
    has stopped reporting: its rows are then not known to be true, and are never guessed."""
    state = "unknown" if p.host_uuid not in live_hosts else "attached" if p.currently_attached else "detached"
    return {"uuid": p.uuid, "sr": p.sr_uuid, "host": p.host_uuid, "state": state, "plugged": p.plugged,
            "currently_attached": p.currently_attached, "device_config": masked(p.device_config),
            "other_config": p.other_config, "nbd": p.other_config.get("nbd") if state == "attached" else None,
            "error": p.error or None}


def build_app(daemon: HostDaemon, workflow: Workflow, *, tcp: bool = False) -> FastAPI:
    app = FastAPI(title="sanpath host daemon", version=__version__,
                  description="The management plane of one sanpath host: pool, hosts, PIFs, SRs, PBDs.")
    store = workflow.store
    ops = HostOps(workflow)

    @app.exception_handler(XenError)
    async def _xen_error(_: Request, e: XenError) -> JSONResponse:
        return JSONResponse(e.to_json(), status_code=e.kind.http)


    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors())
        return JSONResponse(XenError("VALUE_INVALID", detail or "bad request").to_json(), status_code=400)

    if tcp:
        known: dict[str, float] = {}  # token digest -> until when it is taken as known

        @app.middleware("http")
        async def _auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            given = request.headers.get("authorization", "")
            token = given[7:] if given.startswith("Bearer ") else ""
            digest = token_digest(token)
            now = time.monotonic()
            if token and known.get(digest, 0.0) < now:
                try:
                    if await store.token_known(token):
                        known[digest] = now + TOKEN_CACHE
                except XenError as e:  # STORE_UNREACHABLE
                    return JSONResponse(e.to_json(), status_code=e.kind.http)
            if not token or known.get(digest, 0.0) < now:
                return JSONResponse(XenError("UNAUTHORIZED", "a bearer token is needed over TCP").to_json(),
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)
    else:
        @app.post("/tokens")
        async def create_token(body: TokenBody) -> dict[str, Any]:
            """A bearer token for the API over TCP, shown this once (the store keeps its digest)."""
            row, token = await store.create_token(body.name_label)
            return {"uuid": row.uuid, "name_label": row.name_label, "created": row.created, "token": token}

        @app.get("/tokens")
        async def list_tokens() -> list[dict[str, Any]]:
            return [{"uuid": t.uuid, "name_label": t.name_label, "created": t.created} for t in await store.tokens()]

        @app.delete("/tokens/{ref}")
        async def delete_token(ref: str) -> dict[str, Any]:
            await store.delete_token(ref)
            return {"deleted": ref}

    async def this_host() -> Host:
        return await store.host(daemon.host.uuid)

    async def live_hosts() -> set[str]:
        """The hosts that are live now (by the store's clock)."""
        now = await store.now()
        return {h.uuid for h in await store.hosts() if live(h, now)}

    async def host_ref(name: str | None) -> Host:
        return await store.host(name) if name else await this_host()

    @app.get("/pool")
    async def get_pool() -> dict[str, Any]:
        pool = await store.pool()
        if pool is None:
            raise XenError("POOL_NOT_INITIALISED", "this store holds no pool")
        return {"uuid": pool.uuid, "name_label": pool.name_label, "created": pool.created,
                "other_config": pool.other_config, "hosts": [h.uuid for h in await store.hosts()]}

    @app.get("/self")
    async def get_self() -> dict[str, Any]:
        """The host whose daemon answers."""
        return host_json(await this_host(), await store.now())

    @app.get("/hosts")
    async def list_hosts() -> list[dict[str, Any]]:
        now = await store.now()
        return [host_json(h, now) for h in await store.hosts()]

    @app.get("/hosts/{ref}")
    async def get_host(ref: str) -> dict[str, Any]:
        return host_json(await store.host(ref), await store.now())

    @app.post("/hosts/{ref}/maintenance")
    async def maintenance(ref: str, body: MaintenanceBody) -> dict[str, Any]:
        """Enter (disable, then wait for the exports' NBD clients to leave; with force drain and close
        them) or exit maintenance mode."""
        host = await store.host(ref)
        host = (await ops.enter(host, force=body.force, timeout=body.timeout) if body.mode == "enter"
                else await ops.exit(host))
        return host_json(host, await store.now())

    @app.post("/hosts/{ref}/enabled")
    async def set_enabled(ref: str, body: EnabledBody) -> dict[str, Any]:
        """xe host-disable / host-enable: disable only (no new plugs); enable ends maintenance mode too."""
        host = await store.host(ref)
        host = await ops.exit(host) if body.enabled else await store.update_host(host.uuid, enabled=False)
        return host_json(host, await store.now())

    @app.post("/hosts/{ref}/multipathing")
    async def set_multipathing(ref: str, body: MultipathingBody) -> dict[str, Any]:
        """Only in maintenance mode: unplug the host's plugged PBDs, change the setting, replug them."""
        return await ops.set_multipathing(await store.host(ref), body.enabled, body.handler)

    @app.post("/pool/multipathing")
    async def pool_multipathing(body: RollingBody) -> StreamingResponse:
        """The rolling change, host by host; the answer is JSON lines, one per step as it happens, the last
        ``{"result": [...]}`` or ``{"error": ...}``."""

        async def steps() -> AsyncIterator[bytes]:
            queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

            async def progress(step: dict[str, Any]) -> None:
                await queue.put(step)

            async def work() -> None:
                try:
                    done = await ops.rolling(body.enabled, body.handler, progress, force=body.force,
                                             timeout=body.timeout)
                    await queue.put({"result": done})
                except XenError as e:
                    await queue.put(e.to_json())
                finally:
                    await queue.put(None)

            task = asyncio.get_running_loop().create_task(work())
            try:
                while (item := await queue.get()) is not None:
                    yield json.dumps(item).encode() + b"\n"
            finally:
                await task  # a client that leaves does not cut a host's change short

        return StreamingResponse(steps(), media_type="application/x-ndjson")

    @app.post("/pool/other_config")
    async def pool_config(body: PoolConfigBody) -> dict[str, Any]:
        pool = await store.pool()
        if pool is None:
            raise XenError("POOL_NOT_INITIALISED", "this store holds no pool")
        pool = await store.update_pool(other_config={**pool.other_config,
                                                     alerts.PERIOD_KEY: str(body.multipath_alert_period)})
        daemon.alerts.period = body.multipath_alert_period  # this host now; the others with their heartbeat
        return {"uuid": pool.uuid, "other_config": pool.other_config}

    @app.post("/hosts/{ref}/iqn")
    async def set_iqn(ref: str, body: IqnBody) -> dict[str, Any]:
        return host_json(await workflow.set_iqn(await store.host(ref), body.iqn), await store.now())

    @app.get("/pifs")
    async def list_pifs(host: Annotated[str | None, Query(max_length=255)] = None) -> list[dict[str, Any]]:
        h = await host_ref(host)
        return [pif_json(p) for p in await store.pifs(h.uuid)]

    @app.post("/pifs/{device}/purpose")
    async def set_purpose(device: str, body: PurposeBody,
                          host: Annotated[str | None, Query(max_length=255)] = None) -> dict[str, Any]:
        h = await host_ref(host)
        pif = await store.set_pif_purpose(h.uuid, device, body.purpose)
        daemon.wake.set()
        return pif_json(pif)

    @app.post("/sr/probe")
    async def probe(body: ProbeBody) -> dict[str, Any]:
        return await workflow.probe(await this_host(), body.spec())

    @app.get("/srs")
    async def list_srs() -> list[dict[str, Any]]:
        return [sr_json(s) for s in await store.srs()]

    @app.post("/srs")
    async def create_sr(body: CreateBody) -> dict[str, Any]:
        sr, pbds, warnings = await workflow.create(await this_host(), body.name_label, body.spec(), body.multihomed,
                                                   strict=body.strict)
        known = await live_hosts()
        return {**sr_json(await store.sr(sr.uuid)), "pbds": [pbd_json(p, known) for p in pbds], "warnings": warnings}

    @app.get("/srs/{uuid}")
    async def get_sr(uuid: str) -> dict[str, Any]:
        known = await live_hosts()
        return {**sr_json(await store.sr(uuid)), "pbds": [pbd_json(p, known) for p in await store.pbds(sr_uuid=uuid)]}

    @app.post("/srs/{uuid}/forget")
    async def forget_sr(uuid: str) -> dict[str, Any]:
        await workflow.forget(uuid)
        return {"uuid": uuid, "forgotten": True}

    @app.delete("/srs/{uuid}")
    async def destroy_sr(uuid: str) -> dict[str, Any]:
        await workflow.forget(uuid)  # sanpath writes nothing on the LUN: destroying the SR is forgetting it
        return {"uuid": uuid, "destroyed": True}

    @app.get("/pbds")
    async def list_pbds(sr: Annotated[str | None, Query(max_length=64)] = None,
                        host: Annotated[str | None, Query(max_length=255)] = None) -> list[dict[str, Any]]:
        host_uuid = (await store.host(host)).uuid if host else None
        known = await live_hosts()
        return [pbd_json(p, known) for p in await store.pbds(sr_uuid=sr, host_uuid=host_uuid)]

    @app.get("/pbds/{uuid}")
    async def get_pbd(uuid: str) -> dict[str, Any]:
        return pbd_json(await store.pbd(uuid), await live_hosts())

    @app.post("/pbds/{uuid}/plug")
    async def plug(uuid: str) -> dict[str, Any]:
        return pbd_json(await workflow.plug(uuid), await live_hosts())

    @app.post("/pbds/{uuid}/unplug")
    async def unplug(uuid: str, force: Annotated[bool, Body(embed=True)] = False) -> dict[str, Any]:
        status = await daemon.supervisor.status(uuid) if uuid in daemon.supervisor.running else None
        clients = int(status["nbd_clients"]) if status is not None else None
        return pbd_json(await workflow.unplug(uuid, force=force, clients_now=clients), await live_hosts())

    @app.get("/messages")
    async def list_messages(since: Annotated[float, Query(ge=0)] = 0.0,
                            priority: Annotated[int | None, Query(ge=1, le=5)] = None,
                            name: Annotated[str | None, Query(max_length=64)] = None) -> list[dict[str, Any]]:
        return [message_json(m) for m in await store.messages(since=since, priority=priority, name=name)]

    @app.post("/messages/{uuid}/acknowledge")
    async def acknowledge(uuid: str) -> dict[str, Any]:
        """Mark an alert seen (XenCenter's dismiss, but kept as a past alert)."""
        return message_json(await store.acknowledge_message(uuid))

    @app.get("/events")
    async def get_events(request: Request, since: Annotated[float | None, Query(ge=0)] = None,
                         priority: Annotated[int | None, Query(ge=1, le=5)] = None,
                         state: bool = False) -> StreamingResponse:
        """Server-sent events: each new message (from ``since`` on; default: from now) as ``event:
        message`` with the message's JSON, as it is written by any host of the pool; with ``state``, also
        ``event: state`` naming the hosts and PBDs whose rows changed (sanpath/mgmt/events.py)."""
        return StreamingResponse(events.stream(store, request.is_disconnected, since, priority, state),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/doctor")
    async def doctor(host: str | None = None) -> dict[str, Any]:
        """The advisor's findings for the pool (``host``: that host's and the pool-wide ones)."""
        return await advisor_service.pool_report(store, workflow.key, await this_host(), host)

    @app.get("/metrics")
    async def get_metrics() -> Response:
        """Prometheus: this host's PBDs and paths, from its data-path processes now."""
        sup = daemon.supervisor
        uuids = list(sup.running)
        answers = await asyncio.gather(*(sup.status(uuid) for uuid in uuids))
        statuses = {uuid: st for uuid, st in zip(uuids, answers, strict=True) if st is not None}
        return Response(metrics.exposition(daemon.host.name_label, statuses), media_type=metrics.CONTENT_TYPE)

    return app
