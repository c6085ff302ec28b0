"""The path monitor: every polling interval, check each path, refresh priorities, hold flapping paths
back (marginal), and fail back per the policy; and log dead paths in again as soon as their portal takes
logins.

Re-login runs on its own for each dead path, from the moment its session is lost, not on the checker's
rounds. It tries again every ``relogin_backoff`` seconds while the portal does not take the login for a
passing reason (no TCP connection, a login timeout, target not found or unavailable, the LUN not there
yet: an array restarting), so a path is back within that interval of its portal accepting logins. Only a
refusal that will not pass by itself (authentication or authorization failure, another LUN behind the
address) doubles the wait, up to 8 s, so as not to hammer an array that said no.

Link state. The monitor watches, over rtnetlink (``links.LinkWatch``), the interface that holds each
path's source address. When it loses carrier or is set down, its paths fail at once, with the link event
as the reason, and their connections are dropped so that the commands in flight on them are reissued at
once: nothing waits for a NOP-Out timeout when the kernel already knows. While the link stays
down, neither the checker nor a re-login may bring the path back (the kernel could carry its traffic out
of another interface); when it comes back up, re-login is tried at once. A connection attempt
gives up after ``RELOGIN_CONNECT_TIMEOUT``: a SYN lost while a cable was out is sent again by the next
attempt, not by TCP's own retransmission, whose gaps grow to seconds.

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

from ..aio import within
from ..errors import LoginError, SanpathError
from ..initiator.device import ScsiDevice
from .checkers import CHECKERS, Checker
from .device import MultipathDevice
from .links import LinkWatch
from .path import Path
from .prioritizers import PRIORITIZERS, Prioritizer
from .sessions import SessionPool
from .states import CheckResult, PathEventKind, PathState

log = logging.getLogger(__name__)

RELOGIN_CONNECT_TIMEOUT = 1.0
RELOGIN_MAX_WAIT = 8.0
_PASSING_LOGIN_STATUS = frozenset({0x0203, 0x0204})  # target not found / removed: an array being set up


class WrongLunError(SanpathError):
    """The address a path logs in to now has another LUN behind it: the path is refused."""


def _passing(e: SanpathError) -> bool:
    """Whether a failed re-login may succeed on the next try without anyone changing anything: not after
    a login refusal of class 2 (initiator error: authentication, authorization) or a different LUN."""
    if isinstance(e, LoginError):
        return e.status in _PASSING_LOGIN_STATUS or e.status >> 8 == 3  # class 3: target error
    return not isinstance(e, WrongLunError)


class PathMonitor:
    def __init__(self, device: MultipathDevice, pool: SessionPool, *, checker: Checker | None = None,
                 prioritizer: Prioritizer | None = None) -> None:
        policy = device.policy
        self.device = device
        self.pool = pool
        self.checker: Checker = checker or CHECKERS.make(policy.path_checker, **policy.values())
        self.prioritizer: Prioritizer = prioritizer or PRIORITIZERS.make(policy.prio, **policy.values())
        self._relogins: dict[Path, asyncio.Task[None]] = {}
        self._wake: dict[Path, asyncio.Event] = {}  # set when a re-login should not wait any longer
        self._stopped = False
        self.links: LinkWatch | None = None  # from start(): it needs the running loop
        self._linked: set[Path] = set()
        self._task: asyncio.Task[None] | None = None
        self._busy: set[Path] = set()
        for path in device.paths:
            self.watch(path)

    def watch(self, path: Path) -> None:
        """Fail the path the moment its session loses its connection or its link goes down, and start
        logging it in again."""
        session = path.session
        if session is not None:
            session.lost_listeners.append(lambda cause: self._lost(path, f"connection lost: {cause}"))
        self._watch_link(path)

    def _watch_link(self, path: Path) -> None:
        source = path.spec.source
        if self.links is None or source is None or path in self._linked:
            return
        self._linked.add(path)
        self.links.watch(source)
        if self.links.state(source) is False:
            self._lost(path, self.links.reason(source))

    def _link_down(self, path: Path) -> bool:
        source = path.spec.source
        return self.links is not None and source is not None and self.links.state(source) is False

    def _link_changed(self, source: str, ifname: str, up: bool, reason: str) -> None:
        for path in [p for p in self._linked if p.spec.source == source]:
            if up:
                self._wake.setdefault(path, asyncio.Event()).set()
                continue
            self._lost(path, reason)
            if path.session is not None:  # its commands in flight fail over now, not after a NOP timeout
                path.session.drop(reason)

    def _lost(self, path: Path, reason: str) -> None:
        self.device.fail_path(path, reason)
        if not self._stopped:
            self._start_relogin(path)

    def _start_relogin(self, path: Path) -> None:
        task = self._relogins.get(path)
        if task is None or task.done():
            self._relogins[path] = asyncio.get_running_loop().create_task(self._relogin_until_back(path))

    def start(self) -> None:
        self.links = LinkWatch(self._link_changed)
        for path in self.device.paths:
            self._watch_link(path)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopped = True
        tasks = [t for t in (self._task, *self._relogins.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.links is not None:
            self.links.close()

    async def _run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.device.policy.polling_interval)

    async def check_all(self) -> None:
        paths = [p for p in self.device.paths if p not in self._busy and self._relogins.get(p) is None]
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
        if self._link_down(path):
            assert self.links is not None and path.spec.source is not None
            self._lost(path, self.links.reason(path.spec.source))
            return
        if path.session is None or not path.session.logged_in:
            self._lost(path, "session down")
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
            self.device.hold_marginal(path, f"failed {policy.marginal_failures} times within "
                                      f"{policy.marginal_window:g} s; a last resort for {policy.marginal_hold:g} s")
            return
        self.device.reinstate_path(path, reason=f"{self.checker.name} checker: {reason}")

    async def _relogin_until_back(self, path: Path) -> None:
        wait = self.device.policy.relogin_backoff
        wake = self._wake.setdefault(path, asyncio.Event())
        try:
            while True:
                wake.clear()
                passing = True
                if not self._link_down(path):
                    try:
                        await self._relogin(path)
                        return
                    except SanpathError as e:
                        path.apply(PathEventKind.RELOGIN_FAILED, f"re-login failed: {e}")
                        passing = _passing(e)
                with contextlib.suppress(TimeoutError):  # the link coming back up ends the wait early
                    await within(wake.wait(), wait)
                if not passing:
                    wait = min(wait * 2, RELOGIN_MAX_WAIT)
        except Exception:  # a bug here must not leave the path dead for good: the next round retries
            log.exception("%s: logging %s in again failed", self.device.wwid, path.name)
        finally:
            self._relogins.pop(path, None)

    async def _relogin(self, path: Path) -> None:
        """Log the dead path in again (its old ISID: the target reinstates, and so fences, the old
        session), check that the same LUN is behind it, then let the checker decide whether it is up,
        ghost or marginal. Raises what failed."""
        old = path.session
        if old is None:
            raise SanpathError("the path has no session to log in again")
        session = await self.pool.relogin(old, connect_timeout=RELOGIN_CONNECT_TIMEOUT)
        device = await ScsiDevice(session, path.spec.lun).open()
        wwid = await device.scsi_id()
        if wwid != self.device.wwid or device.size != self.device.size:
            log.error("%s: %s is now %s", self.device.wwid, path.name, wwid)
            raise WrongLunError(f"refused: {path.spec.portal} LUN {path.spec.lun} is now {wwid} "
                               f"({device.size} bytes), not {self.device.wwid}")
        with contextlib.suppress(Exception):
            await old.close()  # already dead; this only releases what is left of it
        path.session, path.device = session, device
        self.watch(path)
        await self._check_path(path)
