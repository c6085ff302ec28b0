"""Path selectors: which path of the active group carries the next I/O (DM-MP's path selectors).

Each selector is one small module with a class implementing ``Selector``; ``SELECTORS`` (a
``registry.Registry``) maps the multipath.conf name to the class. A selector sees only the usable paths of one group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..path import Path
from ..registry import Registry


class Selector(Protocol):
    name: str
    options: tuple[str, ...]

    def select(self, paths: Sequence[Path], nbytes: int) -> Path | None:
        """The path for an I/O of ``nbytes`` among ``paths`` (all usable), or None if empty."""
        ...

    def started(self, path: Path, nbytes: int) -> None:
        """An I/O was issued on ``path``."""
        ...

    def finished(self, path: Path, nbytes: int, seconds: float) -> None:
        """An I/O on ``path`` completed after ``seconds``."""
        ...


from .queue_length import QueueLength  # noqa: E402  (the registry needs the Protocol above first)
from .round_robin import RoundRobin  # noqa: E402
from .service_time import ServiceTime  # noqa: E402

SELECTORS: Registry[Selector] = Registry("path_selector", RoundRobin, QueueLength, ServiceTime)
"""Selector name (multipath.conf's path_selector is the name and DM's ignored argument count, "round-robin
0"; the lookup takes the first word) -> class."""


def make_selector(path_selector: str, *, rr_min_io: int = 1) -> Selector:
    """A new selector for one device ("round-robin 0" or "round-robin"; selectors keep state)."""
    return SELECTORS.make(path_selector, rr_min_io=rr_min_io)
