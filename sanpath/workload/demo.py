"""``sanpath demo``: the whole system in one command, with no root and no array to bring.

It starts the embedded sanpath array with two portals on two loopback addresses (127.0.0.1 and
127.0.0.2: two paths), a host daemon on a SQLite store in a temporary directory, and the web console on
loopback. Then, as a client of the daemon's API, it goes through the design guide's steps and narrates
each, with the CLI command that does the same:

1. multipathing is set in maintenance mode (enter, set, exit);
2. Discover IQNs; the IQN is chosen (portal mode: one IQN carries both portals, so not ``*``);
3. Discover LUNs;
4. the SR is created: its PBD plugs with "2 of 2 paths active";
5. verified random I/O runs through the SR's NBD export;
6. a portal is black-holed (no RST: only liveness can tell); the path-count alert is awaited;
7. the portal is restored; the recovery alert and the full count are awaited.

``sanpath demo --lab`` (workload/demo_lab.py) runs the same steps against the namespace lab's array
(``ArrayUnderTest``), with a real cable pull as the fault.

It ends with the data path's topology and a summary, and exits 0 only if no I/O failed, no verify check
found wrong data, and the failover and the failback were both seen. With ``serve`` it keeps everything
running afterwards for a person to click through the console, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ..errors import SanpathError
from ..export.nbd.client import NbdClient
from ..mgmt.errors import XenError
from ..mgmt.serve import ServeOptions, Started, serve
from ..mgmt.supervisor import Supervisor, ask
from ..multipath.status import render_topology
from ..target.config import quick_config
from ..target.server import TargetServer
from .bench import Bench, BenchResult, BenchSpec

IQN = "iqn.2026-11.org.sanpath:demo"
SR_NAME = "demo SR"
ALERT = "MULTIPATH_PERIODIC_ALERT"
WAIT = 30.0  # seconds at most for the daemon to answer a step (a plug, an alert)

Out = Callable[[str], None]


@dataclass
class DemoResult:
    """What the demo's load saw, and whether the failover and the failback were seen."""

    bench: BenchResult
    failed_over: bool
    failed_back: bool

    @property
    def ok(self) -> bool:
        return (self.bench.errors == 0 and self.bench.verify_failures == 0 and self.failed_over
                and self.failed_back)


class DemoError(SanpathError):
    """A step of the demo did not happen as the guide says it should."""


class Fault(Protocol):
    """What the demo does to one path (or a cable's paths) under load, and how it undoes it."""

    name: str  # what is failed, for the narration: "portal 127.0.0.2:3260", "cable host-s1"

    def describe(self) -> str: ...

    async def inject(self) -> None: ...

    async def restore(self) -> None: ...


@dataclass
class ArrayUnderTest:
    """An array the demo does not start itself (``sanpath demo --lab``'s): the Target Host list to
    discover at, and the fault to inject."""

    targets: list[str]
    fault: Fault


class Blackhole:
    """The embedded array drops everything to and from one portal: no RST, no FIN, as a pulled cable."""

    def __init__(self, server: TargetServer, portal: str) -> None:
        self.server, self.portal, self.name = server, portal, f"portal {portal}"
        self.fault_id: str | None = None

    def describe(self) -> str:
        return f"Black-hole portal {self.portal} (a pulled cable: no RST, no FIN)"

    async def inject(self) -> None:
        self.fault_id = self.server.faults.inject("blackhole", portal=self.portal).id

    async def restore(self) -> None:
        if self.fault_id is not None:
            await self.server.faults.restore(self.fault_id)


class Api:
    """The daemon's API over its unix socket; an error answer raises it as XenError."""

    def __init__(self, api: str) -> None:
        self.client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=api.removeprefix("unix:")),
                                        base_url="http://sanpath", timeout=120)

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = await self.client.request(method, path, json=body)
        if r.status_code >= 400:
            raise XenError.from_json(r.json())
        return r.json()

    async def close(self) -> None:
        await self.client.aclose()


def _paths(pbd: dict[str, Any], scsi_id: str) -> str:
    sessions = pbd["other_config"].get("iscsi_sessions", "?")
    active, maximum = pbd["other_config"].get(f"mpath-{scsi_id}", "[0, 0]").strip("[]").split(",")
    return f"{active.strip()} of {maximum.strip()} paths active ({sessions} iSCSI sessions)"


async def run_system_demo(*, seconds: float = 12.0, size: str = "256MiB", serve_after: bool = False,
                          array: ArrayUnderTest | None = None, out: Out = print) -> DemoResult:
    """The demo against the embedded array, or against ``array`` when one is given. SIGTERM cancels it
    (so that the daemon, its data paths and the temporary directory are still cleaned up), and so does
    SIGINT (asyncio.run's KeyboardInterrupt); while it serves (``serve_after``), either ends the serving."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    base = tempfile.mkdtemp(prefix="sp-demo-", dir="/tmp")  # short: unix socket paths have 107 bytes
    saved = {k: os.environ.get(k) for k in ("SANPATH_STATE_DIR", "SANPATH_RUN_DIR")}
    os.environ["SANPATH_STATE_DIR"] = os.path.join(base, "state")
    os.environ["SANPATH_RUN_DIR"] = run_dir = os.path.join(base, "run")
    server = None if array else TargetServer(quick_config(IQN, ["127.0.0.1:0", "127.0.0.2:0"], [f"mem:{size}"]))
    stop = asyncio.Event()
    daemon: asyncio.Task[None] | None = None
    api: Api | None = None
    try:
        if server is not None:
            portals = [f"{h}:{p}" for h, p in await server.start()]
            out(f"array: the embedded sanpath array, {IQN}, one {size} LUN, portals {', '.join(portals)}")
            array = ArrayUnderTest(portals, Blackhole(server, portals[1]))
        assert array is not None
        ready: asyncio.Future[Started] = loop.create_future()
        daemon = loop.create_task(
            serve(ServeOptions(name="demo-host", console="127.0.0.1:0"), ready, stop))
        first: list[asyncio.Future[Any]] = [ready, daemon]
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            await daemon  # it failed to start: its error says why
            raise DemoError("the host daemon stopped before it was ready")
        started = ready.result()
        out(f"host daemon: host {started.host.name_label}, IQN {started.host.iqn}, SQLite store in {base}")
        out(f"console: {started.console}  (open it to watch each step)")
        api = Api(started.api)
        result = await _walk(api, array, started, seconds, out)
        out(await _topology(run_dir, api))
        if serve_after:
            out(f"\nserving: the console is {started.console}; the API is {started.api}. Ctrl-C to stop.")
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        return result
    finally:
        if api is not None:
            with contextlib.suppress(Exception):
                for pbd in await api.call("GET", "/pbds"):
                    await api.call("POST", f"/pbds/{pbd['uuid']}/unplug", {"force": True})
            await api.close()
        stop.set()
        if daemon is not None:
            with contextlib.suppress(Exception):
                await daemon
        with contextlib.suppress(Exception):  # a data path the unplug did not reach
            supervisor = Supervisor(run_dir)
            for dp in await supervisor.adopt():
                await supervisor.stop(dp.pbd)
        if server is not None:
            await server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(base, ignore_errors=True)
        loop.remove_signal_handler(signal.SIGTERM)
        if serve_after:
            loop.remove_signal_handler(signal.SIGINT)


async def _walk(api: Api, array: ArrayUnderTest, started: Started, seconds: float, out: Out) -> DemoResult:
    me = started.host.uuid
    out("\n1. Multipathing is changed in maintenance mode only, the same on every host of the pool")
    out("   $ sanpath host maintenance enter; sanpath host set-multipathing on --handler dmp; "
        "sanpath host maintenance exit")
    await api.call("POST", f"/hosts/{me}/maintenance", {"mode": "enter"})
    done = await api.call("POST", f"/hosts/{me}/multipathing", {"enabled": True, "handler": "dmp"})
    await api.call("POST", f"/hosts/{me}/maintenance", {"mode": "exit"})
    out(f"   multipathing on (handler {done['multipath_handle']}); {len(done['replugged'])} PBD(s) replugged")

    target = ",".join(array.targets)
    out(f"\n2. Discover IQNs at {target}")
    out(f"   $ sanpath sr probe --target {target}")
    iqns = (await api.call("POST", "/sr/probe", {"target": target}))["iqns"]
    for e in iqns:
        out(f"   {e['iqn']} ({e['address']}:{e['port']})" if e["iqn"] != "*" else "   * (every IQN on every portal)")
    offered = {e["iqn"] for e in iqns if e["iqn"] != "*"}
    if offered != {IQN}:
        raise DemoError(f"discovery offered {sorted(offered)}, not the array's one IQN {IQN}")
    paths = len({(e["address"], e["port"]) for e in iqns if e["iqn"] != "*"})
    out(f"   one IQN on every portal: portal mode, so choose {IQN} (* is for arrays with an IQN per portal)")

    out("\n3. Discover LUNs")
    out(f"   $ sanpath sr probe --target {target} --iqn {IQN}")
    [lun] = (await api.call("POST", "/sr/probe", {"target": target, "targetIQN": IQN}))["luns"]
    scsi_id = lun["SCSIid"]
    out(f"   LUN {lun['LUNid']}: SCSIid {scsi_id}, {lun['size']} bytes, vendor {lun['vendor']}")

    out(f"\n4. Create the SR ({SR_NAME}); a PBD is plugged on every host")
    out(f"   $ sanpath sr create --name '{SR_NAME}' --target {target} --iqn {IQN} --scsi-id {scsi_id}")
    sr = await api.call("POST", "/srs", {"name_label": SR_NAME, "target": target, "targetIQN": IQN,
                                         "SCSIid": scsi_id})
    [pbd] = sr["pbds"]
    full = f"[{paths}, {paths}]"
    pbd = await _until(api, f"/pbds/{pbd['uuid']}", lambda p: p["other_config"].get(f"mpath-{scsi_id}") == full,
                       f"all {paths} paths of the new PBD")
    out(f"   {started.host.name_label}: {_paths(pbd, scsi_id)}; NBD export {pbd['nbd']}")

    out(f"\n5. Verified random I/O through the SR's NBD export for {seconds:g} s")
    client = await NbdClient.connect_unix(pbd["nbd"].split("socket=", 1)[1], scsi_id)
    try:
        result, (failed_over, failed_back) = await verified_load(
            client, int(lun["size"]), seconds, _fail_and_restore(api, array.fault, pbd["uuid"], scsi_id, seconds, out))
    finally:
        await client.close()
    return DemoResult(result, failed_over, failed_back)


async def verified_load(client: NbdClient, size: int, seconds: float,
                        schedule: Awaitable[tuple[bool, bool]]) -> tuple[BenchResult, tuple[bool, bool]]:
    """Verified random 4 KiB I/O at QD 16 over the first 64 MiB of the export for ``seconds``, while
    ``schedule`` fails some paths and restores them (it says whether the failover and the failback were
    seen); an interruption stops the load with the reason."""
    bench = Bench(client, BenchSpec(rw="randrw", bs=4096, qd=16, seconds=seconds, verify=True,
                                    size=min(size, 64 << 20), seed=1))
    run = asyncio.ensure_future(bench.run())
    try:
        seen = await schedule
    except BaseException:
        bench.stop("the demo was interrupted")
        with contextlib.suppress(Exception):
            await run
        raise
    return await run, seen


async def _fail_and_restore(api: Api, fault: Fault, pbd: str, scsi_id: str, seconds: float,
                            out: Out) -> tuple[bool, bool]:
    await asyncio.sleep(seconds * 0.25)
    out(f"\n6. {fault.describe()}; wait for the alert")
    out("   $ sanpath alerts --follow")
    await fault.inject()
    pulled = time.monotonic()
    degraded = await _alert(api, pbd, "degraded", pulled)
    if degraded is not None:
        out(f"   after {(time.monotonic() - pulled) * 1000:.0f} ms: {degraded['text']}")
    await asyncio.sleep(max(seconds * 0.2, 1.0))
    out(f"\n7. Restore {fault.name}; wait for the recovery")
    await fault.restore()
    restored = time.monotonic()
    recovered = await _alert(api, pbd, "recovered", restored)
    if recovered is not None:
        out(f"   after {(time.monotonic() - restored) * 1000:.0f} ms: {recovered['text']}")
        out(f"   {_paths(await api.call('GET', f'/pbds/{pbd}'), scsi_id)}")
    return degraded is not None, recovered is not None


async def _alert(api: Api, pbd: str, state: str, since: float) -> dict[str, Any] | None:
    """The PBD's path-count alert in ``state`` raised after the monotonic time ``since``, or None after WAIT."""
    wall = time.time() - (time.monotonic() - since) - 1.0  # the store stamps by the wall clock
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for m in await api.call("GET", f"/messages?name={ALERT}&since={wall}"):
            if m["body"].get("pbd") == pbd and m["body"].get("state") == state:
                return dict(m)
        await asyncio.sleep(0.1)
    return None


async def _until(api: Api, path: str, done: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        answer = await api.call("GET", path)
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: not seen within {WAIT:g} s ({path}: {answer})")
        await asyncio.sleep(0.1)


async def _topology(run_dir: str, api: Api) -> str:
    """The data path's multipath -ll view of the SR's PBD, from its control socket."""
    [pbd] = await api.call("GET", "/pbds")
    answer = await ask(Supervisor(run_dir).control_path(pbd["uuid"]), {"op": "status"})
    if not answer or not answer.get("ok"):
        return "\n(the data path did not answer for its topology)"
    return "\nthe data path now:\n" + render_topology(answer["status"])


def summary(r: DemoResult) -> str:
    b = r.bench
    verdict = "PASS: nothing lost" if r.ok else "FAIL"
    return (f"\nsummary: {b.ios} I/Os ({b.read_ios} reads, {b.write_ios} writes), {b.bytes} bytes, "
            f"{b.errors} errors, {b.verify_failures} verify failures, longest stall {b.max_stall_ms:.0f} ms; "
            f"failover {'seen' if r.failed_over else 'NOT seen'}, failback {'seen' if r.failed_back else 'NOT seen'}"
            f"\n{verdict}")
