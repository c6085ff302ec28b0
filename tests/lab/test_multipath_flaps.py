"""Flapping, correlated outages and array restarts in the namespace lab (issue 21's acceptance): two paths
from the host's two storage NICs to controller A of a tgtd array, verified 4 KiB random writes at queue
depth 32 with ``no_path_retry queue``, and:

- both host cables pulled together three times (2 s out, 4 s in): no error, no verify failure, no stall
  longer than the outage plus 1 s, I/O carried again after every restore, and no path held back as
  marginal (the outages are fabric-wide, not flapping);
- one path pulled three times within a minute turns marginal and I/O stays on the other; then the other
  is pulled and I/O moves to the marginal path at once (no stall beyond its detection by the link event);
- tgtd killed and started again 4 s later: every path carries I/O again within 1 s of tgtd taking logins.

The bounds are the issue's own (outage + 1 s, 1 s back after a restart) and far from what the code
needs (a link event fails a path within milliseconds, and a dead portal is tried every 0.25 s). Needs root,
iproute2 and tgtd (skips locally without them, fails under CI=true).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from sanpath.lab import Lab
from sanpath.testing.tgtd import RunningTgtd, run_tgtd
from tests.helpers.gates import require_lab, require_peer
from tests.helpers.lab import running_lab
from tests.helpers.livebench import LiveBench, failed_paths, longest_stall, path_events, timed_phase

IQN = "iqn.2026-12.org.sanpath.test:flaps"
QUEUE = ("no_path_retry=queue",)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Two storage subnets, controller A only: exactly one path per host NIC."""
    require_lab()
    require_peer("tgtd", "tgtadm", package="tgt")
    with running_lab(subnets=2, controllers=1, state_dir=str(tmp_path_factory.mktemp("lab"))) as lab:
        yield lab


@pytest.fixture
def backing(tmp_path: Path) -> str:
    path = tmp_path / "lun.img"
    with open(path, "wb") as f:
        f.truncate(64 << 20)
    return str(path)


def tgtd(lab: Lab, backing: str) -> AbstractContextManager[RunningTgtd]:
    return run_tgtd(backing, iqn=IQN, portals=[p for _, p in lab.topology.portals()], prefix=lab.prefix("array"))


def bench_on(lab: Lab, target: RunningTgtd, seconds: float, settings: tuple[str, ...] = QUEUE) -> LiveBench:
    bench = LiveBench(lab, [p.split(":")[0] for p in target.portals], IQN, seconds=seconds, settings=settings)
    timed_phase(bench)
    return bench


def carries_again(bench: LiveBench, after: int) -> None:
    """Wait until every path reinstated after the ``after``-th line carries I/O again."""
    def done(lines: list[str]) -> bool:
        back = {p for p, _ in path_events(lines[after:], "reinstated")}
        return len(back) == 2 and all(any(f"{p}: carries I/O again" in line for line in lines[after:]) for p in back)
    bench.wait("both paths carrying I/O again", done)


def verified(result: dict[str, Any]) -> None:
    assert result["errors"] == 0, result["messages"]
    assert result["verify_failures"] == 0, result["messages"]
    assert result["stopped_early"] == ""


def test_both_cables_pulled_together_three_times(lab: Lab, backing: str) -> None:
    with tgtd(lab, backing) as target:
        bench = bench_on(lab, target, seconds=22)
        outages = []
        for _ in range(3):
            mark = len(bench.lines)
            pulled = time.time()
            lab.pull("host-s1")
            lab.pull("host-s2")
            time.sleep(2)
            lab.restore("host-s1")
            lab.restore("host-s2")
            outages.append((pulled, time.time()))
            carries_again(bench, mark)
            time.sleep(max(0.0, pulled + 6 - time.time()))  # 4 s in, counted from the pull
        result = bench.result()
    verified(result)
    for pulled, restored in outages:
        stall = longest_stall(result, pulled - 0.5, restored + 1)
        print(f"outage of {restored - pulled:.2f} s: longest stall {stall:.0f} ms")
        assert stall <= (restored - pulled + 1) * 1000, (stall, result["stalls"])
    events = path_events(bench.lines, "correlated")
    assert len(events) == 3, events  # each outage was counted once, as fabric-wide
    assert not path_events(bench.lines, "marginal"), "a fabric-wide outage made a path marginal"
    assert all(p["state"] == "active" for p in result["per_path"].values())


def test_a_flapping_path_is_the_last_resort(lab: Lab, backing: str) -> None:
    s1, s2 = lab.topology.host_address(1), lab.topology.host_address(2)
    with tgtd(lab, backing) as target:
        bench = bench_on(lab, target, seconds=12)
        for n in range(3):  # three single pulls of the path through s1, within a minute
            lab.pull("host-s1")
            try:
                bench.wait(f"pull {n + 1} failing the s1 path",
                           lambda lines, n=n: len([1 for p, _ in path_events(lines, "failed")
                                                   if p.startswith(f"{s1}->")]) > n)
            finally:
                lab.restore("host-s1")
            if n < 2:
                bench.wait("the s1 path back", lambda lines, n=n: len([1 for p, _ in path_events(lines, "reinstated")
                                                                    if p.startswith(f"{s1}->")]) > n)
        held = bench.wait("the s1 path held back as marginal",
                          lambda lines: [p for p, _ in path_events(lines, "marginal") if p.startswith(f"{s1}->")])
        mark = len(bench.lines)
        time.sleep(1)  # I/O meanwhile stays on the steady path
        pulled = time.time()
        lab.pull("host-s2")
        try:
            bench.wait("the marginal path carrying I/O as the last resort",
                       lambda lines: [p for p, _ in path_events(lines[mark:], "last-resort") if p in held])
            time.sleep(2)  # I/O runs on the marginal path alone
        finally:
            lab.restore("host-s2")
        result = bench.result()
    verified(result)
    assert not any(p.startswith(f"{s2}->") for p, _ in path_events(bench.lines[:mark], "failed"))
    failed_s2 = failed_paths(bench.lines[mark:], s2, 1)
    assert failed_s2 and all("(netlink)" in r for r in failed_s2.values()), failed_s2
    stall = longest_stall(result, pulled - 0.5, pulled + 2)
    print(f"the steady path pulled: longest stall {stall:.0f} ms")
    assert stall < 1000, (stall, result["stalls"])  # detection by the link event, then the marginal path


def test_array_restart_paths_back_within_a_second_of_logins(lab: Lab, backing: str) -> None:
    with tgtd(lab, backing) as first:
        bench = bench_on(lab, first, seconds=10)
        mark = len(bench.lines)
        first.process.kill()
        first.process.wait(timeout=10)
        bench.wait("both paths failed", lambda lines: len(path_events(lines[mark:], "failed")) >= 2)
        time.sleep(4)
        with tgtd(lab, backing):
            ready = time.time()
            carries_again(bench, mark)
            result = bench.result()
    verified(result)
    back = [f for f in result["failbacks"] if f["reinstated"] >= ready - 5]
    assert {f["path"] for f in back} == set(result["per_path"]), result["failbacks"]
    for f in back:
        print(f"{f['path']}: first I/O {f['first_io'] - ready:+.3f} s after tgtd took logins")
        assert f["first_io"] is not None and f["first_io"] - ready <= 1.0, (f, ready)
