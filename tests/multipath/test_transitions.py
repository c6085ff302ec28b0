"""The path state machine: every legal move of the table, the refusal of every other, and what a move
records (reason, event, failure count)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanpath.errors import LocalProtocolError
from sanpath.multipath.path import Path, PathEvent, PathSpec
from sanpath.multipath.states import (
    QUIET,
    TRANSITIONS,
    PathEventKind,
    PathState,
    PathTransitionError,
    back_in_service,
    next_state,
)
from sanpath.testing.inproc import TEST_IQN

S, E = PathState, PathEventKind

LEGAL = [(state, kind, target) for state, moves in TRANSITIONS.items() for kind, target in moves.items()]
ILLEGAL = [(state, kind) for state in S for kind in E if kind not in TRANSITIONS[state]]

EXPECTED = {
    (S.ACTIVE, E.FAILED): S.FAULTY, (S.ACTIVE, E.GHOST): S.GHOST, (S.ACTIVE, E.GROUP_STANDBY): S.READY,
    (S.READY, E.FAILED): S.FAULTY, (S.READY, E.GHOST): S.GHOST, (S.READY, E.GROUP_ACTIVE): S.ACTIVE,
    (S.GHOST, E.FAILED): S.FAULTY, (S.GHOST, E.GHOST): S.GHOST, (S.GHOST, E.ACCESSIBLE): S.READY,
    (S.FAULTY, E.GHOST): S.GHOST, (S.FAULTY, E.MARGINAL): S.MARGINAL, (S.FAULTY, E.REINSTATED): S.READY,
    (S.FAULTY, E.RELOGIN_FAILED): S.FAULTY,
    (S.MARGINAL, E.FAILED): S.FAULTY, (S.MARGINAL, E.GHOST): S.GHOST, (S.MARGINAL, E.REINSTATED): S.READY,
}


def make_path(state: PathState, reason: str = "start") -> tuple[Path, list[PathEvent]]:
    events: list[PathEvent] = []
    path = Path(PathSpec("127.0.0.1", 3260, TEST_IQN, 0), state=state, reason=reason, on_event=events.append)
    return path, events


def test_the_table_is_exactly_the_documented_moves() -> None:
    assert {(s, k): t for s, k, t in LEGAL} == EXPECTED
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(("state", "kind", "target"), LEGAL, ids=[f"{s}-{k.name}" for s, k, _ in LEGAL])
def test_every_legal_transition(state: PathState, kind: PathEventKind, target: PathState) -> None:
    path, events = make_path(state)
    before = path.since
    path.apply(kind, "why")
    assert (path.state, path.reason) == (target, "why")
    if kind in QUIET:
        assert events == [] and path.since == before
    else:
        assert [(e.kind, e.reason, e.state, e.path) for e in events] == [(kind, "why", target.value, path.name)]
    assert len(path.failures) == (1 if target == S.FAULTY and state != S.FAULTY else 0)


@pytest.mark.parametrize(("state", "kind"), ILLEGAL, ids=[f"{s}-{k.name}" for s, k in ILLEGAL])
def test_every_other_pair_is_refused_naming_event_and_state(state: PathState, kind: PathEventKind) -> None:
    path, events = make_path(state)
    with pytest.raises(PathTransitionError) as info:
        path.apply(kind, "why")
    assert f"'{kind.value}'" in str(info.value) and f"state '{state.value}'" in str(info.value)
    assert (path.state, path.reason, events) == (state, "start", [])


def test_a_usable_path_cannot_turn_marginal() -> None:
    refused = r"path event 'marginal' \(MARGINAL\) is not allowed in state 'active'"
    with pytest.raises(LocalProtocolError, match=refused):
        next_state(S.ACTIVE, E.MARGINAL)


def test_news_kinds_never_move_a_path() -> None:
    for kind in (E.ADDED, E.ACTIVATE, E.FENCED):
        assert all(kind not in moves for moves in TRANSITIONS.values())


def test_being_told_again_is_no_news_but_a_new_reason_is() -> None:
    path, events = make_path(S.GHOST, "standby")
    path.apply(E.GHOST, "standby")
    assert events == []
    path.apply(E.GHOST, "unavailable")
    assert [(e.kind, e.reason) for e in events] == [(E.GHOST, "unavailable")]


def test_group_moves_keep_the_reason() -> None:
    path, events = make_path(S.READY, "checker up")
    path.apply(E.GROUP_ACTIVE)
    assert (path.state, path.reason, events) == (S.ACTIVE, "checker up", [])


def test_back_in_service() -> None:
    assert back_in_service(S.GHOST) == E.ACCESSIBLE
    assert back_in_service(S.FAULTY) == back_in_service(S.MARGINAL) == E.REINSTATED
    for state in (S.GHOST, S.FAULTY, S.MARGINAL):
        assert next_state(state, back_in_service(state)) == S.READY


@given(st.lists(st.sampled_from(list(E)), max_size=40))
def test_any_event_sequence_follows_the_table(kinds: list[PathEventKind]) -> None:
    path, events = make_path(S.FAULTY)
    expected: list[tuple[PathEventKind, str, str]] = []
    failures = 0
    for step, kind in enumerate(kinds):
        old, want, reason = path.state, TRANSITIONS[path.state].get(kind), f"step {step}"
        if want is None:
            with pytest.raises(PathTransitionError):
                path.apply(kind, reason)
            assert path.state == old
            continue
        path.apply(kind, reason)
        assert (path.state, path.reason) == (want, reason)
        failures += want == S.FAULTY and old != S.FAULTY
        if kind not in QUIET:
            expected.append((kind, reason, want.value))
    assert [(e.kind, e.reason, e.state) for e in events] == expected
    assert len(path.failures) == min(failures, 32)
