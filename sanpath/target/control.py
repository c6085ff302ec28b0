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

from typing import TYPE_CHECKING, Any

from .. import control
from ..errors import SanpathError

if TYPE_CHECKING:
    from .server import TargetServer

_FAULT_ARGS = ("portal", "controller", "session", "lun", "seconds", "digest", "after_commands", "after_seconds")


def default_control_path() -> str:
    return control.default_socket("target")


def find_control_path() -> str:
    """The one running target's socket in the default directory, for clients given no --control."""
    return control.find_socket("target", "target")


def call(path: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a running target's control socket and return its answer (blocking)."""
    return control.call(path, request, what="target", hint="sanpath target serve", timeout=timeout)


class ControlServer(control.JsonLineServer):
    def __init__(self, server: TargetServer, path: str) -> None:
        super().__init__(path, self.handle)
        self.server = server

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """One request; never raises for a bad request."""
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
