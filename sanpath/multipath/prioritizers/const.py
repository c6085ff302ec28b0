"""``const``: every path has priority 1 (multipath-tools' const). With group_by_prio this makes one
group, the same as multibus."""

from __future__ import annotations

from ..probe import PathProbe


class ConstPrioritizer:
    name = "const"
    options: tuple[str, ...] = ()

    async def priority(self, path: PathProbe, timeout: float) -> int:
        return 1
