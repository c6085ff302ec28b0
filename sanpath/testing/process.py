"""Running ``sanpath target serve`` as a child process for tests and benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

_READY = re.compile(r"^sanpath target ready: (\S+) on (.+)$")
_CONTROL = re.compile(r"^sanpath target control: (.+)$")


@dataclass(frozen=True, slots=True)
class RunningTarget:
    iqn: str
    portals: tuple[str, ...]  # "host:port" as printed
    process: subprocess.Popen[str]
    log_path: str  # the target's stderr
    control: str = ""  # the control socket (``sanpath target fault/status --control``)
    iqns: tuple[str, ...] = ()  # every target name (a multi-iqn array has several)

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def url(self, lun: int = 0, portal: int = 0) -> str:
        return f"iscsi://{self.portals[portal]}/{self.iqn}/{lun}"


@contextmanager
def serve_target(*args: str, timeout: float = 20.0, prefix: Sequence[str] = ()) -> Iterator[RunningTarget]:
    """Start ``sanpath target serve ARGS`` and wait for its ready line; SIGTERM it on exit.

    ``prefix`` goes before the command, e.g. ``["ip", "netns", "exec", NS]`` (``Lab.prefix("array")``) to
    serve inside a lab namespace; ``ip netns exec`` execs the target, so the signal reaches it.
    """
    log = tempfile.NamedTemporaryFile("w+", prefix="sanpath-target-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "sanpath", "target", "serve", *args],
                            stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    control = ""
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            c = _CONTROL.match(line.strip())
            if c:
                control = c.group(1)
            m = _READY.match(line.strip())
            if m:
                iqns = tuple(m.group(1).split(","))
                yield RunningTarget(iqns[0], tuple(m.group(2).split()), proc, log.name, control, iqns)
                return
        log.seek(0)
        raise RuntimeError(f"target did not become ready: {line!r} {log.read()[-2000:]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        os.unlink(log.name)
