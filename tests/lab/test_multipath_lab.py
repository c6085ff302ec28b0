"""Multipath in the namespace lab (issue 6's acceptance): ``sanpath bench`` in the host namespace runs
verified 4 KiB random writes at queue depth 32 over every path to an array in the array namespace (tgtd,
then the sanpath target), a cable is pulled and plugged back in during the run, and:

- no I/O fails and no verify check fails (the write read-back at the end checks every unit written);
- the dead paths are failed by the host NIC's link event when the host's cable is pulled, and by liveness
  (NOP-Out or the path checker) when the far side goes dark, never by a TCP timeout;
- after the restore, each restored path carries I/O again: the bench reports, per reinstatement, the
  wall-clock time of the path's first completed I/O after it, and that must come after the restore.

No timing is asserted: the test waits for what the bench reports on stderr as it happens (path events
and "carries I/O again"), bounded only by a hang guard. Needs root and iproute2 (skips locally without
them, fails under CI=true); tgtd's half also needs tgtd.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sanpath.lab import Lab
from sanpath.target.spawn import serve_target
from sanpath.testing.tgtd import run_tgtd
from tests.helpers.gates import require_lab, require_peer
from tests.helpers.lab import running_lab
from tests.helpers.livebench import LiveBench, failed_paths, timed_phase

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


def pull_and_restore(lab: Lab, bench: LiveBench, link: str, source: str, paths: int) -> tuple[dict[str, str], float]:
    """Pull ``link`` during the timed phase, wait until the bench fails the ``paths`` paths through
    ``source``, plug it back in and wait until each of them carries I/O again. Returns the failure reasons
    and the wall-clock time of the restore."""
    timed_phase(bench)
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


def check(result: dict[str, Any], reasons: dict[str, str], restored: float, paths: int, *, host_side: bool) -> None:
    assert result["errors"] == 0, result["messages"]
    assert result["verify_failures"] == 0, result["messages"]
    assert result["verify_reads"] > 0  # the read-back after the run checked what was written
    assert result["stopped_early"] == ""
    assert len(result["per_path"]) == paths, result["topology"]
    assert all(p["state"] == "active" for p in result["per_path"].values()), result["topology"]
    for path, reason in reasons.items():
        if host_side:  # the host's own NIC lost carrier: the kernel's link event failed the path, at once
            assert "lost carrier (netlink)" in reason, f"{path} failed by {reason!r}, not by the link event"
        else:  # the far side went dark: a NOP-Out went unanswered, or the checker's command did
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
        bench = LiveBench(lab, [p.split(":")[0] for p in target.portals], IQN_TGTD, seconds=SECONDS)
        reasons, restored = pull_and_restore(lab, bench, "host-s1", lab.topology.host_address(1), paths=2)
        check(bench.result(), reasons, restored, paths=4, host_side=True)


def test_sanpath_target_cable_pull_during_verified_random_writes(lab: Lab) -> None:
    """The sanpath target (portal profile) on all four controller addresses; controller A's cable on
    subnet 2 is pulled at the switch: exactly one path goes black."""
    portals = [p for _, p in lab.topology.portals()]
    args = ["--iqn", IQN_SANPATH, *(a for p in portals for a in ("--portal", p)), "--lun", "mem:64MiB"]
    with serve_target(*args, prefix=lab.prefix("array")) as target:
        # discovery on one address finds every portal: the sanpath target answers SendTargets with all
        bench = LiveBench(lab, [target.portals[0].split(":")[0]], IQN_SANPATH, seconds=SECONDS)
        a2 = lab.topology.controller_address("A", 2)
        reasons, restored = pull_and_restore(lab, bench, "ctlA-s2", lab.topology.host_address(2), paths=1)
        assert all(f"->{a2}:" in path for path in reasons), reasons
        check(bench.result(), reasons, restored, paths=4, host_side=False)
