"""``sanpath bench`` running in the lab's host namespace while a test pulls cables: its stderr (progress and
path events) collected line by line as it comes, so that the test can act on what the initiator sees."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from sanpath.lab import Lab

HANG_GUARD = 60.0


class LiveBench:
    """``sanpath bench`` running in the host namespace, its stderr (progress and path events) collected
    line by line as it comes, so the test can act on what the initiator sees."""

    def __init__(self, lab: Lab, targets: list[str], iqn: str, *, seconds: float,
                 settings: Sequence[str] = ()) -> None:
        """Verified 4 KiB random writes at QD 32 for ``seconds`` over every path from the host's storage
        NICs to ``targets``; ``settings`` are multipath ``KEY=VALUE`` overrides."""
        topo = lab.topology
        sources = ",".join(topo.host_address(k) for k in range(1, topo.subnets + 1))
        self.argv = [sys.executable, "-m", "sanpath", "bench", "--target", ",".join(targets), "--iqn", iqn,
                     "--source", sources, "--rw", "randwrite", "--bs", "4K", "--qd", "32",
                     "--time", f"{seconds:g}", "--verify", "--format", "json",
                     *(a for s in settings for a in ("--set", s))]
        self.proc = lab.popen_in("host", self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait(self, what: str, found: Callable[[list[str]], Any]) -> Any:
        """Wait until ``found(lines)`` returns something true; fail if the bench ends or hangs first."""
        deadline = time.monotonic() + HANG_GUARD
        with self.changed:
            while True:
                result = found(self.lines)
                if result:
                    return result
                if not self.reader.is_alive() or time.monotonic() > deadline:
                    ended = "the bench ended" if not self.reader.is_alive() else f"{HANG_GUARD:.0f} s passed"
                    pytest.fail(f"{ended} before {what}; stderr:\n" + "\n".join(self.lines[-40:]))
                self.changed.wait(0.2)

    def result(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout=HANG_GUARD)
        self.reader.join(timeout=5)
        stderr = "\n".join(self.lines[-40:])
        try:
            data: dict[str, Any] = json.loads(out)
        except ValueError:
            pytest.fail(f"sanpath bench (exit {code}) printed no JSON:\n{out[-2000:]}\nstderr:\n{stderr}")
        assert code == 0, f"sanpath bench exit {code}: {data.get('messages')}\nstderr:\n{stderr}"
        return data


def path_events(lines: list[str], kind: str) -> list[tuple[str, str]]:
    """(path, reason) of every ``kind`` event the bench printed, in order."""
    found = []
    for line in lines:
        # "sanpath bench: HH:MM:SS SRC->PORTAL/IQN/LUN: KIND (REASON)"
        words = line.split(" ", 3)
        if len(words) == 4 and f": {kind} (" in words[3]:
            path, reason = words[3].split(f": {kind} (", 1)
            found.append((path, reason.removesuffix(")")))
    return found


def failed_paths(lines: list[str], source: str, want: int) -> dict[str, str] | None:
    """{path: reason} of the "failed" events of paths leaving through ``source``, once ``want`` are seen."""
    failed = {path: reason for path, reason in path_events(lines, "failed") if path.startswith(f"{source}->")}
    return failed if len(failed) >= want else None


def timed_phase(bench: LiveBench) -> None:
    bench.wait("the timed phase", lambda lines: any("] run " in line for line in lines))


def longest_stall(result: dict[str, Any], start: float, end: float) -> float:
    """The longest gap (ms) with no I/O completing that began between the wall-clock times given."""
    return max((ms for began, ms in result["stalls"] if start <= began <= end), default=0.0)
