"""const: every path 1."""

from __future__ import annotations

from sanpath.multipath.prioritizers import PRIORITIZERS
from sanpath.multipath.prioritizers.const import ConstPrioritizer
from sanpath.testing.inproc import running_target

from .plugin_helpers import bare_paths, live_path


async def test_always_one() -> None:
    async with running_target() as server, live_path(server) as path:
        assert await ConstPrioritizer().priority(path, 1.0) == 1
    assert await ConstPrioritizer().priority(bare_paths(1)[0], 1.0) == 1  # needs no session at all


def test_registry() -> None:
    assert PRIORITIZERS["const"] is ConstPrioritizer
