"""The initiator suite runs the two clients in alternating order, round by round, and pairs each round's
two results; the clients are replaced by stand-ins that record when they ran (no target needed)."""

from __future__ import annotations

from benchmarks import initiator
from benchmarks.contenders import Contender
from benchmarks.initiator import OURS, PEER, BenchSample
from benchmarks.iscsi_perf import WORKLOADS, PerfSample


def test_clients_alternate_who_goes_first(monkeypatch) -> None:
    calls: list[tuple[str, str]] = []
    iops = iter(range(1000, 100000, 10))

    def peer(url, workload, seconds):
        calls.append((workload.key, PEER))
        return PerfSample(next(iops), workload.blocks * 512)

    def ours(url, workload, transfer, seconds, lun_bytes):
        calls.append((workload.key, OURS))
        return BenchSample(next(iops), transfer, 10.0, 20.0)

    monkeypatch.setattr(initiator.iscsi_perf, "run", peer)
    monkeypatch.setattr(initiator, "run", ours)
    target = Contender("tgtd", "iscsi://127.0.0.1/iqn.x/1", lambda: "")
    runs, failures = initiator.run_suite([target], [(0, 1), (1, 1), (2, 1), (3, 1)], lun_bytes=1 << 20,
                                         say=lambda _: None, failure=lambda *a: "")
    assert not failures
    firsts = [calls[i][1] for i in range(0, len(calls), 2)]
    per_round = len(WORKLOADS)
    assert firsts == [PEER] * per_round + [PEER] * per_round + [OURS] * per_round + [PEER] * per_round
    # every round still holds one run of each client per workload
    for round_no in range(4):
        got = sorted((r.workload.key, r.client) for r in runs if r.round == round_no)
        assert got == sorted((w.key, c) for w in WORKLOADS for c in (PEER, OURS))
