"""Multipath in the namespace lab (issue 6's acceptance): ``sanpath bench`` in the host namespace runs
verified 4 KiB random writes at queue depth 32 over every path to an array in the array namespace (tgtd,
then the sanpath target), a cable is pulled and plugged back in during the run, and:

- no I/O fails and no verify check fails (the write read-back at the end checks every unit written);
- the dead paths are failed by liveness (NOP-Out or the path checker), not by a TCP timeout;
- after the restore, each restored path carries I/O again: the bench reports, per reinstatement, the
  wall-clock time of the path's first completed I/O after it, and that must come after the restore.

No timing is asserted: the test waits for what the bench reports on stderr as it happens (path events
and "carries I/O again"), bounded only by a hang guard. Needs root and iproute2 (skips locally without
them, fails under CI=true); tgtd's half also needs tgtd.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sanpath.lab import Lab
from sanpath.target.spawn import serve_target
from sanpath.testing.tgtd import run_tgtd
from tests.helpers.gates import require_lab, require_peer
from tests.helpers.lab import running_lab

IQN_TGTD = "iqn.2026-11.org.sanpath.test:lab-tgtd"
IQN_SANPATH = "iqn.2026-11.org.sanpath.test:lab-sanpath"
SECONDS = 12  # the bench's timed phase: the pull, the restore and the failback all fit well inside it
HANG_GUARD = 60.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The seed's reference topology: host NICs on subnets 1 and 2, controllers A and B on both."""
    require_lab()
    with running_lab(subnets=2, controllers=2, state_dir=str(tmp_path_factory.mktemp("lab"))) as lab:
        yield lab


class LiveBench:
    """``sanpath bench`` running in the host namespace, its stderr (progress and path events) collected
    line by line as it comes, so the test can act on what the initiator sees."""

    def __init__(self, lab: Lab, targets: list[str], iqn: str) -> None:
        topo = lab.topology
        sources = ",".join(topo.host_address(k) for k in range(1, topo.subnets + 1))
        self.argv = [sys.executable, "-m", "sanpath", "bench", "--target", ",".join(targets), "--iqn", iqn,
                     "--source", sources, "--rw", "randwrite", "--bs", "4K", "--qd", "32",
                     "--time", str(SECONDS), "--verify", "--format", "json"]
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


def failed_paths(lines: list[str], source: str, want: int) -> dict[str, str] | None:
    """{path: reason} of the "failed" events of paths leaving through ``source``, once ``want`` are seen."""
    failed = {}
    for line in lines:
        # "sanpath bench: HH:MM:SS SRC->PORTAL/IQN/LUN: failed (REASON)"
        words = line.split(" ", 3)
        if len(words) == 4 and words[3].startswith(f"{source}->") and ": failed (" in words[3]:
            path, reason = words[3].split(": failed (", 1)
            failed[path] = reason.rstrip(")")
    return failed if len(failed) >= want else None


def pull_and_restore(lab: Lab, bench: LiveBench, link: str, source: str, paths: int) -> tuple[dict[str, str], float]:
    """Pull ``link`` during the timed phase, wait until the bench fails the ``paths`` paths through
    ``source``, plug it back in and wait until each of them carries I/O again. Returns the failure reasons
    and the wall-clock time of the restore."""
    bench.wait("the timed phase", lambda lines: any("] run " in line for line in lines))
    lab.pull(link)
    try:
        reasons = bench.wait(f"{paths} paths through {source} failed after pulling {link}",
                             lambda lines: failed_paths(lines, source, paths))
    finally:
        lab.restore(link)
    restored = time.time()
    for path in reasons:
        bench.wait(f"{path} carrying I/O again after the restore",
                   lambda lines, path=path: any(f"{path}: carries I/O again" in line for line in lines))
    return reasons, restored


def check(result: dict[str, Any], reasons: dict[str, str], restored: float, paths: int) -> None:
    assert result["errors"] == 0, result["messages"]
    assert result["verify_failures"] == 0, result["messages"]
    assert result["verify_reads"] > 0  # the read-back after the run checked what was written
    assert result["stopped_early"] == ""
    assert len(result["per_path"]) == paths, result["topology"]
    assert all(p["state"] == "active" for p in result["per_path"].values()), result["topology"]
    for path, reason in reasons.items():
        # liveness found the black hole: a NOP-Out went unanswered, or the checker's command did
        assert "NOP-Out" in reason or "checker" in reason, f"{path} failed by {reason!r}, not by liveness"
        after = [f for f in result["failbacks"] if f["path"] == path and f["first_io"] is not None
                 and f["first_io"] >= restored]
        assert after, f"{path}: no I/O after the restore: {result['failbacks']}\n{result['topology']}"


def test_tgtd_cable_pull_during_verified_random_writes(lab: Lab, tmp_path: Path) -> None:
    """tgtd serving one LUN through all four controller addresses; the host's cable on subnet 1 is
    pulled at the switch (its NIC loses carrier: both paths through it go black)."""
    require_peer("tgtd", "tgtadm", package="tgt")
    backing = tmp_path / "lun.img"
    with open(backing, "wb") as f:
        f.truncate(64 << 20)
    portals = [p for _, p in lab.topology.portals()]
    with run_tgtd(str(backing), iqn=IQN_TGTD, portals=portals, prefix=lab.prefix("array")) as target:
        # tgtd's SendTargets names only the portal asked, so the host is given every address
        bench = LiveBench(lab, [p.split(":")[0] for p in target.portals], IQN_TGTD)
        reasons, restored = pull_and_restore(lab, bench, "host-s1", lab.topology.host_address(1), paths=2)
        check(bench.result(), reasons, restored, paths=4)


def test_sanpath_target_cable_pull_during_verified_random_writes(lab: Lab) -> None:
    """The sanpath target (portal profile) on all four controller addresses; controller A's cable on
    subnet 2 is pulled at the switch: exactly one path goes black."""
    portals = [p for _, p in lab.topology.portals()]
    args = ["--iqn", IQN_SANPATH, *(a for p in portals for a in ("--portal", p)), "--lun", "mem:64MiB"]
    with serve_target(*args, prefix=lab.prefix("array")) as target:
        # discovery on one address finds every portal: the sanpath target answers SendTargets with all
        bench = LiveBench(lab, [target.portals[0].split(":")[0]], IQN_SANPATH)
        a2 = lab.topology.controller_address("A", 2)
        reasons, restored = pull_and_restore(lab, bench, "ctlA-s2", lab.topology.host_address(2), paths=1)
        assert all(f"->{a2}:" in path for path in reasons), reasons
        check(bench.result(), reasons, restored, paths=4)
