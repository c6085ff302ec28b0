"""Path and path-group states, named as multipath-tools and DM-MP name them.

Path states (what the checker and the I/O path conclude):

- ``active``: usable and in the group that carries I/O now.
- ``ready``: usable, in a group that is not carrying I/O (failover or lower priority groups).
- ``ghost``: the array answers, but this path cannot carry I/O as things stand: the ALUA standby side,
  or the passive controller of an RDAC array. Not faulty: it can become active when the array moves
  ownership. A ghost path never counts as down.
- ``faulty``: failed: a transport error, a liveness timeout, or the checker found it dead.
- ``marginal``: came back, but failed too often within the flapping window; held out of service until
  the hold time passes (multipath-tools' "marginal path" idea).

XenServer counts a path as down when it is faulty (or shaky/failed in older releases); here faulty and
marginal are down, ghost is up but unused.
"""

from __future__ import annotations

from enum import StrEnum


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


class CheckResult(StrEnum):
    """What a checker says of one path."""

    UP = "up"
    DOWN = "down"
    GHOST = "ghost"  # the array answers but the path is not usable for I/O (standby / passive)


class GroupState(StrEnum):
    ACTIVE = "active"  # the group I/O goes to
    ENABLED = "enabled"  # usable, not chosen
    DISABLED = "disabled"  # no usable path
