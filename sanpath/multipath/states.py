"""Path and path-group states, named as multipath-tools and DM-MP name them.

Path states (what the checker and the I/O path conclude):

- ``active``: usable and in the group that carries I/O now.
- ``ready``: usable, in a group that is not carrying I/O (failover or lower priority groups).
- ``ghost``: the array answers, but this path cannot carry I/O as things stand: the ALUA standby side,
  or the passive controller of an RDAC array. Not faulty: it can become active when the array moves
  ownership. A ghost path never counts as down.
- ``faulty``: failed: a transport error, a liveness timeout, or the checker found it dead.
- ``marginal``: came back, but failed too often within the flapping window; held back until the hold
  time passes (multipath-tools' "marginal path" idea).

XenServer counts a path as down when it is faulty (or shaky/failed in older releases); here faulty and
marginal are down, ghost is up but unused.

Flapping (marginal paths)
-------------------------
A path that fails ``marginal_failures`` times within ``marginal_window`` and comes back is marginal
for ``marginal_hold``: the array answers through it, but it is not trusted with I/O while a steadier
path can carry it. Two rules keep that from ever costing availability:

1. A marginal path is a last resort, never a reason to queue. Marginal paths form a group of their
   own, after every other group under each grouping policy (multibus, failover, group_by_prio); that
   group carries I/O only when no other group has a usable path, and the event log says so
   (``last-resort``). As soon as any other path is usable again, I/O leaves the marginal group.
2. Failures that every path shares do not count as flapping. When the last path of a device that was
   still alive fails and every path's latest failure falls within ``CORRELATED_WINDOW`` seconds, the
   array or the fabric failed, not the paths: those failures are taken back from every path's count
   (``correlated``), so that an array restart or a switch pair rebooting never makes all paths marginal.

How a path moves between these states is the table ``TRANSITIONS`` below, driven by ``PathEventKind``
events; ``Path.apply`` is the only code that changes a path's state or reason.
"""

from __future__ import annotations

from enum import StrEnum

from ..errors import LocalProtocolError


class PathState(StrEnum):
    ACTIVE = "active"
    READY = "ready"
    GHOST = "ghost"
    FAULTY = "faulty"
    MARGINAL = "marginal"

    @property
    def up(self) -> bool:
        return self in (PathState.ACTIVE, PathState.READY, PathState.GHOST)

    @property
    def usable(self) -> bool:
        """Can carry I/O now (in its group's turn)."""
        return self in (PathState.ACTIVE, PathState.READY)

    @property
    def alive(self) -> bool:
        """The array answers through it: up, or marginal (held back, but working)."""
        return self is not PathState.FAULTY


class CheckResult(StrEnum):
    """What a checker says of one path."""

    UP = "up"
    DOWN = "down"
    GHOST = "ghost"  # the array answers but the path is not usable for I/O (standby / passive)


class GroupState(StrEnum):
    ACTIVE = "active"  # the group I/O goes to
    ENABLED = "enabled"  # usable, not chosen
    DISABLED = "disabled"  # no usable path


# --- the path state machine -------------------------------------------------------------------------


class PathEventKind(StrEnum):
    """What happened to a path. The kinds in ``TRANSITIONS`` move its state (``Path.apply``); the others
    are news about a path that leave its state alone. The values are what event logs and the API show."""

    FAILED = "failed"  # a transport error, a liveness timeout, a dead session, or the checker said down
    REINSTATED = "reinstated"  # a faulty or marginal path is usable again
    ACCESSIBLE = "state"  # a ghost (standby / passive) path is usable: the array moved access to its port
    GHOST = "ghost"  # the array answers through the path but will not do I/O there now
    MARGINAL = "marginal"  # came back after failing too often within the flapping window: held out
    GROUP_ACTIVE = "group-active"  # its group now carries I/O (quiet: not news about the path)
    GROUP_STANDBY = "group-standby"  # its group no longer carries I/O (quiet)
    RELOGIN_FAILED = "relogin-failed"  # still faulty; the reason says why the re-login failed (quiet)
    ADDED = "added"  # joined the device
    ACTIVATE = "activate"  # the hardware handler was asked to make the ghost path usable
    FENCED = "fenced"  # no command of the failed path can execute any more
    LAST_RESORT = "last-resort"  # a marginal path carries I/O: no other path can
    CORRELATED = "correlated"  # every path failed at once: not counted towards flapping


_S, _E = PathState, PathEventKind

TRANSITIONS: dict[PathState, dict[PathEventKind, PathState]] = {
    _S.ACTIVE: {_E.FAILED: _S.FAULTY, _E.GHOST: _S.GHOST, _E.GROUP_STANDBY: _S.READY},
    _S.READY: {_E.FAILED: _S.FAULTY, _E.GHOST: _S.GHOST, _E.GROUP_ACTIVE: _S.ACTIVE},
    _S.GHOST: {_E.FAILED: _S.FAULTY, _E.GHOST: _S.GHOST, _E.ACCESSIBLE: _S.READY},
    _S.FAULTY: {_E.GHOST: _S.GHOST, _E.MARGINAL: _S.MARGINAL, _E.REINSTATED: _S.READY,
                _E.RELOGIN_FAILED: _S.FAULTY},
    _S.MARGINAL: {_E.FAILED: _S.FAULTY, _E.GHOST: _S.GHOST, _E.REINSTATED: _S.READY},
}
"""(state, event) -> next state: every way a path's state can move. A usable path joins the active group
as ``ready`` and the device moves it between ready and active as groups take turns; only a faulty path
can turn marginal; a ghost's reason may change while it stays a ghost (the array said why, again)."""

CORRELATED_WINDOW = 5.0
"""Seconds within which the latest failures of every path of a device count as one array- or fabric-wide
event (rule 2 above): wide enough for paths whose loss is detected by different means (a link event, a
NOP-Out timeout, a checker round), narrow enough that unrelated failures seconds apart stay counted."""

QUIET = frozenset({_E.GROUP_ACTIVE, _E.GROUP_STANDBY, _E.RELOGIN_FAILED})
"""Transitions that are no news: no event, and the time the path entered its state stays."""


class PathTransitionError(LocalProtocolError):
    """A path was told of an event its state has no transition for (a bug of ours, not the array's)."""


def next_state(state: PathState, kind: PathEventKind) -> PathState:
    """The state after ``kind`` in ``state``; ``PathTransitionError`` naming both when there is none."""
    try:
        return TRANSITIONS[state][kind]
    except KeyError:
        raise PathTransitionError(f"path event {kind.value!r} ({kind.name}) is not allowed in state "
                                  f"{state.value!r}") from None


def back_in_service(state: PathState) -> PathEventKind:
    """The event that makes a path in ``state`` usable again: a ghost becomes accessible; a faulty or
    marginal path is reinstated (only the latter counts as a recovery from failure)."""
    return _E.ACCESSIBLE if state == _S.GHOST else _E.REINSTATED
