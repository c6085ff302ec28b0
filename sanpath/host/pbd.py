"""The data-path process of one plugged PBD (``python -m sanpath.host.pbd``), started by the host daemon.

It reads its spec as one JSON object on stdin (so that CHAP secrets are never in its arguments or
environment), logs in to every expected path at once, builds the multipath device over the paths that
answered (waiting at most STRAGGLER_GRACE for the rest once one is up), exports it over NBD on the SR's
stable unix socket, and prints one JSON line on stdout:
``{"ready": true, "nbd": URI, ...}`` or ``{"ready": false, "error": NAME, "message": ...}``. A path that did
not answer at plug is logged in again by itself, per portal, with backoff, until it does; the path count's
max is the number of expected paths from the start, so a dead portal shows as a missing path.

It runs in a session of its own, so that the daemon can die (even by kill -9) while I/O goes on; a new
daemon finds it again through its control socket, whose ``status`` answer names the PBD and the pid.

Spec keys: pbd, sr, scsi_id, paths [{source, host, port, iqn, routed}], initiator_name, chap
{user, secret}, mutual {user, secret}, settings ["key=value", ...] (multipath settings), nbd (socket
path), control (socket path), lock (the PBD's lock file), log (its log file), login_timeout,
multipathed.

Control requests: ``{"op": "status"}``; ``{"op": "stop"}`` (drain, flush, log out; exit 0, or
FLUSH_FAILED when the last flush failed); ``{"op": "exports", "accept": bool, "disconnect": bool}`` (a
host in maintenance mode takes no new NBD clients, and with ``disconnect`` its clients are drained and
closed, then the LUN is flushed); ``{"op": "wait", "after": N, "timeout": S}`` answers once the change
counter (path events, NBD clients coming and going) has passed N, or after S seconds: the daemon's
path counts follow events, not a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from sanpath.aio import within

from ..errors import SanpathError
from ..initiator.discovery import DiscoveredTarget
from ..initiator.session import SessionConfig
from ..iscsi.auth import ChapCredentials
from ..multipath.config import policy_source
from ..multipath.discovery import PolicyFor, fold_device, login_paths
from ..multipath.path import Path, PathEvent
from .attach import ExportService, NbdEndpoint

log = logging.getLogger(__name__)
RELOGIN_MAX = 8.0
LOG_BYTES = 4 << 20
FLUSH_FAILED = 3  # exit status: the last flush failed, so acknowledged writes may not be on the array
STRAGGLER_GRACE = 1.0  # seconds a plug waits for the other logins once one path is up


@dataclass(frozen=True, slots=True)
class ExpectedPath:
    """A path the PBD should have: from ``source`` (a storage PIF's address, or None for the routing
    table's choice) to the portal ``host:port`` of target ``iqn``."""

    host: str
    port: int
    iqn: str
    source: str | None = None
    routed: bool = False  # the portal is in no storage PIF's subnet: the route lookup picks the NIC

    @property
    def name(self) -> str:
        via = f"{self.source}->" if self.source else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{via}{host}:{self.port}/{self.iqn}"


class PbdService(ExportService):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(NbdEndpoint("unix", path=spec["nbd"]), spec["control"])
        self.spec = spec
        self.pbd = str(spec["pbd"])
        self.scsi_id = str(spec["scsi_id"])
        self.expected = [ExpectedPath(p["host"], int(p["port"]), p["iqn"], p.get("source"), bool(p.get("routed")))
                         for p in spec["paths"]]
        self.policy_for: PolicyFor = policy_source(None, list(spec.get("settings", [])))
        self.base = SessionConfig(host="", initiator_name=spec["initiator_name"], chap=_chap(spec.get("chap")),
                                  mutual=_chap(spec.get("mutual")),
                                  login_timeout=float(spec.get("login_timeout", 3.0)))
        self.stopping = asyncio.Event()
        self._live: dict[ExpectedPath, list[Path]] = {}
        self.changes = 0  # bumped on every path event and NBD client change
        self._changed = asyncio.Event()
        self.path_counters: dict[str, dict[str, int]] = {}  # per path: failed, reinstated

    def _bump(self) -> None:
        self.changes += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_path_event(self, event: PathEvent) -> None:
        if event.kind in ("failed", "reinstated"):
            counters = self.path_counters.setdefault(event.path, {"failed": 0, "reinstated": 0})
            counters[event.kind] += 1
        self._bump()

    async def _open(self, want: ExpectedPath) -> list[Path]:
        """The paths to our LUN through one expected path (empty when it does not answer)."""
        policy = self.policy_for("", "")
        record = DiscoveredTarget(want.host, want.port, 1, want.iqn)
        paths = await login_paths(record, want.source, self.base, policy, self.pool)
        mine = [p for p in paths if p.wwid == self.scsi_id]
        if paths and not mine:
            log.warning("%s: no LUN %s behind it (found %s)", want.name, self.scsi_id, ", ".join(p.wwid for p in paths))
        return mine

    async def start(self) -> str:
        """Log in to every expected path at once; build the device once the live ones are in. Logins
        still pending STRAGGLER_GRACE after the first path came up (a black-holed portal waits out its
        login timeout) finish in the background, and their paths join the device when they answer."""
        loop = asyncio.get_running_loop()
        logins: dict[asyncio.Future[list[Path]], ExpectedPath] = {asyncio.ensure_future(self._open(w)): w
                                                                  for w in self.expected}
        found: dict[ExpectedPath, list[Path]] = {}
        pending: set[asyncio.Future[list[Path]]] = set(logins)
        grace_end: float | None = None
        while pending:
            timeout = None if grace_end is None else max(0.0, grace_end - loop.time())
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break  # the grace is over: the rest join later
            for task in done:
                found[logins[task]] = task.result()
            if grace_end is None and any(found.values()):
                grace_end = loop.time() + STRAGGLER_GRACE
        members = [p for group in found.values() for p in group]
        if not members:
            raise PlugError("ISCSITarget", f"no path to LUN {self.scsi_id} answered; tried "
                            + ", ".join(w.name for w in self.expected))
        device = fold_device(self.scsi_id, members, self.policy_for)
        device.max_paths = max(len(self.expected), len(members))
        uri = await self.serve(device)
        assert self.export is not None
        self.export.accepting = bool(self.spec.get("accept", True))
        self.export.on_change = self._bump
        device.listeners.append(self._on_path_event)
        self._live.update(found)
        still = {w: t for t, w in logins.items() if t in pending}
        for want in self.expected:
            if not found.get(want):
                self.tasks.append(loop.create_task(self._join_later(want, still.get(want))))
        return uri

    async def _join_later(self, want: ExpectedPath, login: asyncio.Future[list[Path]] | None) -> None:
        """A path that was not up at plug: the login still under way, then new ones with backoff until it
        answers; then its paths join the device."""
        delay = 0.5
        while not self.stopping.is_set():
            if login is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RELOGIN_MAX)
                login = asyncio.ensure_future(self._open(want))
            try:
                paths = await login
            except Exception:  # a bug must not end the retries: the path would never come back
                log.exception("%s: logging in again failed", want.name)
                paths = []
            login = None
            if paths:
                self._add(want, paths)
                return

    def _add(self, want: ExpectedPath, paths: list[Path]) -> None:
        assert self.device is not None and self.monitor is not None
        for path in paths:
            if path.device is None:
                continue
            if path.device.capacity is None:  # a standby (ghost) path: it takes the device's capacity
                path.device.capacity = next(p.device.capacity for p in self.device.paths
                                            if p.device is not None and p.device.capacity is not None)
            if path.device.size != self.device.size or path.device.block_size != self.device.block_size:
                log.error("%s: refused: its LUN %s has another size", want.name, self.scsi_id)
                return
            self.device.add_path(path)
            self.monitor.watch(path)
        self._live[want] = paths
        self.device.choose_group()

    def status(self, events: int = 20) -> dict[str, Any]:
        assert self.export is not None
        st = super().status(events)
        st["pbd"] = self.pbd
        st["multipathed"] = bool(self.spec.get("multipathed", True))
        st["pid"] = os.getpid()
        st["nbd_clients"] = len(self.export.connections)
        st["nbd_accepting"] = self.export.accepting
        st["changes"] = self.changes
        st["path_counters"] = self.path_counters
        st["iscsi_sessions"] = sum(1 for s in self.pool.current.values() if s.logged_in)
        st["expected"] = [{"name": w.name, "source": w.source, "portal": f"{w.host}:{w.port}", "iqn": w.iqn,
                           "routed": w.routed, "logged_in": bool(self._live.get(w))} for w in self.expected]
        return st

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") == "stop":
            self.stopping.set()
            return {"ok": True}
        if req.get("op") == "wait":
            changed = self._changed
            if self.changes <= int(req.get("after", -1)):
                with contextlib.suppress(TimeoutError):
                    await within(changed.wait(), min(float(req.get("timeout", 20.0)), 60.0))
            return {"ok": True, "changes": self.changes}
        if req.get("op") == "exports" and self.export is not None and self.device is not None:
            if self.export.accepting != bool(req.get("accept", True)):
                self.export.accepting = bool(req.get("accept", True))
                self._bump()
            closed = 0
            if req.get("disconnect"):
                closed = await self.export.disconnect_clients()
                try:
                    await self.device.flush()  # what the clients were acknowledged is on the array
                except Exception as e:
                    log.error("the flush after disconnecting the NBD clients failed: %s", e)
                    return {"ok": False, "error": f"the flush after disconnecting the clients failed: {e}"}
                log.info("%d NBD client(s) drained and disconnected; the LUN is flushed", closed)
            return {"ok": True, "accepting": self.export.accepting, "disconnected": closed}
        return await super().handle(req)

    async def stop(self) -> bool:
        self.stopping.set()
        return await super().stop()


class PlugError(SanpathError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _chap(value: dict[str, str] | None) -> ChapCredentials | None:
    return ChapCredentials(value["user"], value["secret"].encode()) if value else None


def _say(obj: dict[str, Any]) -> None:
    """The one line for the daemon on stdout; a daemon that died meanwhile must not stop the data path."""
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except OSError:
        log.warning("the daemon is gone before our ready line; serving on (a new daemon adopts us)")


def _quiet_stdout() -> None:
    """Nothing more goes to the daemon: stdout points at /dev/null, so no later write can hit a closed
    pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _lock(path: str) -> int | None:
    """The PBD's lock, held for the process's life: at most one data-path process per PBD. Retried for
    a second, because the daemon tests it (and lets it go at once) before it starts us."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(100):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            time.sleep(0.01)
    os.close(fd)
    return None


async def _main(spec: dict[str, Any]) -> int:
    service = PbdService(spec)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stopping.set)
    try:
        uri = await service.start()
    except PlugError as e:
        _say({"ready": False, "error": e.name, "message": str(e)})
        await service.stop()
        return 1
    except SanpathError as e:
        _say({"ready": False, "error": "ISCSIDevice", "message": str(e)})
        await service.stop()
        return 1
    assert service.device is not None
    active, maximum = service.device.counts()
    _say({"ready": True, "nbd": uri, "pid": os.getpid(), "control": service.control.path,
          "mpath": [active, maximum]})
    _quiet_stdout()
    await service.stopping.wait()
    return 0 if await service.stop() else FLUSH_FAILED


def _log_to(path: str | None) -> None:
    """Log to ``path``, rotated at LOG_BYTES (a dead portal logs each retry for as long as it is dead),
    else to stderr."""
    handler: logging.Handler = (logging.handlers.RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=2)
                                if path else logging.StreamHandler())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def main() -> None:
    try:
        spec = json.loads(sys.stdin.readline())
        _log_to(spec.get("log"))
        spec["paths"] = [dataclasses.asdict(ExpectedPath(**p)) for p in spec["paths"]]  # refuse unknown keys
        lock = _lock(spec["lock"])
    except (ValueError, TypeError, KeyError, OSError) as e:
        _say({"ready": False, "error": "VALUE_INVALID", "message": f"bad spec on stdin: {e}"})
        sys.exit(2)
    if lock is None:
        _say({"ready": False, "error": "ISCSIQueryDaemon",
              "message": f"PBD {spec.get('pbd')} has a data-path process already ({spec['lock']} is held)"})
        sys.exit(1)
    sys.exit(asyncio.run(_main(spec)))


if __name__ == "__main__":
    main()
