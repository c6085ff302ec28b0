"""The initiator suite runs the two clients in alternating order, round by round, and still runs each once
per workload in every round; the clients are replaced by stand-ins that record who ran (no target needed)."""

from __future__ import annotations

from benchmarks import initiator
from benchmarks.contenders import Contender
from benchmarks.initiator import OURS, PEER, BenchSample
from benchmarks.iscsi_perf import WORKLOADS, PerfSample


def test_clients_alternate_who_goes_first(monkeypatch) -> None:
    calls: list[str] = []

    def peer(url, workload, seconds):
        calls.append(PEER)
        return PerfSample(1000, workload.blocks * 512)

    def ours(url, workload, transfer, seconds, lun_bytes):
        calls.append(OURS)
        return BenchSample(1000, transfer, 10.0, 20.0)

    monkeypatch.setattr(initiator.iscsi_perf, "run", peer)
    monkeypatch.setattr(initiator, "run", ours)
    target = Contender("tgtd", "iscsi://127.0.0.1/iqn.x/1", lambda: "")
    runs, failures = initiator.run_suite([target], [(0, 1), (1, 1), (2, 1), (3, 1)], lun_bytes=1 << 20,
                                         say=lambda _: None, failure=lambda *a: "")
    assert not failures
    firsts = calls[::2]
    per_round = len(WORKLOADS)
    assert firsts == [PEER] * per_round + [PEER] * per_round + [OURS] * per_round + [PEER] * per_round
    # every round still holds one run of each client per workload
    for round_no in range(4):
        got = sorted((r.workload.key, r.client) for r in runs if r.round == round_no)
        assert got == sorted((w.key, c) for w in WORKLOADS for c in (PEER, OURS))
