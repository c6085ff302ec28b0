"""One bench run as a command runs it: the engine on any block device, with progress, a note before a
verify run's fill, and a first Ctrl-C (SIGINT) that ends the run with a result; a second one aborts."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any, Protocol

from ..errors import SanpathError
from ..units import human_size
from .bench import Bench, BenchError, BenchResult, BenchSpec, Progress


class BenchSetupError(SanpathError):
    """The spec does not fit the LUN (found only once it is opened): bad input, exit 2."""


class ProgressSink(Protocol):
    """Where a run reports: a progress line a second, and notes (path events, phases) as they happen."""

    def __call__(self, progress: Progress, /) -> None: ...

    def note(self, text: str, /) -> None: ...


async def run_engine(device: Any, name: str, spec: BenchSpec, printer: ProgressSink | None) -> BenchResult:
    """Run the load on any BlockDevice-like object, with progress and a first Ctrl-C that ends the run."""
    try:
        engine = Bench(device, spec, progress=printer)
    except BenchError as e:
        raise BenchSetupError(f"{name} ({device.size} bytes, {device.block_size}-byte blocks): {e}") from None
    if spec.verify and spec.reads and printer is not None:
        printer.note(f"verify: writing the region first ({human_size(engine.region_size)})")
    loop = asyncio.get_running_loop()

    def interrupted() -> None:  # the first Ctrl-C ends the run with a result; a second one aborts
        engine.stop("interrupted (SIGINT)")
        loop.remove_signal_handler(signal.SIGINT)

    with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread / no signals
        loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        return await engine.run()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
