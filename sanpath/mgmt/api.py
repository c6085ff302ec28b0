"""The host daemon's HTTP API (FastAPI): pool, hosts, PIFs, SRs, PBDs, messages. JSON in and out; errors
as ``{"error", "code", "params", "message", "advice"}`` with XenServer's names and codes. Secrets go in
(CHAP on sr probe/create) and never come out: every device-config shown has its secrets masked.

Served on a root-only unix socket with no token, and on TCP only with TLS and a bearer token (the same
app, built with ``token`` set)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from .. import __version__
from .daemon import HostDaemon
from .errors import XenError
from .store.model import PBD, PIF, SR, Host, Message
from .workflow import Chap, TargetSpec, Workflow, live

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


class IqnBody(BaseModel):
    iqn: str = Field(..., max_length=223)


class PurposeBody(BaseModel):
    purpose: str = Field(..., pattern="^(storage|management|none)$")


def host_json(h: Host, now: float) -> dict[str, Any]:
    return {"uuid": h.uuid, "name_label": h.name_label, "iqn": h.iqn, "enabled": h.enabled,
            "multipathing": h.multipathing, "multipath_handle": h.multipath_handle,
            "live": live(h, now), "heartbeat": h.heartbeat,
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


def message_json(m: Message) -> dict[str, Any]:
    return {"uuid": m.uuid, "name": m.name, "priority": m.priority, "class": m.obj_class, "obj_uuid": m.obj_uuid,
            "timestamp": m.timestamp, "body": m.body, "text": m.text, "acknowledged": m.acknowledged}


def build_app(daemon: HostDaemon, workflow: Workflow, *, token: str | None = None) -> FastAPI:
    app = FastAPI(title="sanpath host daemon", version=__version__,
                  description="The management plane of one sanpath host: pool, hosts, PIFs, SRs, PBDs.")
    store = workflow.store

    @app.exception_handler(XenError)
    async def _xen_error(_: Request, e: XenError) -> JSONResponse:
        return JSONResponse(e.to_json(), status_code=e.kind.http)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors())
        return JSONResponse(XenError("VALUE_INVALID", detail or "bad request").to_json(), status_code=400)

    if token is not None:
        @app.middleware("http")
        async def _auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse(XenError("UNAUTHORIZED", "a bearer token is needed over TCP").to_json(),
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)

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
        sr, pbds = await workflow.create(await this_host(), body.name_label, body.spec(), body.multihomed)
        known = await live_hosts()
        return {**sr_json(await store.sr(sr.uuid)), "pbds": [pbd_json(p, known) for p in pbds]}

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
    async def list_messages(since: Annotated[float, Query(ge=0)] = 0.0) -> list[dict[str, Any]]:
        return [message_json(m) for m in await store.messages(since=since)]

    return app
