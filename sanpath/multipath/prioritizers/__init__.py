"""Prioritizers: a number per path; group_by_prio puts equal numbers in one group and the highest group
carries I/O (multipath-tools' prioritizers). One small module per prioritizer; ``PRIORITIZERS`` (a
``registry.Registry``) maps the multipath.conf name to the class. A prioritizer sees a ``PathProbe``
and a timeout, like a checker."""

from __future__ import annotations

from typing import Protocol

from ..probe import PathProbe
from ..registry import Registry


class Prioritizer(Protocol):
    name: str
    options: tuple[str, ...]

    async def priority(self, path: PathProbe, timeout: float) -> int:
        ...


from .alua import AluaPrioritizer  # noqa: E402  (the registry needs the Protocol above first)
from .common import PRIO_UNDEF  # noqa: E402
from .const import ConstPrioritizer  # noqa: E402
from .rdac import RdacPrioritizer  # noqa: E402

PRIORITIZERS: Registry[Prioritizer] = Registry("prio", ConstPrioritizer, AluaPrioritizer, RdacPrioritizer)
"""multipath.conf's prio name -> class. A prioritizer never raises: a priority it cannot read is
``PRIO_UNDEF``."""

__all__ = ["PRIORITIZERS", "PRIO_UNDEF", "Prioritizer"]
