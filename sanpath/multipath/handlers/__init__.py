"""Hardware handlers: how to make a ghost path (ALUA standby, RDAC passive controller) carry I/O, as
XenServer's ``multipathhandle`` values name them: ``dmp`` (generic, ALUA-aware) and ``rdac`` (LSI-style
ownership transfer). The device calls ``activate`` when no usable path is left but ghosts are. ``HANDLERS`` (a
``registry.Registry``) maps the name to the class."""

from __future__ import annotations

from typing import Protocol

from ..path import Path
from ..registry import Registry
from .dmp import DmpHandler
from .rdac import RdacHandler


class Handler(Protocol):
    name: str
    options: tuple[str, ...]

    async def activate(self, path: Path, timeout: float) -> tuple[bool, str]:
        """Try to make ``path`` usable; (done, what happened)."""
        ...


HANDLERS: Registry[Handler] = Registry("handler", DmpHandler, RdacHandler)
"""The handler setting (XenServer's multipathhandle) -> class."""
