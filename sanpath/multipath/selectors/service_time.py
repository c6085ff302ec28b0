"""``service-time 0``: the path whose queue would drain first (DM-MP's service-time selector).

DM scores a path as (bytes in flight + this I/O's bytes) / relative throughput, with the relative
throughput given by the user (``service-time 0`` sets 1 for every path, which reduces to "fewest bytes
in flight"). sanpath measures the throughput instead: each completed I/O updates a moving average of
bytes per second for its path. A path with no measurement yet is assumed as fast as the fastest measured
one, so it gets tried; with no measurements at all every path counts 1, exactly DM's rule.

Ties (equal score) go to the path with fewer I/Os in flight, then round robin, so idle paths share load.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..path import Path

ALPHA = 0.2  # weight of the newest sample in the throughput average: follows a change within ~10 I/Os
MIN_SECONDS = 1e-6  # a completion faster than this (clock resolution) counts as this long


class ServiceTime:
    name = "service-time"
    options: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._rate: dict[Path, float] = {}  # bytes per second, moving average
        self._start = 0

    def throughput(self, path: Path) -> float | None:
        """The measured bytes per second of ``path``, or None before its first completion."""
        return self._rate.get(path)

    def select(self, paths: Sequence[Path], nbytes: int) -> Path | None:
        if not paths:
            return None
        known = [r for p in paths if (r := self._rate.get(p)) is not None]
        unknown_rate = max(known) if known else 1.0
        n = len(paths)
        best: Path | None = None
        best_key: tuple[float, int] = (0.0, 0)
        for i in range(n):
            p = paths[(self._start + i) % n]
            rate = self._rate.get(p, unknown_rate) if known else 1.0
            key = ((p.inflight_bytes + nbytes) / rate, p.inflight)
            if best is None or key < best_key:
                best, best_key = p, key
        assert best is not None
        self._start = (next(i for i, p in enumerate(paths) if p is best) + 1) % n
        return best

    def started(self, path: Path, nbytes: int) -> None:
        pass

    def finished(self, path: Path, nbytes: int, seconds: float) -> None:
        if nbytes <= 0:
            return  # no data moved (e.g. a flush): says nothing about throughput
        sample = nbytes / max(seconds, MIN_SECONDS)
        old = self._rate.get(path)
        self._rate[path] = sample if old is None else old + ALPHA * (sample - old)
