"""Running ``sanpath target serve`` as a child process: for the lab demo, the benchmarks and the tests."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

_READY = re.compile(r"^sanpath target ready: (\S+) on (.+)$")
_CONTROL = re.compile(r"^sanpath target control: (.+)$")


@dataclass(frozen=True, slots=True)
class RunningTarget:
    iqn: str
    portals: tuple[str, ...]  # "host:port" as printed
    process: subprocess.Popen[bytes]
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
    """Start ``sanpath target serve ARGS`` and wait (at most ``timeout`` seconds) for its ready line;
    SIGTERM it on exit.

    ``prefix`` goes before the command, e.g. ``["ip", "netns", "exec", NS]`` (``Lab.prefix("array")``) to
    serve inside a lab namespace; ``ip netns exec`` execs the target, so the signal reaches it.
    """
    log = tempfile.NamedTemporaryFile("w+", prefix="sanpath-target-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "sanpath", "target", "serve", *args],
                            stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        control = ""
        deadline = time.monotonic() + timeout
        for line in lines_until(proc.stdout.fileno(), deadline):
            if c := _CONTROL.match(line):
                control = c.group(1)
            if m := _READY.match(line):
                iqns = tuple(m.group(1).split(","))
                yield RunningTarget(iqns[0], tuple(m.group(2).split()), proc, log.name, control, iqns)
                return
        if deadline - time.monotonic() > 0:
            # end of file before the deadline: the child closed its output, so it is exiting; its exit
            # status may lag the end of file by a moment on a loaded machine
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        log.seek(0)
        state = "exited" if proc.poll() is not None else f"not ready within {timeout:g} s"
        raise RuntimeError(f"sanpath target serve {state}; its log: {log.read()[-2000:]}")
    finally:
        terminate(proc, grace=20)
        proc.stdout.close()
        log.close()
        os.unlink(log.name)


def terminate(proc: subprocess.Popen[Any], *, grace: float) -> None:
    """SIGTERM a child that is still running (a sanpath server drains and exits on it), SIGKILL it after
    ``grace`` seconds, and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def lines_until(fd: int, deadline: float) -> Iterator[str]:
    """Lines from ``fd`` until end of file or ``deadline``; never blocks past the deadline."""
    pending = b""
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            return
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line.decode(errors="replace").strip()
