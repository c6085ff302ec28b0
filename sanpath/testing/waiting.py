"""Waiting for a condition in tests, bounded by a hang guard (never a timing assertion)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

HANG_GUARD = 60.0


async def wait_until(predicate: Callable[[], bool], what: str, limit: float = HANG_GUARD) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        await asyncio.sleep(0.05)


def wait_until_sync(predicate: Callable[[], bool], what: str, limit: float = HANG_GUARD) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.2)
