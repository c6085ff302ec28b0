"""``round-robin 0``: the seed's selector. Each usable path of the group carries ``rr_min_io`` I/Os in
turn, then the next one does (DM-MP's round-robin with multipath.conf's rr_min_io).

sanpath's default is 1, as storage vendors advise for iSCSI (VMware's NMP switches every 1000 I/Os and
vendors tell users to set 1; multipath-tools' bio-based default is 1000): with small I/O counts per
path, several paths stay busy at once even for one sequential stream.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..path import Path


class RoundRobin:
    name = "round-robin"
    options: tuple[str, ...] = ("rr_min_io",)

    def __init__(self, *, rr_min_io: int = 1) -> None:
        if rr_min_io < 1:
            raise ValueError(f"rr_min_io must be at least 1, got {rr_min_io}")
        self.rr_min_io = rr_min_io
        self._current: Path | None = None
        self._count = 0  # I/Os started on _current since it was chosen

    def select(self, paths: Sequence[Path], nbytes: int) -> Path | None:
        if not paths:
            return None
        current = self._current
        if current is not None and self._count < self.rr_min_io and any(p is current for p in paths):
            return current
        # Next after the current one in the group's order; the first one when the current path left.
        index = next((i for i, p in enumerate(paths) if p is current), -1)
        self._current = paths[(index + 1) % len(paths)]
        self._count = 0
        return self._current

    def started(self, path: Path, nbytes: int) -> None:
        if path is self._current:
            self._count += 1

    def finished(self, path: Path, nbytes: int, seconds: float) -> None:
        pass
