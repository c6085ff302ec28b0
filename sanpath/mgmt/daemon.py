"""The host daemon's loops: the reconciler (desired PBD state in the store -> one data-path process per
plugged PBD of this host), the reporter (what those processes see -> the PBD's other-config: path
counts, sessions, the export; MULTIPATH_PERIODIC_ALERT messages), and the host's own rows (heartbeat,
PIFs from netlink).

The reporter follows events, not a poll: one watcher per data-path process waits on its change counter
(path events, NBD clients coming and going) and marks the PBD for a fresh status at once; a PBD with no
news is looked at only every SAFETY seconds. Maintenance mode reaches the exports from here too: a host
in maintenance mode has its exports refuse new clients, and with force drain and close the old ones.

The reconciler is the only writer of ``currently_attached`` and of the PBD's reported keys. A plug
request that fails is recorded on the PBD (``error``) and the PBD is left unplugged; a data-path process
that dies while its PBD should be plugged is restarted with backoff, and each restart is a message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sanpath.aio import within

from ..host.pbd import FLUSH_FAILED
from . import alerts, netlink
from .errors import XenError
from .maintenance import FORCE, in_maintenance
from .pathplan import plan_paths
from .poolkey import PoolKey
from .store import Store
from .store.model import PBD, Host
from .supervisor import Supervisor, ask
from .workflow import HEARTBEAT, MPATH, TargetSpec

log = logging.getLogger(__name__)
RECONCILE = 0.25
SAFETY = 10.0  # seconds between looks at a data-path process that reported no change
WATCH = 20.0  # seconds a watcher's wait request may last
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
REPORTED = ("multipathed", "iscsi_sessions", "nbd", "nbd_clients", "nbd_accepting", "paths")  # and mpath-<SCSIid>


def link_rows() -> list[dict[str, Any]]:
    return [{"device": link.name, "mac": link.mac, "mtu": link.mtu, "carrier": link.carrier, "kind": link.kind,
             "master": link.master, "addresses": list(link.addresses)} for link in netlink.read_links()]


def unreported(other_config: dict[str, Any]) -> dict[str, Any]:
    """The PBD's other-config without what the reporter writes (as unplug leaves it)."""
    return {k: v for k, v in other_config.items() if k not in REPORTED and not k.startswith(MPATH)}


class HostDaemon:
    def __init__(self, store: Store, key: PoolKey, host: Host, supervisor: Supervisor) -> None:
        self.store = store
        self.key = key
        self.host = host
        self.supervisor = supervisor
        self.wake = asyncio.Event()  # a request was written: reconcile now rather than at the next round
        self.alerts = alerts.PathAlerts()
        self.pool_uuid = ""
        self._restarts: dict[str, int] = {}
        self._next_start: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty: set[str] = set()  # PBDs whose process has news: ask for its status this round
        self._looked: dict[str, float] = {}  # when each process's status was last asked for (monotonic)
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._exporting: dict[str, asyncio.Task[None]] = {}  # maintenance-mode requests under way, per PBD
        self._maintenance: tuple[bool, bool] = (False, False)

    async def start(self) -> None:
        pool = await self.store.pool()
        self.pool_uuid = pool.uuid if pool is not None else ""
        for dp in await self.supervisor.adopt():
            await self.store.add_message("PBD_DATAPATH_ADOPTED", 5, "PBD", dp.pbd, {"pid": dp.pid},
                                         f"the daemon adopted the running data-path process {dp.pid or ''}".strip())
        await self.refresh_host()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._loop(self.refresh_host, HEARTBEAT, None)),
                       loop.create_task(self._loop(self.reconcile, RECONCILE, self.wake))]

    async def stop(self) -> None:
        """The daemon stops; the data-path processes go on (a new daemon adopts them)."""
        tasks = self._tasks + list(self._watchers.values()) + list(self._exporting.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, work: Any, interval: float, wake: asyncio.Event | None) -> None:
        while True:
            try:
                await work()
            except Exception:  # the store may be away for a while: I/O goes on, and so do we
                log.exception("%s failed; retrying", getattr(work, "__name__", work))
            if wake is None:
                await asyncio.sleep(interval)
                continue
            with contextlib.suppress(TimeoutError):
                await within(wake.wait(), interval)
            wake.clear()

    async def refresh_host(self) -> None:
        rows = await asyncio.to_thread(link_rows)
        await self.store.sync_pifs(self.host.uuid, rows)
        self.host = await self.store.update_host(self.host.uuid, heartbeat=await self.store.now())
        pool = await self.store.pool()
        if pool is not None:
            with contextlib.suppress(TypeError, ValueError):
                self.alerts.period = float(pool.other_config.get(alerts.PERIOD_KEY, alerts.PERIOD))

    # --- reconciler ------------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        self.host = await self.store.host(self.host.uuid)
        maintenance = (in_maintenance(self.host), self.host.other_config.get(FORCE) == "true")
        if maintenance != self._maintenance:  # every export is to be told
            self._maintenance = maintenance
            self._dirty.update(self.supervisor.running)
        pbds = await self.store.pbds(host_uuid=self.host.uuid)
        mine = {p.uuid for p in pbds}
        for pbd in pbds:
            try:
                await self._reconcile_one(pbd)
            except Exception:  # one PBD's trouble must not starve the others
                log.exception("PBD %s: reconciling failed; retrying next round", pbd.uuid)
        for uuid in list(self.supervisor.running):
            if uuid not in mine:  # its SR was forgotten behind our back: stop serving it
                await self.supervisor.stop(uuid)
        self._watch_running()
        await self._repeat_alerts({p.uuid: p for p in pbds})

    def _watch_running(self) -> None:
        for uuid in list(self._watchers):
            if uuid not in self.supervisor.running:
                self._watchers.pop(uuid).cancel()
        for uuid in self.supervisor.running:
            if uuid not in self._watchers:
                self._watchers[uuid] = asyncio.get_running_loop().create_task(self._watch(uuid))

    async def _watch(self, uuid: str) -> None:
        """Wait on the process's change counter; each change marks the PBD for a status at once."""
        seen = -1
        while (dp := self.supervisor.running.get(uuid)) is not None:
            answer = await ask(dp.control, {"op": "wait", "after": seen, "timeout": WATCH}, WATCH + 5)
            if answer is None or not isinstance(answer.get("changes"), int):  # not answering (yet), or gone
                self._dirty.add(uuid)
                self.wake.set()
                await asyncio.sleep(1.0)
                continue
            if answer["changes"] != seen:
                seen = answer["changes"]
                self._dirty.add(uuid)
                self.wake.set()

    async def _reconcile_one(self, pbd: PBD) -> None:
        fresh = pbd.observed_generation < pbd.generation  # a plug or unplug request not acted on yet
        running = pbd.uuid in self.supervisor.running
        if not pbd.plugged:
            error: dict[str, Any] = {}
            if running and await self.supervisor.stop(pbd.uuid) == FLUSH_FAILED:
                error = XenError("ISCSIDevice", f"PBD {pbd.uuid}: the last flush before the unplug failed; "
                                 "writes acknowledged before it may not be on the array", pbd.uuid,
                                 advice="Check the array and the LUN's data before using it again.").to_json()
            self.alerts.forget(pbd.uuid)
            if fresh or pbd.currently_attached:
                await self.store.settle_pbd(pbd.uuid, pbd.generation, currently_attached=False, error=error,
                                            other_config=unreported(pbd.other_config),
                                            observed_generation=pbd.generation)
            return
        if running and not fresh and pbd.uuid not in self._dirty and pbd.currently_attached \
                and time.monotonic() - self._looked.get(pbd.uuid, 0.0) < SAFETY:
            return  # no news from its process
        self._dirty.discard(pbd.uuid)
        self._looked[pbd.uuid] = time.monotonic()
        status = await self.supervisor.status(pbd.uuid) if running else None
        if status is not None:
            await self._report(pbd, status, fresh)
            self._apply_maintenance(pbd.uuid, status)
            return
        if not self.supervisor.gone(pbd.uuid):
            return  # alive but not answering (still logging in, or busy): judged again next round
        if not fresh:
            if pbd.currently_attached:  # it was serving and died
                await self._died(pbd)
            if time.monotonic() < self._next_start.get(pbd.uuid, 0.0):
                return
        await self._start(pbd, fresh)

    def _back_off(self, pbd: str) -> float:
        n = self._restarts.get(pbd, 0)
        self._restarts[pbd] = n + 1
        delay = RESTART_BACKOFF[min(n, len(RESTART_BACKOFF) - 1)]
        self._next_start[pbd] = time.monotonic() + delay
        return delay

    async def _died(self, pbd: PBD) -> None:
        delay = self._back_off(pbd.uuid)
        n = self._restarts[pbd.uuid]
        self.supervisor.forget(pbd.uuid)
        await self.store.update_pbd(pbd.uuid, currently_attached=False)
        await self.store.add_message("PBD_DATAPATH_RESTARTED", 3, "PBD", pbd.uuid,
                                     {"host": self.host.uuid, "restart": n, "delay": delay},
                                     f"the data-path process of PBD {pbd.uuid} on {self.host.name_label} exited; "
                                     f"restart {n} in {delay:g} s")
        log.warning("PBD %s: data-path process gone; restart %d in %g s", pbd.uuid, n, delay)

    async def _start(self, pbd: PBD, fresh: bool) -> None:
        try:
            spec = await self.spec(pbd)
            dp = await self.supervisor.start(pbd.uuid, spec)
        except XenError as e:
            log.warning("PBD %s: plug failed: %s", pbd.uuid, e)
            if fresh:  # the admin's plug failed: say why and leave it unplugged
                await self.store.settle_pbd(pbd.uuid, pbd.generation, plugged=False, currently_attached=False,
                                            error=e.to_json(), observed_generation=pbd.generation)
            else:  # keeping it plugged: try again later
                await self.store.update_pbd(pbd.uuid, error=e.to_json())
                self._back_off(pbd.uuid)
            return
        status = await self.supervisor.status(dp.pbd)
        if status is not None:
            self._restarts.pop(pbd.uuid, None)
            await self._report(pbd, status, True)

    async def _report(self, pbd: PBD, status: dict[str, Any], fresh: bool) -> None:
        """The process's view -> the PBD's other-config, written only when something changed."""
        active, maximum = status["mpath_counts"]
        key = f"{MPATH}{status['wwid']}"
        other = unreported(pbd.other_config)
        if pbd.currently_attached and key in pbd.other_config:  # the max never decreases while plugged
            with contextlib.suppress(ValueError, IndexError):
                maximum = max(maximum, int(pbd.other_config[key].strip("[]").split(",")[1]))
        other.update({
            "multipathed": "true" if status.get("multipathed", True) else "false",
            "iscsi_sessions": str(status.get("iscsi_sessions", 0)),
            key: f"[{active}, {maximum}]",
            "nbd": status.get("nbd", ""),
            "nbd_clients": str(status.get("nbd_clients", 0)),
            "nbd_accepting": "true" if status.get("nbd_accepting", True) else "false",
            "paths": [{"name": p.get("name"), "routed": p.get("routed"), "logged_in": p.get("logged_in")}
                      for p in status.get("expected", [])],
        })
        if fresh or other != pbd.other_config or not pbd.currently_attached or pbd.error:
            await self.store.settle_pbd(pbd.uuid, pbd.generation, currently_attached=True, other_config=other,
                                        error={}, observed_generation=pbd.generation)
        state = self.alerts.counts(pbd.uuid, active, maximum, time.monotonic())
        if state is not None:
            await self._alert(pbd, active, maximum, state)

    async def _alert(self, pbd: PBD, current: int, maximum: int, state: str) -> None:
        sr = await self.store.sr(pbd.sr_uuid)
        body = alerts.record(host=self.host.uuid, host_name=self.host.name_label, pbd=pbd.uuid, sr=sr.uuid,
                             sr_name=sr.name_label, scsi_id=sr.scsi_id, current=current, maximum=maximum,
                             state=state, period=self.alerts.period)
        await self.store.add_message(alerts.NAME, alerts.PRIORITY, "pool", self.pool_uuid, body, alerts.render(body))
        log.warning("%s", alerts.render(body))

    async def _repeat_alerts(self, pbds: dict[str, PBD]) -> None:
        for uuid, current, maximum in self.alerts.due(time.monotonic()):
            if (pbd := pbds.get(uuid)) is not None:
                await self._alert(pbd, current, maximum, alerts.DEGRADED)

    def _apply_maintenance(self, uuid: str, status: dict[str, Any]) -> None:
        """A host in maintenance mode: its exports refuse new clients, and with force their clients are
        drained and closed. Out of it, they take clients again. Sent once per change, in the background
        (a drain takes seconds)."""
        maintenance, force = self._maintenance
        accept = not maintenance
        if uuid in self._exporting:
            return
        if status.get("nbd_accepting", True) != accept or (force and maintenance and status.get("nbd_clients")):
            self._exporting[uuid] = asyncio.get_running_loop().create_task(
                self._exports(uuid, accept, force and maintenance))

    async def _exports(self, uuid: str, accept: bool, disconnect: bool) -> None:
        try:
            answer = await self.supervisor.request(uuid, {"op": "exports", "accept": accept,
                                                          "disconnect": disconnect}, timeout=60)
            if answer is None or not answer.get("ok"):
                log.warning("PBD %s: the export did not take the maintenance-mode request: %s", uuid,
                            (answer or {}).get("error", "no answer"))
        finally:
            self._exporting.pop(uuid, None)
            self._dirty.add(uuid)
            self.wake.set()

    # --- the data-path spec ----------------------------------------------------------------------------

    async def spec(self, pbd: PBD) -> dict[str, Any]:
        sr = await self.store.sr(pbd.sr_uuid)
        host = await self.store.host(self.host.uuid)
        dc = pbd.device_config
        multihomed = dc.get("multihomed", "auto")
        multihome = host.multipathing if multihomed == "auto" else multihomed == "true"
        portals = [(str(a), int(p), str(i)) for a, p, i in sr.sm_config.get("portals", [])]
        if not multihome:  # XenServer: only the portal of the target address, one path
            given = set(TargetSpec(dc.get("target", ""), int(dc.get("port", 3260))).addresses())
            portals = [p for p in portals if (p[0], p[1]) in given][:1] or portals[:1]
        paths = plan_paths(portals, await self.store.pifs(host.uuid))
        if not multihome:
            paths = paths[:1]
        # dmp (DM-MP) takes the array's own device section (an LSI array gets its rdac handler from it);
        # rdac (the seed's MPP RDAC) forces the RDAC handler, prioritizer and checker on every array
        settings = []
        if host.multipath_handle == "rdac":
            settings = ["handler=rdac", "prio=rdac", "path_checker=rdac", "path_grouping_policy=group_by_prio"]
        spec: dict[str, Any] = {
            "sr": sr.uuid, "scsi_id": sr.scsi_id, "paths": paths, "initiator_name": dc.get("localIQN") or host.iqn,
            "settings": settings, "nbd": self.supervisor.nbd_path(sr.scsi_id), "login_timeout": 3.0,
            "multipathed": multihome, "accept": not in_maintenance(host),
        }
        if dc.get("chapuser"):
            spec["chap"] = {"user": dc["chapuser"], "secret": await self._secret(dc["chappassword_secret"])}
        if dc.get("incoming_chapuser"):
            spec["mutual"] = {"user": dc["incoming_chapuser"],
                              "secret": await self._secret(dc["incoming_chappassword_secret"])}
        return spec

    async def _secret(self, uuid: str) -> str:
        return self.key.decrypt(await self.store.secret(uuid)).decode()
