"""The console's long operations (maintenance mode, a multipath change, a new SR, a repair) as jobs: each
runs as a task of the daemon's loop, its steps are recorded as they happen, and the page polls the job
until it is done. A browser that leaves does not cut the operation short."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import XenError

KEEP = 50  # finished jobs kept for their pages
_ids = itertools.count(1)

Step = Callable[[str], None]


@dataclass
class Job:
    id: int
    title: str
    started: float = field(default_factory=time.time)
    steps: list[tuple[float, str]] = field(default_factory=list)
    done: bool = False
    error: dict[str, Any] | None = None
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, href) to go on with

    def step(self, text: str) -> None:
        self.steps.append((time.time(), text))


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, title: str, work: Callable[[Job], Awaitable[None]]) -> Job:
        job = Job(next(_ids), title)
        self._jobs[job.id] = job

        async def run() -> None:
            try:
                await work(job)
            except XenError as e:
                job.error = e.to_json()
                job.step(f"failed: {e}" + (f" {e.advice}" if e.advice else ""))
            except Exception as e:  # shown, not swallowed: the page says what broke
                job.error = {"error": type(e).__name__, "message": str(e)}
                job.step(f"failed: {type(e).__name__}: {e}")
            finally:
                job.done = True
                self._prune()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise XenError("HANDLE_INVALID", f"no console job {job_id} (finished jobs are kept {KEEP} at most)",
                           "job", str(job_id))
        return job

    def _prune(self) -> None:
        finished = [j for j in self._jobs.values() if j.done]
        for j in finished[:-KEEP]:
            del self._jobs[j.id]

    async def stop(self) -> None:
        """Wait for the jobs still running (the daemon stops): none is left half done by the console."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
