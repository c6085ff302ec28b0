"""round-robin 0: each path carries rr_min_io I/Os in turn; a path that leaves the group is skipped."""

from __future__ import annotations

from collections import Counter

import pytest

from sanpath.multipath.path import Path
from sanpath.multipath.selectors import SELECTORS, RoundRobin, make_selector

from .plugin_helpers import bare_paths


def issue(selector: RoundRobin, paths: list[Path], count: int) -> list[Path]:
    chosen = []
    for _ in range(count):
        p = selector.select(paths, 4096)
        assert p is not None
        selector.started(p, 4096)
        selector.finished(p, 4096, 0.001)
        chosen.append(p)
    return chosen


def test_alternates_every_io_by_default() -> None:
    paths = bare_paths(2)
    chosen = issue(RoundRobin(), paths, 6)
    assert chosen == [paths[0], paths[1]] * 3


@pytest.mark.parametrize("rr_min_io", [1, 3, 1000])
def test_switches_after_rr_min_io(rr_min_io: int) -> None:
    paths = bare_paths(3)
    chosen = issue(RoundRobin(rr_min_io=rr_min_io), paths, 3 * rr_min_io)
    assert chosen == [p for p in paths for _ in range(rr_min_io)]


def test_even_distribution() -> None:
    paths = bare_paths(4)
    counts = Counter(issue(RoundRobin(rr_min_io=2), paths, 400))
    assert set(counts.values()) == {100}


def test_selection_not_started_does_not_count() -> None:
    paths = bare_paths(2)
    rr = RoundRobin(rr_min_io=2)
    assert rr.select(paths, 1) is paths[0]
    assert rr.select(paths, 1) is paths[0]  # nothing started yet: still the first path's turn
    rr.started(paths[0], 1)
    rr.started(paths[0], 1)
    assert rr.select(paths, 1) is paths[1]


def test_path_leaving_the_group_is_skipped() -> None:
    paths = bare_paths(3)
    rr = RoundRobin()
    assert issue(rr, paths, 2) == [paths[0], paths[1]]
    remaining = [paths[0], paths[2]]  # paths[1] failed while it was current
    assert issue(rr, remaining, 4) == [paths[0], paths[2], paths[0], paths[2]]


def test_empty_group() -> None:
    assert RoundRobin().select([], 512) is None


def test_registry_and_factory() -> None:
    assert SELECTORS["round-robin"] is RoundRobin
    rr = make_selector("round-robin 0", rr_min_io=5)
    assert isinstance(rr, RoundRobin) and rr.rr_min_io == 5
    with pytest.raises(ValueError, match="path_selector 'round-robbin 0'"):
        make_selector("round-robbin 0")
    with pytest.raises(ValueError, match="rr_min_io"):
        RoundRobin(rr_min_io=0)
