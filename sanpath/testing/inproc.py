"""An in-process sanpath target on loopback for tests: memory LUNs, free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from ..target.config import ServerSpec, quick_config
from ..target.server import TargetServer

TEST_IQN = "iqn.2026-11.org.sanpath.test:inproc"


@asynccontextmanager
async def running_target(*, luns: tuple[str, ...] = ("mem:16MiB",), portals: tuple[str, ...] = ("127.0.0.1:0",),
                         iqn: str = TEST_IQN, spec: ServerSpec | None = None,
                         cmd_window: int | None = None) -> AsyncIterator[TargetServer]:
    """A started ``TargetServer``; ``server.portals`` lists the bound (address, port) pairs."""
    spec = spec or quick_config(iqn, list(portals), list(luns))
    if cmd_window is not None:
        spec = replace(spec, cmd_window=cmd_window)
    server = TargetServer(spec)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
