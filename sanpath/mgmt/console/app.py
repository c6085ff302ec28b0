"""The web console's routes: server-rendered pages (Jinja2) whose parts htmx reloads when the daemon's
event stream says something changed, so nothing needs a page reload. It calls the same workflow and
host operations as the API, so every rule the API enforces (maintenance mode, unique IQNs, ...) holds
here too, with the same error names and advice."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ... import __version__
from .. import events
from ..advisor import service as advisor_service
from ..alerts import PRIORITY as ALERT_PRIORITY
from ..daemon import HostDaemon
from ..errors import XenError
from ..maintenance import HostOps, in_maintenance
from ..store.model import Host
from ..workflow import Chap, TargetSpec, Workflow
from . import views
from .jobs import Job, Jobs
from .login import COOKIE, LIFETIME, Sessions, is_open

HERE = os.path.dirname(__file__)
WILDCARD_HELP = (
    "Choose * only for an array that answers discovery with several IQNs (one per portal or controller, as "
    "some arrays do): sanpath then logs in to every IQN on every portal listed under Target Host, so put every "
    "portal address there. For an array whose one IQN carries all its portals (portal mode), choose that IQN: "
    "* is then wrong, however tempting it looks.")


def build_console(daemon: HostDaemon, workflow: Workflow, *, login: bool) -> FastAPI:
    """The console app; ``login``: bound off loopback, so every request but the login needs a session."""
    app = FastAPI(title="sanpath console", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static")
    templates = Jinja2Templates(directory=os.path.join(HERE, "templates"))
    templates.env.filters["clock"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    store = workflow.store
    ops = HostOps(workflow)
    jobs = Jobs()
    sessions = Sessions()
    app.state.jobs = jobs  # the daemon waits for them when it stops

    @app.middleware("http")
    async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method == "POST" and request.headers.get("hx-request") != "true":
            return _refused(403, "the console takes POSTs from its own pages only (the HX-Request header)")
        if login and not is_open(request.url.path) and not sessions.valid(request.cookies.get(COOKIE)):
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                return RedirectResponse("/login", status_code=303)
            return _refused(401, "sign in first: the console is bound off loopback")
        return await call_next(request)

    def _refused(status: int, message: str) -> Response:
        name = "UNAUTHORIZED" if status == 401 else "PERMISSION_DENIED"
        return JSONResponse({"error": name, "message": message}, status_code=status)

    @app.exception_handler(XenError)
    async def _xen_error(request: Request, e: XenError) -> Response:
        return templates.TemplateResponse(request, "error.html", {"error": e.to_json()}, status_code=e.kind.http)

    async def this_host() -> Host:
        return await store.host(daemon.host.uuid)

    async def page(request: Request, name: str, **context: Any) -> Response:
        here = await this_host()
        return templates.TemplateResponse(request, name, {"tree": await views.tree(store), "here": here,
                                                          "login": login, **context})

    def fragment(request: Request, name: str, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, context)

    async def form(request: Request) -> dict[str, str]:
        return {k: str(v) for k, v in (await request.form()).items()}

    def job_view(request: Request, job: Job) -> Response:
        return fragment(request, "job.html", job=job)

    # --- login -----------------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"failed": False})

    @app.post("/login")
    async def sign_in(request: Request) -> Response:
        token = (await form(request)).get("token", "")
        if not token or not await store.token_known(token):
            return templates.TemplateResponse(request, "login.html", {"failed": True}, status_code=401)
        response = Response(status_code=204, headers={"HX-Redirect": "/"})
        response.set_cookie(COOKIE, sessions.open(), max_age=int(LIFETIME), httponly=True, secure=True,
                            samesite="strict")
        return response

    @app.post("/logout")
    async def sign_out(request: Request) -> Response:
        sessions.close(request.cookies.get(COOKIE))
        response = Response(status_code=204, headers={"HX-Redirect": "/login"})
        response.delete_cookie(COOKIE)
        return response

    # --- the pool tree and the event stream -------------------------------------------------------------

    @app.get("/")
    async def home() -> Response:
        return RedirectResponse(f"/hosts/{daemon.host.uuid}", status_code=303)

    @app.get("/tree", response_class=HTMLResponse)
    async def tree(request: Request) -> Response:
        return fragment(request, "tree.html", tree=await views.tree(store))

    @app.get("/events")
    async def event_stream(request: Request) -> StreamingResponse:
        """The daemon's event stream with state events: what the pages listen to."""
        return StreamingResponse(events.stream(store, request.is_disconnected, None, None, True),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # --- host General and Properties -> Multipathing ---------------------------------------------------

    @app.get("/hosts/{ref}", response_class=HTMLResponse)
    async def host_page(request: Request, ref: str) -> Response:
        return await page(request, "host.html", view=await views.host_general(store, ref))

    @app.get("/hosts/{ref}/general", response_class=HTMLResponse)
    async def host_general(request: Request, ref: str) -> Response:
        return fragment(request, "host_general.html", view=await views.host_general(store, ref))

    @app.get("/hosts/{ref}/multipathing", response_class=HTMLResponse)
    async def multipathing_page(request: Request, ref: str) -> Response:
        return await page(request, "host_multipathing.html", host=await store.host(ref))

    @app.get("/hosts/{ref}/multipathing/form", response_class=HTMLResponse)
    async def multipathing_form(request: Request, ref: str) -> Response:
        host = await store.host(ref)
        return fragment(request, "multipathing_form.html", host=host, maintenance=in_maintenance(host))

    @app.post("/hosts/{ref}/maintenance", response_class=HTMLResponse)
    async def maintenance(request: Request, ref: str) -> Response:
        host = await store.host(ref)
        mode = (await form(request)).get("mode", "")
        if mode not in ("enter", "exit"):
            raise XenError("VALUE_INVALID", f"mode {mode!r}: enter or exit", mode)

        async def work(job: Job) -> None:
            if mode == "enter":
                job.step(f"host {host.name_label}: disabled; waiting for the NBD clients of its exports to leave")
                await ops.enter(host)
                job.step(f"host {host.name_label} is in maintenance mode")
            else:
                await ops.exit(host)
                job.step(f"host {host.name_label} is out of maintenance mode and enabled")

        return job_view(request, jobs.start(f"{mode.capitalize()} maintenance mode: {host.name_label}", work))

    @app.post("/hosts/{ref}/multipathing", response_class=HTMLResponse)
    async def set_multipathing(request: Request, ref: str) -> Response:
        host = await store.host(ref)
        body = await form(request)
        on = body.get("multipathing") == "on"
        handler = body.get("handler") or None

        async def work(job: Job) -> None:
            async def progress(step: dict[str, Any]) -> None:
                job.step(_step_text(step))

            result = await ops.set_multipathing(host, on, handler, progress)
            job.step(f"done: multipathing {'on' if result['multipathing'] else 'off'} "
                     f"({result['multipath_handle']}); {len(result['replugged'])} PBD(s) replugged")

        return job_view(request, jobs.start(f"Multipathing on host {host.name_label}", work))

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    async def job(request: Request, job_id: int) -> Response:
        return job_view(request, jobs.get(job_id))

    # --- SR General --------------------------------------------------------------------------------------

    @app.get("/srs/{uuid}", response_class=HTMLResponse)
    async def sr_page(request: Request, uuid: str) -> Response:
        return await page(request, "sr.html", view=await views.sr_general(store, daemon.supervisor, await this_host(),
                                                                          uuid))

    @app.get("/srs/{uuid}/general", response_class=HTMLResponse)
    async def sr_general(request: Request, uuid: str) -> Response:
        view = await views.sr_general(store, daemon.supervisor, await this_host(), uuid)
        return fragment(request, "sr_general.html", view=view)

    @app.get("/srs/{uuid}/throughput")
    async def throughput(uuid: str) -> dict[str, Any]:
        return await views.throughput(store, daemon.supervisor, await this_host(), uuid)

    @app.post("/srs/{uuid}/repair", response_class=HTMLResponse)
    async def repair(request: Request, uuid: str) -> Response:
        """XenCenter's Repair: replug each PBD of the SR that is degraded or not attached."""
        sr = await store.sr(uuid)

        async def work(job: Job) -> None:
            view = await views.sr_general(store, daemon.supervisor, await this_host(), uuid)
            todo = [r for r in view["per_host"] if r["badges"] and r["badges"] != ["unknown"]]
            if not todo:
                job.step("nothing to repair: every PBD has all its paths")
            for r in todo:
                name = r["host"].name_label if r["host"] else r["pbd"].host_uuid
                if r["pbd"].currently_attached:
                    job.step(f"host {name}: unplugging PBD {r['pbd'].uuid} ({r['count'].text})")
                    await workflow.unplug(r["pbd"].uuid)
                job.step(f"host {name}: plugging PBD {r['pbd'].uuid}")
                pbd = await workflow.plug(r["pbd"].uuid)
                job.step(f"host {name}: {views.path_count(pbd).text}")
            job.links.append(("SR General", f"/srs/{uuid}"))

        return job_view(request, jobs.start(f"Repair SR {sr.name_label}", work))

    # --- New SR wizard ----------------------------------------------------------------------------------

    def spec(body: dict[str, str], iqn: str = "", scsi_id: str = "") -> TargetSpec:
        port = body.get("port", "").strip() or "3260"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise XenError("VALUE_INVALID", f"port {port!r}: a TCP port, 1 to 65535", port)
        chap = Chap(body.get("chapuser", ""), body.get("chappassword", ""), body.get("incoming_chapuser", ""),
                    body.get("incoming_chappassword", ""))
        return TargetSpec(body.get("target", "").strip(), int(port), iqn, scsi_id, chap)

    @app.get("/new-sr", response_class=HTMLResponse)
    async def new_sr(request: Request) -> Response:
        return await page(request, "new_sr.html")

    @app.post("/new-sr/iqns", response_class=HTMLResponse)
    async def discover_iqns(request: Request) -> Response:
        answer = await workflow.probe(await this_host(), spec(await form(request)))
        return fragment(request, "wizard_iqns.html", iqns=answer["iqns"], wildcard_help=WILDCARD_HELP)

    @app.post("/new-sr/luns", response_class=HTMLResponse)
    async def discover_luns(request: Request) -> Response:
        body = await form(request)
        if not body.get("targetIQN"):
            raise XenError("ConfigTargetIQNMissing", "choose a target IQN (or *) first")
        answer = await workflow.probe(await this_host(), spec(body, body["targetIQN"]))
        return fragment(request, "wizard_luns.html", luns=answer["luns"])

    @app.post("/new-sr/create", response_class=HTMLResponse)
    async def create(request: Request) -> Response:
        body = await form(request)
        name = body.get("name_label", "").strip()
        if not name:
            raise XenError("VALUE_INVALID", "give the new SR a name")
        if not body.get("SCSIid"):
            raise XenError("ConfigSCSIid", "choose a LUN first (Discover LUNs)")
        target = spec(body, body.get("targetIQN", ""), body["SCSIid"])
        here = await this_host()

        async def work(job: Job) -> None:
            job.step(f"creating SR {name} on LUN {target.scsi_id} behind {target.iqn} at {target.target}; "
                     "plugging a PBD on every host")
            sr, pbds, warnings = await workflow.create(here, name, target, body.get("multihomed", "auto"))
            for w in warnings:
                job.step(f"warning: {w}")
            names = {h.uuid: h.name_label for h in await store.hosts()}
            for p in pbds:
                where = f"host {names.get(p.host_uuid, p.host_uuid)}"
                error = (p.error or {}).get("message")
                job.step(f"{where}: {views.path_count(p).text}" + (f"; {error}" if error else ""))
            job.links.append(("SR General", f"/srs/{sr.uuid}"))

        return job_view(request, jobs.start(f"New SR {name}", work))

    # --- alerts and the advisor ------------------------------------------------------------------------

    async def alert_lists() -> dict[str, Any]:
        messages = [m for m in reversed(await store.messages(priority=ALERT_PRIORITY))]
        return {"current": [m for m in messages if not m.acknowledged],
                "past": [m for m in messages if m.acknowledged][:100]}

    @app.get("/alerts", response_class=HTMLResponse)
    async def alerts_page(request: Request) -> Response:
        return await page(request, "alerts.html", **await alert_lists())

    @app.get("/alerts/list", response_class=HTMLResponse)
    async def alerts_list(request: Request) -> Response:
        return fragment(request, "alerts_list.html", **await alert_lists())

    @app.get("/alerts/banner", response_class=HTMLResponse)
    async def alerts_banner(request: Request) -> Response:
        return fragment(request, "alerts_banner.html", current=(await alert_lists())["current"][:3])

    @app.post("/alerts/{uuid}/acknowledge", response_class=HTMLResponse)
    async def acknowledge(request: Request, uuid: str) -> Response:
        await store.acknowledge_message(uuid)
        return fragment(request, "alerts_list.html", **await alert_lists())

    @app.get("/doctor", response_class=HTMLResponse)
    async def doctor(request: Request) -> Response:
        report = await advisor_service.pool_report(store, workflow.key, await this_host())
        return await page(request, "doctor.html", report=report)

    return app


def _step_text(step: dict[str, Any]) -> str:
    """A multipath change's progress step as a line."""
    host = f"host {step.get('host', '?')}"
    kind = step.get("step")
    if kind == "unplugged":
        return f"{host}: unplugged PBD {step['pbd']}"
    if kind == "set-multipathing":
        return f"{host}: multipathing set {'on' if step['multipathing'] else 'off'} (handler {step['handler']})"
    if kind == "replugged":
        state = f"attached, paths {step['paths']}" if step["attached"] else f"not attached: {step['error']}"
        return f"{host}: replugged PBD {step['pbd']}: {state}"
    return f"{host}: {kind}"
