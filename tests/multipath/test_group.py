"""The grouping rule with marginal paths, under every path grouping policy: marginal paths sit in one
last-resort group after all others, which carries I/O only when no other group has a usable path."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanpath.multipath.device import MultipathDevice
from sanpath.multipath.group import group_paths
from sanpath.multipath.path import Path, PathSpec
from sanpath.multipath.policy import Policy
from sanpath.multipath.states import PathEventKind, PathState
from sanpath.multipath.status import render_topology, topology

POLICIES = ("multibus", "failover", "group_by_prio")
S = PathState


def make_paths(states: list[PathState], priorities: list[int] | None = None) -> list[Path]:
    prios = priorities or [1] * len(states)
    return [Path(PathSpec(f"127.0.0.{i + 1}", 3260, "iqn.2026-12.org.sanpath.test:g", 0), state=state,
                 priority=prio)
            for i, (state, prio) in enumerate(zip(states, prios, strict=True))]


def device(paths: list[Path], grouping: str) -> MultipathDevice:
    return MultipathDevice("36001405test", paths, replace(Policy(), path_grouping_policy=grouping),
                           size=1 << 20, block_size=512)


@pytest.mark.parametrize("grouping", POLICIES)
def test_marginal_paths_form_the_last_group(grouping: str) -> None:
    paths = make_paths([S.READY, S.MARGINAL, S.FAULTY, S.MARGINAL], [2, 9, 1, 1])
    groups = group_paths(paths, grouping)
    assert groups[-1].last_resort and groups[-1].paths == [paths[1], paths[3]]
    assert not any(g.last_resort for g in groups[:-1])
    assert all(p.state != S.MARGINAL for g in groups[:-1] for p in g.paths)
    assert sorted(id(p) for g in groups for p in g.paths) == sorted(id(p) for p in paths)  # each path once


@pytest.mark.parametrize("grouping", POLICIES)
def test_no_marginal_path_no_last_resort_group(grouping: str) -> None:
    assert not any(g.last_resort for g in group_paths(make_paths([S.READY, S.FAULTY]), grouping))


@pytest.mark.parametrize("grouping", POLICIES)
def test_the_last_resort_carries_io_only_when_nothing_else_can(grouping: str) -> None:
    steady, flapping = make_paths([S.READY, S.MARGINAL])
    dev = device([steady, flapping], grouping)
    assert dev.active_group is not None and dev.active_group.usable == [steady]
    assert steady.state == S.ACTIVE and flapping.state == S.MARGINAL

    dev.fail_path(steady, "pulled")
    assert dev.active_group is not None and dev.active_group.last_resort
    assert dev.active_group.usable == [flapping] and flapping.state == S.MARGINAL  # still shown as marginal
    assert [e.kind for e in dev.events if e.path == flapping.name] == [PathEventKind.LAST_RESORT]
    dev.choose_group()  # told again: no second event
    assert [e.kind for e in dev.events].count(PathEventKind.LAST_RESORT) == 1

    dev.reinstate_path(steady, "back")
    assert dev.active_group is not None and not dev.active_group.last_resort
    assert dev.active_group.usable == [steady] and steady.state == S.ACTIVE


@pytest.mark.parametrize("grouping", POLICIES)
def test_failback_manual_never_stays_on_the_last_resort(grouping: str) -> None:
    steady, flapping = make_paths([S.FAULTY, S.MARGINAL])
    dev = device([steady, flapping], grouping)
    dev.policy = replace(dev.policy, failback="manual")
    assert dev.active_group is not None and dev.active_group.last_resort
    dev.reinstate_path(steady, "back")
    assert dev.active_group is not None and dev.active_group.usable == [steady]


@pytest.mark.parametrize("grouping", POLICIES)
def test_a_marginal_path_that_recovers_rejoins_its_group(grouping: str) -> None:
    steady, flapping = make_paths([S.READY, S.MARGINAL])
    dev = device([steady, flapping], grouping)
    dev.reinstate_path(flapping, "hold over")
    assert flapping.state.usable and not any(g.last_resort for g in dev.groups)
    if grouping == "multibus":
        assert dev.active_group is not None and set(dev.active_group.usable) == {steady, flapping}


@pytest.mark.parametrize("grouping", POLICIES)
def test_a_marginal_path_that_fails_leaves_the_last_resort(grouping: str) -> None:
    steady, flapping = make_paths([S.FAULTY, S.MARGINAL])
    dev = device([steady, flapping], grouping)
    dev.fail_path(flapping, "again")
    assert flapping.state == S.FAULTY and dev.active_group is None
    assert not any(g.last_resort for g in dev.groups)


@given(st.sampled_from(POLICIES),
       st.lists(st.tuples(st.sampled_from([S.READY, S.GHOST, S.FAULTY, S.MARGINAL]), st.integers(0, 3)),
                min_size=1, max_size=6))
def test_grouping_rule_for_any_states(grouping: str, spec: list[tuple[PathState, int]]) -> None:
    paths = make_paths([s for s, _ in spec], [p for _, p in spec])
    dev = device(paths, grouping)
    steady_usable = [p for p in paths if p.state.usable]
    marginal = [p for p in paths if p.state == S.MARGINAL]
    group = dev.active_group
    if steady_usable:  # a steady path can serve: never the last resort
        assert group is not None and not group.last_resort and group.usable
        assert set(group.usable) <= set(steady_usable)
    elif marginal:
        assert group is not None and group.last_resort and set(group.usable) == set(marginal)
    else:
        assert group is None
    assert all(p.state in (S.ACTIVE, S.READY) for p in steady_usable)
    assert all(p.state == S.MARGINAL for p in marginal)


def test_status_shows_a_marginal_path_carrying_io() -> None:
    steady, flapping = make_paths([S.FAULTY, S.MARGINAL])
    dev = device([steady, flapping], "multibus")
    t = topology(dev)
    last = t["groups"][-1]
    assert last["last_resort"] and last["state"] == "active"
    assert [(p["state"], p["last_resort"]) for p in last["paths"]] == [("marginal", True)]
    text = render_topology(t)
    assert "status=active marginal (last resort)" in text
    assert f"{flapping.name} marginal, carrying I/O" in text
    dev.reinstate_path(steady, "back")
    assert not any(p["last_resort"] for g in topology(dev)["groups"] for p in g["paths"])
