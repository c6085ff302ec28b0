"""sanpath.aio.within keeps a cancellation that arrives as the awaited thing finishes; nothing uses
asyncio.wait_for, which loses it on Python 3.11 (a daemon's stop then waited forever on its watcher)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib

import pytest

from sanpath.aio import within

ROOT = pathlib.Path(__file__).resolve().parents[1]


async def test_a_loop_stopped_as_its_event_fires_is_cancelled() -> None:
    fired = asyncio.Event()
    rounds = 0

    async def loop_forever() -> None:
        nonlocal rounds
        while True:
            with contextlib.suppress(TimeoutError):
                await within(fired.wait(), 10)
            fired.clear()
            rounds += 1

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(0)
    fired.set()
    task.cancel()  # the event's waiter is woken in the same loop step as the cancellation
    with pytest.raises(asyncio.CancelledError):
        await within(task, 5)
    assert rounds == 0


async def test_within_times_out_and_returns_results() -> None:
    assert await within(asyncio.sleep(0, "done"), 1) == "done"
    assert await within(asyncio.sleep(0, "unbounded"), None) == "unbounded"
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(5), 0.01)


def test_no_module_uses_asyncio_wait_for() -> None:
    needle = "asyncio." + "wait_for("  # spelt so that this file does not match itself
    users = [str(p.relative_to(ROOT)) for d in ("sanpath", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")
             if needle in p.read_text()]
    assert users == [], f"use sanpath.aio.within instead of asyncio.wait_for in {users}"
