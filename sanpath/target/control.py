"""The target's local control socket: JSON lines over a unix socket (mode 0600), one request per line,
one answer per line. ``sanpath target fault`` and ``sanpath target status`` are its clients.

Requests and answers::

    {"op": "status"}                                   -> {"ok": true, "status": {...}}
    {"op": "fault", "kind": "delay", "portal": "127.0.0.1:3260", "seconds": 2,
     "after_commands": 10}                             -> {"ok": true, "fault": {"id": "f1", ...}}
    {"op": "restore", "id": "f1" | "all"}              -> {"ok": true, "restored": ["f1"]}
    {"op": "move", "lun": 0, "controller": "B"}        -> {"ok": true, "moved": true}

Any failure is ``{"ok": false, "error": "what went wrong and what to do"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import socket
import tempfile
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, SanpathError

if TYPE_CHECKING:
    from .server import TargetServer

log = logging.getLogger(__name__)

_FAULT_ARGS = ("portal", "controller", "session", "lun", "seconds", "digest", "after_commands", "after_seconds")
MAX_LINE = 1 << 16


def default_control_dir() -> str:
    """$XDG_RUNTIME_DIR/sanpath, else <tmp>/sanpath-<uid>."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "sanpath")
    return os.path.join(tempfile.gettempdir(), f"sanpath-{os.getuid()}")


def default_control_path() -> str:
    return os.path.join(default_control_dir(), f"target-{os.getpid()}.sock")


def find_control_path() -> str:
    """The one running target's socket in the default directory, for clients given no --control."""
    found = [p for p in sorted(glob.glob(os.path.join(default_control_dir(), "target-*.sock"))) if _alive(p)]
    if len(found) != 1:
        what = "no running target found" if not found else f"{len(found)} targets running"
        raise ConfigError("--control", f"{what} in {default_control_dir()}; give --control PATH")
    return found[0]


class ControlServer:
    def __init__(self, server: TargetServer, path: str) -> None:
        self.server = server
        self.path = path
        self._srv: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if os.path.exists(self.path) and not _alive(self.path):
                os.unlink(self.path)  # left behind by a target that died
        old = os.umask(0o177)
        try:
            self._srv = await asyncio.start_unix_server(self._client, self.path, limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._srv is not None:
            self._srv.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = await self.handle(json.loads(line))
                except (ValueError, TypeError) as e:
                    answer = {"ok": False, "error": f"bad request: {e}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """One request; never raises for a bad request."""
        if not isinstance(req, dict):
            return {"ok": False, "error": "a request is a JSON object with an 'op'"}
        op = req.get("op")
        faults = self.server.faults
        try:
            if op == "status":
                return {"ok": True, "status": self.server.status()}
            if op == "fault":
                kind = str(req.get("kind", ""))
                args = {k: req[k] for k in _FAULT_ARGS if req.get(k) is not None}
                return {"ok": True, "fault": faults.inject(kind, **args).to_json()}
            if op == "restore":
                restored = await faults.restore(str(req.get("id") or "all"))
                return {"ok": True, "restored": [f.id for f in restored]}
            if op == "move":
                lun, ctl = int(req.get("lun", 0)), str(req.get("controller", "")).upper()
                array = next((a for a in self.server.arrays if lun in a.luns and ctl in a.controllers), None)
                if array is None:
                    return {"ok": False, "error": f"no LUN {lun} with a controller {ctl!r}"}
                return {"ok": True, "moved": array.move(lun, ctl, reason="control socket")}
        except (SanpathError, OSError, TypeError, ValueError) as e:
            return {"ok": False, "error": str(e)}
        return {"ok": False, "error": f"unknown op {op!r}; use status, fault, restore or move"}


def _alive(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def call(path: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a running target's control socket and return its answer (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as e:
            raise ConfigError("--control", f"cannot reach the target at {path}: {e.strerror or e}; "
                              "is `sanpath target serve` running?") from None
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    answer = json.loads(buf or b"{}")
    if not isinstance(answer, dict):
        raise ConfigError("--control", f"unexpected answer from {path}: {buf[:200]!r}")
    return answer
