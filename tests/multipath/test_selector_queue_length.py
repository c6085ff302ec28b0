"""queue-length 0: the path with the fewest I/Os in flight; ties shared round robin."""

from __future__ import annotations

from collections import Counter

from sanpath.multipath.selectors import SELECTORS, QueueLength, make_selector

from .plugin_helpers import bare_paths


def test_picks_least_loaded() -> None:
    paths = bare_paths(3)
    paths[0].inflight, paths[1].inflight, paths[2].inflight = 5, 1, 3
    ql = QueueLength()
    for _ in range(5):
        assert ql.select(paths, 4096) is paths[1]


def test_follows_the_load_as_the_device_counts_it() -> None:
    paths = bare_paths(2)
    ql = QueueLength()
    chosen = []
    for _ in range(10):  # ten I/Os issued, none completed: the device keeps inflight
        p = ql.select(paths, 512)
        assert p is not None
        p.inflight += 1
        ql.started(p, 512)
        chosen.append(p)
    assert Counter(chosen) == {paths[0]: 5, paths[1]: 5}
    paths[0].inflight = 0  # path 0 drained; path 1 is stuck
    assert [ql.select(paths, 512) for _ in range(3)] == [paths[0]] * 3


def test_idle_paths_share_the_load() -> None:
    paths = bare_paths(3)
    ql = QueueLength()
    counts = Counter(ql.select(paths, 512) for _ in range(30))
    assert set(counts.values()) == {10}


def test_empty_group_and_registry() -> None:
    assert QueueLength().select([], 512) is None
    assert SELECTORS["queue-length"] is QueueLength
    assert isinstance(make_selector("queue-length 0", rr_min_io=7), QueueLength)
