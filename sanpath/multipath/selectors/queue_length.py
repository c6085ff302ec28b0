"""``queue-length 0``: the path with the fewest I/Os in flight (DM-MP's queue-length selector).

Reads ``Path.inflight``, which the device keeps. Ties go round robin from the path after the last one
chosen, so idle paths share the load instead of the first path taking every I/O of a light workload.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..path import Path


class QueueLength:
    name = "queue-length"
    options: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._start = 0  # where the tie-breaking scan begins

    def select(self, paths: Sequence[Path], nbytes: int) -> Path | None:
        if not paths:
            return None
        n = len(paths)
        best = paths[self._start % n]
        for i in range(1, n):
            p = paths[(self._start + i) % n]
            if p.inflight < best.inflight:
                best = p
        self._start = (next(i for i, p in enumerate(paths) if p is best) + 1) % n
        return best

    def started(self, path: Path, nbytes: int) -> None:
        pass

    def finished(self, path: Path, nbytes: int, seconds: float) -> None:
        pass
