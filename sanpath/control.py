"""Local control sockets: JSON lines over a unix socket (mode 0600 in a 0700 directory), one request
per line, one answer per line. The target (``sanpath target serve``) and the attach service
(``sanpath attach``) each serve one; their CLIs are the clients. Answers are ``{"ok": true, ...}`` or
``{"ok": false, "error": "what went wrong and what to do"}``; a bad request never breaks the server."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ConfigError

MAX_LINE = 1 << 16
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def default_control_dir() -> str:
    """$XDG_RUNTIME_DIR/sanpath, else <tmp>/sanpath-<uid>."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "sanpath")
    return os.path.join(tempfile.gettempdir(), f"sanpath-{os.getuid()}")


def default_socket(kind: str) -> str:
    """Where a service of ``kind`` ("target", "attach") of this process listens by default."""
    return os.path.join(default_control_dir(), f"{kind}-{os.getpid()}.sock")


def find_socket(kind: str, what: str) -> str:
    """The one running service of ``kind`` in the default directory, for clients given no --control."""
    found = [p for p in sorted(glob.glob(os.path.join(default_control_dir(), f"{kind}-*.sock"))) if alive(p)]
    if len(found) != 1:
        problem = f"no running {what} found" if not found else f"{len(found)} {what}s running"
        raise ConfigError("--control", f"{problem} in {default_control_dir()}; give --control PATH")
    return found[0]


def alive(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


class JsonLineServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._srv: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if os.path.exists(self.path) and not alive(self.path):
                os.unlink(self.path)  # left behind by a process that died
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
                    req = json.loads(line)
                    answer = (await self.handler(req) if isinstance(req, dict)
                              else {"ok": False, "error": "a request is a JSON object with an 'op'"})
                except (ValueError, TypeError) as e:
                    answer = {"ok": False, "error": f"bad request: {e}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()


def call(path: str, request: dict[str, Any], *, what: str, hint: str, timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a control socket and return the answer (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as e:
            raise ConfigError("--control", f"cannot reach the {what} at {path}: {e.strerror or e}; "
                              f"is `{hint}` running?") from None
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
