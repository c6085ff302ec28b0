"""Running ``sanpath host serve`` as a child process for tests: its own state and runtime directories,
the ready line waited for, an httpx client on its API socket; on exit the daemon is stopped and so are
the data-path processes it left running (a stopped daemon leaves them on purpose)."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from .. import control
from ..errors import SanpathError
from ..target.spawn import lines_until, terminate

_READY = re.compile(r"^sanpath host serve ready: host (\S+) \((\S+)\) iqn (\S+) api unix:(\S+)(?:.* console (\S+))?")


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    name: str
    uuid: str
    iqn: str
    api: str
    state_dir: str
    run_dir: str
    log_path: str
    console: str = ""  # the console's URL, when --console was given
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(transport=httpx.HTTPTransport(uds=self.api), base_url="http://sanpath",
                                   timeout=120)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.client.request(method, path, json=body)
        if r.status_code >= 400:
            raise AssertionError(f"{method} {path}: HTTP {r.status_code}: {r.text}")
        return r.json()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def datapath_pids(run_dir: str) -> list[int]:
    """The pids of the data-path processes whose control sockets are in ``run_dir`` (from /proc)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if b"sanpath.host.pbd" in cmd and f"SANPATH_RUN_DIR={run_dir}".encode() in env and not zombie:
            pids.append(int(pid))
    return sorted(pids)


@contextmanager
def serve_daemon(*args: str, state_dir: str | None = None, run_dir: str | None = None,
                 prefix: Sequence[str] = (), timeout: float = 30.0) -> Iterator[Daemon]:
    """Start ``sanpath host serve ARGS`` and yield once it is ready; stop it (and its data paths) after."""
    owned = []  # the directories made here go when the daemon does
    if state_dir is None:
        state_dir = tempfile.mkdtemp(prefix="sp-state-", dir="/tmp")
        owned.append(state_dir)
    if run_dir is None:
        run_dir = tempfile.mkdtemp(prefix="sp-run-", dir="/tmp")
        owned.append(run_dir)
    try:
        with start_daemon(*args, state_dir=state_dir, run_dir=run_dir, prefix=prefix, timeout=timeout) as d:
            yield d
    finally:
        stop_datapaths(run_dir)
        for directory in owned:
            shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def start_daemon(*args: str, state_dir: str, run_dir: str, prefix: Sequence[str] = (),
                 timeout: float = 30.0) -> Iterator[Daemon]:
    """One daemon process on given directories (a second start on the same ones adopts what runs)."""
    env = {**os.environ, "SANPATH_STATE_DIR": state_dir, "SANPATH_RUN_DIR": run_dir, "PYTHONUNBUFFERED": "1"}
    log_path = os.path.join(state_dir, f"daemon-{time.monotonic_ns()}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "sanpath", "host", "serve", *args],
                                stdout=subprocess.PIPE, stderr=log, env=env)
    assert proc.stdout is not None
    try:
        line = ""
        for line in lines_until(proc.stdout.fileno(), time.monotonic() + timeout):
            if m := _READY.match(line):
                d = Daemon(proc, m.group(1), m.group(2), m.group(3), m.group(4), state_dir, run_dir, log_path,
                           m.group(5) or "")
                try:
                    yield d
                finally:
                    d.client.close()
                return
        with open(log_path, errors="replace") as f:
            raise RuntimeError(f"sanpath host serve did not start ({line!r}); its log: {f.read()[-3000:]}")
    finally:
        terminate(proc, grace=20)
        proc.stdout.close()


def stop_datapaths(run_dir: str) -> None:
    """SIGTERM every data-path process of ``run_dir`` (they drain and log out), SIGKILL after 15 s."""
    pids = datapath_pids(run_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while datapath_pids(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in datapath_pids(run_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def pbd_status(run_dir: str) -> list[dict[str, Any]]:
    """What each data-path process of ``run_dir`` says (its control socket's status), for tests."""
    out = []
    for path in glob.glob(os.path.join(run_dir, "pbd-*.sock")):
        with contextlib.suppress(SanpathError, OSError, ValueError):
            answer = control.call(path, {"op": "status"}, what="data-path process", hint="sanpath host serve")
            if answer.get("ok"):
                out.append(answer["status"])
    return out
