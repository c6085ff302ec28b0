"""Path groups and the grouping policies (DM-MP's priority groups): multibus puts every path in one
group (the seed's active-active round robin), failover makes one group per path, group_by_prio one group
per priority value. Groups are ordered best first; the device sends I/O to one group at a time.

Under every policy, marginal paths are taken out of their groups and put together in one last group,
the last resort (``states`` module, "Flapping"): it is usable only by what it holds, marginal paths,
and the device turns to it only when no other group has a usable path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .path import Path
from .states import GroupState, PathState


@dataclass(eq=False)
class PathGroup:
    paths: list[Path] = field(default_factory=list)
    last_resort: bool = False  # the group of marginal paths

    @property
    def priority(self) -> int:
        """The group's priority: the sum over its up paths, as multipath-tools computes it."""
        return sum(p.priority for p in self.paths if p.state.up)

    @property
    def usable(self) -> list[Path]:
        """The paths that can take I/O when this group has its turn (a marginal path only here)."""
        if self.last_resort:
            return [p for p in self.paths if p.state == PathState.MARGINAL or p.state.usable]
        return [p for p in self.paths if p.state.usable]

    @property
    def ghosts(self) -> list[Path]:
        return [p for p in self.paths if p.state == PathState.GHOST]

    def state(self, active: bool) -> GroupState:
        if not self.usable:
            return GroupState.DISABLED
        return GroupState.ACTIVE if active else GroupState.ENABLED


def group_paths(paths: Sequence[Path], policy: str) -> list[PathGroup]:
    """Arrange paths in groups, best group first (ties keep the given order), the marginal ones last."""
    marginal = [p for p in paths if p.state == PathState.MARGINAL]
    groups = _by_policy([p for p in paths if p.state != PathState.MARGINAL], policy)
    return [*groups, PathGroup(marginal, last_resort=True)] if marginal else groups


def _by_policy(paths: Sequence[Path], policy: str) -> list[PathGroup]:
    if policy == "multibus":
        groups = [PathGroup(list(paths))] if paths else []
    elif policy == "failover":
        groups = [PathGroup([p]) for p in paths]
    elif policy == "group_by_prio":
        by: dict[int, list[Path]] = {}
        for p in paths:
            by.setdefault(p.priority, []).append(p)
        groups = [PathGroup(ps) for _, ps in sorted(by.items(), key=lambda kv: -kv[0])]
    else:
        raise ValueError(f"path_grouping_policy {policy!r}: use multibus, failover or group_by_prio")
    if policy == "failover":
        groups.sort(key=lambda g: -g.paths[0].priority)  # by the path's priority, not its state
    return groups
