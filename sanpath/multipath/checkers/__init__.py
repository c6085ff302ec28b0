"""Path checkers: is this path alive, and can it carry I/O? (multipath-tools' checkers).

Each checker is one small module with a class implementing ``Checker``; ``CHECKERS`` (a
``registry.Registry``) maps the multipath.conf name to the class. A checker sees a ``PathProbe`` (the
path's name, LUN, block size and session) and a timeout, nothing else; ``check`` must return within
``timeout`` seconds and never raise. What it may conclude is ``states.CheckResult`` (up, down, ghost),
read from SCSI status and sense data as ``common.classify`` documents.
"""

from __future__ import annotations

from typing import Protocol

from ..probe import PathProbe
from ..registry import Registry
from ..states import CheckResult


class Checker(Protocol):
    name: str
    options: tuple[str, ...]

    async def check(self, path: PathProbe, timeout: float) -> tuple[CheckResult, str]:
        """(result, a short reason a person can read)."""
        ...


from .nop import NopChecker  # noqa: E402  (the registry needs the Protocol above first)
from .rdac import RdacChecker  # noqa: E402
from .readsector0 import ReadSector0Checker  # noqa: E402
from .tur import TurChecker  # noqa: E402

CHECKERS: Registry[Checker] = Registry("path_checker", TurChecker, ReadSector0Checker, NopChecker, RdacChecker)
"""multipath.conf's path_checker name -> class."""
