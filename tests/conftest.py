"""Shared fixtures: a sanpath target process on loopback with a file LUN and a memory LUN."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sanpath.target.spawn import RunningTarget, serve_target

IQN = "iqn.2026-11.org.sanpath.test:array"
DUMP_LEAD = 15.0  # seconds before pytest-timeout fires


@pytest.fixture
def target_process(tmp_path: Path) -> Iterator[RunningTarget]:
    """A target with two portals (127.0.0.1 and 127.0.0.2, free ports), LUN 0 a 64 MiB file,
    LUN 1 a 16 MiB memory LUN."""
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", f"{tmp_path / 'lun0.img'}:64MiB", "--lun", "mem:16MiB") as t:
        yield t


@pytest.fixture(autouse=True)
async def _dump_tasks_before_timeout(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A hung async test shows only the event loop's select() when pytest-timeout fires: shortly before it
    does, print every asyncio task's stack, so the failure says which await never returned."""
    limit = request.config.getini("timeout")
    marker = request.node.get_closest_marker("timeout")
    seconds = float(marker.args[0] if marker and marker.args else limit or 0)
    if seconds <= 0:
        yield
        return
    loop = asyncio.get_running_loop()
    delay = max(seconds - DUMP_LEAD, 1.0)

    def dump() -> None:
        print(f"--- {len(asyncio.all_tasks(loop))} asyncio tasks, {delay:.0f} s into the test ---", file=sys.stderr)
        for task in asyncio.all_tasks(loop):
            print(f"{task.get_name()}:", file=sys.stderr)
            for where in awaiting(task.get_coro()):
                print(f"    {where}", file=sys.stderr)

    handle = loop.call_later(delay, dump)
    try:
        yield
    finally:
        handle.cancel()


def awaiting(coro: object) -> list[str]:
    """file:line of each coroutine frame along the chain of awaits, outermost first (a task's own
    get_stack() gives only its outermost frame)."""
    chain = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return chain
