"""The path monitor: every polling interval, check each path, log faulty ones in again with backoff,
refresh priorities, hold flapping paths out (marginal), and fail back per the policy.

Checks run concurrently and each is bounded by a timeout, so one dead path never delays the others or a
status request (PEERS.md: control commands must never wait on a dead path). A path's session loss is
reported at once through ``Session.on_lost``: the path is failed without waiting for the next check.

A path that comes back is logged in with its old ISID (so the target reinstates, and thereby fences,
its old session) and its WWID is checked again: a different LUN behind the same address is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..errors import IscsiError, SanpathError
from ..initiator.device import ScsiDevice
from .checkers import CHECKERS, Checker
from .device import MultipathDevice
from .path import Path
from .prioritizers import PRIORITIZERS, Prioritizer
from .sessions import SessionPool
from .states import CheckResult, PathEventKind, PathState

log = logging.getLogger(__name__)


class PathMonitor:
    def __init__(self, device: MultipathDevice, pool: SessionPool, *, checker: Checker | None = None,
                 prioritizer: Prioritizer | None = None) -> None:
        policy = device.policy
        self.device = device
        self.pool = pool
        self.checker: Checker = checker or CHECKERS.make(policy.path_checker, **policy.values())
        self.prioritizer: Prioritizer = prioritizer or PRIORITIZERS.make(policy.prio, **policy.values())
        self._relogin_at: dict[Path, float] = {}
        self._relogin_delay: dict[Path, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._busy: set[Path] = set()
        for path in device.paths:
            self.watch(path)

    def watch(self, path: Path) -> None:
        """Fail the path the moment its session loses its connection."""
        session = path.session
        if session is not None:
            session.lost_listeners.append(lambda cause: self.device.fail_path(path, f"connection lost: {cause}"))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.device.policy.polling_interval)

    async def check_all(self) -> None:
        paths = [p for p in self.device.paths if p not in self._busy]
        await asyncio.gather(*(self._check(p) for p in paths))
        self.device.choose_group()

    async def _check(self, path: Path) -> None:
        self._busy.add(path)
        try:
            await self._check_path(path)
        except Exception:  # a bug in a plugin must not stop the monitor
            log.exception("%s: checking %s failed", self.device.wwid, path.name)
        finally:
            self._busy.discard(path)

    async def _check_path(self, path: Path) -> None:
        policy = self.device.policy
        timeout = max(policy.polling_interval, policy.nop_timeout)
        if path.session is None or not path.session.logged_in:
            if path.state != PathState.FAULTY:
                self.device.fail_path(path, "session down")
            await self._relogin(path)
            return
        result, reason = await self.checker.check(path, timeout)
        if result == CheckResult.DOWN:
            self.device.fail_path(path, f"{self.checker.name} checker: {reason}")
            return
        priority = await self.prioritizer.priority(path, timeout)
        if priority != path.priority:
            path.priority = priority
            self.device.regroup()
        if result == CheckResult.GHOST:
            if path.state != PathState.GHOST:
                path.apply(PathEventKind.GHOST, f"{self.checker.name} checker: {reason}")
                self.device.choose_group()
            return
        if path.state.usable:
            return
        now = time.monotonic()
        if path.state == PathState.MARGINAL and now < path.marginal_until:
            return
        if path.state == PathState.FAULTY and path.failures_within(policy.marginal_window) >= policy.marginal_failures:
            path.marginal_until = now + policy.marginal_hold
            path.apply(PathEventKind.MARGINAL, f"failed {policy.marginal_failures} times within "
                           f"{policy.marginal_window:g} s; held out for {policy.marginal_hold:g} s")
            return
        self.device.reinstate_path(path, reason=f"{self.checker.name} checker: {reason}")

    async def _relogin(self, path: Path) -> None:
        """Log a faulty path in again, with exponential backoff between attempts (bounded at 8 s)."""
        now = time.monotonic()
        if now < self._relogin_at.get(path, 0.0):
            return
        delay = self._relogin_delay.get(path, self.device.policy.relogin_backoff)
        self._relogin_delay[path] = min(delay * 2, 8.0)
        self._relogin_at[path] = now + delay
        old = path.session
        if old is None:
            return
        try:
            session = await self.pool.relogin(old)
        except IscsiError as e:
            path.apply(PathEventKind.RELOGIN_FAILED, f"re-login failed: {e}")
            return
        try:
            device = await ScsiDevice(session, path.spec.lun).open()
            wwid = await device.scsi_id()
        except SanpathError as e:
            path.apply(PathEventKind.RELOGIN_FAILED, f"re-login: LUN check failed: {e}")
            return
        if wwid != self.device.wwid or device.size != self.device.size:
            path.apply(PathEventKind.RELOGIN_FAILED, f"refused: {path.spec.portal} LUN {path.spec.lun} is now "
                       f"{wwid} ({device.size} bytes), not {self.device.wwid}")
            log.error("%s: %s", self.device.wwid, path.reason)
            return
        with contextlib.suppress(Exception):
            await old.close()  # already dead; this only releases what is left of it
        path.session, path.device = session, device
        self.watch(path)
        self._relogin_delay.pop(path, None)
        self._relogin_at.pop(path, None)
        # the checker decides on the next round whether it is up, ghost or marginal
        await self._check_path(path)
