"""asyncio helpers the standard library gets subtly wrong on the Python we support."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(aw: Awaitable[T], seconds: float | None) -> T:
    """``aw``'s result, or TimeoutError after ``seconds`` (None: no limit).

    Use this, never ``asyncio.wait_for``: on Python 3.11, when the awaited thing finishes in the same
    loop step in which the caller is cancelled, wait_for returns the result and the cancellation is
    lost, so a loop that is being stopped goes on forever and whoever awaits it hangs.
    ``asyncio.timeout`` keeps the cancellation."""
    async with asyncio.timeout(seconds):
        return await aw
