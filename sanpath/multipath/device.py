"""MultipathDevice: one BlockDevice per LUN over every path to it, with failover, fencing and queueing.

I/O goes to the best path group that has usable paths; the selector spreads it over that group's paths
(multibus + round-robin 1 is the seed's active-active default). When a command fails on a path with a
transport error (connection lost, liveness timeout, command timeout), the path is failed at once and the
command is reissued on another path; the caller sees no error while any path works.

How no acknowledged write is lost, and no stale write overwrites a newer one
----------------------------------------------------------------------------
A write is acknowledged to the caller only when a target returned GOOD for it, so an acknowledged write
is on the array: nothing below can lose it. The danger is the other way round. A write W that was in
flight on a path that died may still be inside the array (received, queued, or in the backend). If W
were reissued on another path, acknowledged, and the caller then wrote newer data W2 to the same
blocks, the old W could still execute afterwards and overwrite W2.

So a mutating command (WRITE, UNMAP, WRITE SAME, SYNCHRONIZE CACHE) from a failed path is reissued
only after the dead path's I_T nexus has been *fenced*, and no new mutating command starts meanwhile:

1. the write gate closes: new mutating commands wait;
2. mutating commands in flight on surviving paths are allowed to finish (they are on live
   connections, so they complete or fail on their own);
3. the fence, in order of preference:
   a. session reinstatement: a login through a surviving portal of the same target with the dead
      path's initiator name and ISID. The target must end the old session, and every task in it,
      before that login completes (RFC 7143 §6.3.5; ErrorRecoveryLevel 0 has no task reassignment), so
      once the login response arrives no command of the dead path can execute any more;
   b. when no surviving portal serves the dead path's target IQN (a multi-IQN array whose port died):
      a LOGICAL UNIT RESET through a surviving path, which aborts every task in the logical unit's
      task set, whatever I_T nexus it came from (SAM-5 §7.6). Reads in flight on our other paths are
      abandoned and reissued (a duplicate read is harmless; no write is in flight by step 2);
4. the dead path's mutating commands are reissued, the gate opens.

If no path survives, nothing can be fenced and nothing is reissued until a path returns; then the
fence runs through it (with the returning path itself, reinstatement of its own old session is the
fence: its re-login reuses its ISID). Reads are reissued at once: a stale read cannot hurt anyone.

Sense-based decisions: ALUA standby/unavailable (NOT READY 04h/0Bh, 04h/0Ch) and the RDAC "not owned"
check condition (ILLEGAL REQUEST 94h/01h) turn the path into a ghost (up, not usable) and the command
moves to another path; ALUA transitioning (04h/0Ah) waits briefly and retries; TASK ABORTED, BUSY and
TASK SET FULL retry; MEDIUM and HARDWARE ERROR try one other path, then reach the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sanpath.aio import within

from ..errors import (
    CommandTimeout,
    ConnectionLost,
    IscsiError,
    LoginError,
    NoPathError,
    ScsiCommandError,
    TaskAborted,
)
from ..initiator.device import ScsiDevice
from ..initiator.session import Session
from ..iscsi.constants import TaskFunction, TaskResponse
from ..scsi.constants import SenseKey, Status
from .group import PathGroup, group_paths
from .handlers import HANDLERS, Handler
from .path import Path, PathEvent
from .policy import Policy
from .selectors import SELECTORS, Selector
from .sense import GHOST_SENSE, TRANSITIONING, sense_triple
from .states import CORRELATED_WINDOW, PathEventKind, PathState, back_in_service

log = logging.getLogger(__name__)

_TRANSPORT = (ConnectionLost, CommandTimeout)
_MAX_SENSE_RETRIES = 8


@dataclass(eq=False)
class _Op:
    """One caller request: how to run it on a path's ScsiDevice, and whether it changes data."""

    run: Callable[[ScsiDevice], Awaitable[None]]
    nbytes: int
    mutating: bool
    what: str


class MultipathDevice:
    """The multipathed LUN named by its WWID (SCSIid). ``paths`` share that WWID, size and block size."""

    def __init__(self, wwid: str, paths: list[Path], policy: Policy, *, size: int, block_size: int,
                 events: deque[PathEvent] | None = None) -> None:
        self.wwid = wwid
        self.paths = list(paths)
        self.policy = policy
        self._size = size
        self._block_size = block_size
        self.events: deque[PathEvent] = events if events is not None else deque(maxlen=1000)
        self.listeners: list[Callable[[PathEvent], None]] = []
        self.selector: Selector = SELECTORS.make(policy.path_selector, **policy.values())
        self.handler: Handler = HANDLERS.make(policy.handler, **policy.values())
        self._activation = asyncio.Lock()
        self._activated: dict[str, float] = {}
        self.groups: list[PathGroup] = []
        self.active_group: PathGroup | None = None
        self._path_changed = asyncio.Event()
        self._write_gate = asyncio.Event()
        self._write_gate.set()
        self._fence_task: asyncio.Task[None] | None = None
        self._unfenced: list[Path] = []  # dead paths whose writes may still be inside the array
        self._mutating_inflight = 0
        self._mutating_idle = asyncio.Event()
        self._mutating_idle.set()
        self._last_resort: set[Path] = set()  # the marginal paths carrying I/O now
        self.max_paths = len(self.paths)
        self.stats_ios = 0
        self.stats_errors = 0
        for p in self.paths:
            p.on_event = self._event
        self.regroup()

    # --- BlockDevice ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def block_size(self) -> int:
        return self._block_size

    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        view = memoryview(buffer).cast("B")
        await self._io(_Op(lambda d: d.read_into(offset, view), len(view), False, f"read {offset}+{len(view)}"))

    async def read(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        await self.read_into(offset, buf)
        return bytes(buf)

    async def write(self, offset: int, data: bytes | bytearray | memoryview, *, fua: bool = False) -> None:
        await self._io(_Op(lambda d: d.write(offset, data, fua=fua), len(data), True, f"write {offset}+{len(data)}"))

    async def flush(self) -> None:
        await self._io(_Op(lambda d: d.flush(), 0, True, "flush"))

    async def unmap(self, offset: int, length: int) -> None:
        await self._io(_Op(lambda d: d.unmap(offset, length), 0, True, f"unmap {offset}+{length}"))

    async def allocation(self, offset: int, length: int, *, limit: int | None = None) -> list[tuple[int, int, bool]]:
        """Which parts of the range are mapped (GET LBA STATUS through a path), for sparse copies. A LUN
        without logical block provisioning (LBPME=0 in READ CAPACITY 16) is mapped everywhere."""
        caps = [p.device.capacity for p in self.paths if p.device is not None and p.device.capacity is not None]
        if not caps or not caps[0].lbpme:
            return [(offset, length, True)]
        result: list[tuple[int, int, bool]] = []

        async def run(d: ScsiDevice) -> None:
            result[:] = await d.allocation(offset, length, limit=limit)

        await self._io(_Op(run, 0, False, f"allocation {offset}+{length}"))
        return result

    async def write_same(self, offset: int, length: int, block: bytes, *, unmap: bool = False) -> None:
        """WRITE SAME (16) over the range (the NBD export's WRITE_ZEROES), failed over like any write."""
        await self._io(_Op(lambda d: d.write_same(offset, length, block, unmap=unmap), 0, True,
                           f"write same {offset}+{length}"))

    # --- paths and groups --------------------------------------------------------------------------

    def _event(self, event: PathEvent) -> None:
        self.events.append(event)
        log.info("%s: %s", self.wwid, event)
        for listener in self.listeners:
            listener(event)
        self._path_changed.set()

    def add_path(self, path: Path) -> None:
        path.on_event = self._event
        self.paths.append(path)
        self.max_paths = max(self.max_paths, len(self.paths))
        self.regroup()
        self._event(PathEvent.now(path, PathEventKind.ADDED, "path added"))

    def regroup(self) -> None:
        """Rebuild the groups after priorities change; keep the active group when the policy says so."""
        self.groups = group_paths(self.paths, self.policy.path_grouping_policy)
        self.choose_group(initial=self.active_group is None)

    def choose_group(self, *, initial: bool = False) -> None:
        """The group I/O goes to: the best usable one, unless failback says to stay; the marginal paths'
        group only when no other group has a usable path (``states``, "Flapping")."""
        regular = [g for g in self.groups if not g.last_resort]
        best = next((g for g in regular if g.usable), None)
        current = next((g for g in regular if self.active_group is not None
                        and set(g.paths) == set(self.active_group.paths)), None)
        staying = current is not None and current.usable and not initial and best is not current
        if staying and (self.policy.failback_delay is None or not self._failback_due(best)):
            best = current
        if best is None:
            best = next((g for g in self.groups if g.last_resort and g.usable), None)
        self.active_group = best
        last_resort = set(best.usable) if best is not None and best.last_resort else set()
        for p in last_resort - self._last_resort:
            self._event(PathEvent.now(p, PathEventKind.LAST_RESORT,
                                      "marginal, but carries I/O: no other path can serve"))
        self._last_resort = last_resort
        for g in self.groups:
            chosen = g is best
            for p in g.usable:
                if p.state.usable and p.state != (PathState.ACTIVE if chosen else PathState.READY):
                    p.apply(PathEventKind.GROUP_ACTIVE if chosen else PathEventKind.GROUP_STANDBY)

    def _failback_due(self, group: PathGroup | None) -> bool:
        delay = self.policy.failback_delay
        if group is None or delay is None:
            return False
        since = max((p.since for p in group.usable), default=time.monotonic())
        return time.monotonic() - since >= delay

    def fail_path(self, path: Path, reason: str) -> None:
        if path.state == PathState.FAULTY:
            return
        was_marginal = path.state == PathState.MARGINAL
        path.errors += 1
        path.apply(PathEventKind.FAILED, reason)
        self._forgive_correlated(path)
        if was_marginal:
            self.regroup()  # it leaves the last-resort group
        else:
            self.choose_group()

    def _forgive_correlated(self, last: Path) -> None:
        """Every path has failed, all within ``CORRELATED_WINDOW``: one array- or fabric-wide event, so
        none of these failures counts towards flapping (``states``, "Flapping", rule 2)."""
        if any(p.state.alive for p in self.paths):
            return
        times = [p.last_failure for p in self.paths]
        if len(times) < 2 or None in times:
            return
        spread = max(t for t in times if t is not None) - min(t for t in times if t is not None)
        if spread > CORRELATED_WINDOW:
            return
        for p in self.paths:
            p.forgive_last_failure()
        self._event(PathEvent.now(last, PathEventKind.CORRELATED,
                                  f"all {len(self.paths)} paths failed within {spread:.1f} s: an array- or "
                                  "fabric-wide event, not counted towards any path's flapping"))

    def hold_marginal(self, path: Path, reason: str) -> None:
        """The path is back but flapping: it moves to the last-resort group."""
        path.apply(PathEventKind.MARGINAL, reason)
        self.regroup()

    def reinstate_path(self, path: Path, reason: str = "checker up") -> None:
        """A down, marginal or ghost path is usable again (it joins as ready; ``choose_group`` may make it
        active)."""
        was_marginal, was_usable = path.state == PathState.MARGINAL, path.state.usable
        if not was_usable:  # e.g. a ghost the checker found usable while its handler ran
            path.apply(back_in_service(path.state), reason)
        if was_marginal:  # back in its own group
            self.groups = group_paths(self.paths, self.policy.path_grouping_policy)
        # followover (multipath-tools): fail back only when the first path of a group that had none
        # comes back, so that a failover another host asked for is not undone by a path that merely
        # recovered inside an already working group.
        group = next((g for g in self.groups if path in g.paths), None)
        first_back = group is not None and not was_usable and group.usable == [path]
        self.choose_group(initial=self.policy.failback == "followover" and first_back)
        if self._unfenced and not self._fence_running():
            self._start_fence()

    @property
    def last_resort(self) -> frozenset[Path]:
        """The marginal paths carrying I/O now, because no other path can."""
        return frozenset(self._last_resort)

    @property
    def active_paths(self) -> int:
        return sum(1 for p in self.paths if p.state.up)

    # --- the I/O loop ---------------------------------------------------------------------------

    def _select(self, nbytes: int) -> Path | None:
        group = self.active_group
        if group is None or not group.usable:
            self.choose_group()
            group = self.active_group
            if group is None:
                return None
        return self.selector.select(group.usable, nbytes)

    async def _io(self, op: _Op) -> None:
        sense_retries = 0
        tried_other_for_medium: set[Path] = set()
        queued_since: float | None = None
        while True:
            if op.mutating:
                await self._write_gate.wait()
            path = self._select(op.nbytes)
            if path is None or path.device is None:
                if await self._activate_ghost():
                    continue
                queued_since = await self._no_path(op, queued_since)
                continue
            queued_since = None
            loop = asyncio.get_running_loop()
            start = loop.time()
            path.inflight += 1
            path.inflight_bytes += op.nbytes
            if op.mutating:
                self._mutating_inflight += 1
                self._mutating_idle.clear()
            self.selector.started(path, op.nbytes)
            ok = False
            try:
                await op.run(path.device)
                ok = True
            except _TRANSPORT as e:
                cause = getattr(e, "cause", "") or str(e)
                self.fail_path(path, f"{type(e).__name__}: {cause}")
                if op.mutating:
                    self._unfenced.append(path)
                    self._start_fence()
                continue
            except TaskAborted:
                continue  # aborted by a fence's LUN reset: reissue
            except ScsiCommandError as e:
                sense_retries += 1
                if sense_retries > _MAX_SENSE_RETRIES:
                    raise
                action = self._sense_action(path, e)
                if action == "retry":
                    await asyncio.sleep(0.05)
                    continue
                if action == "other-path":
                    continue
                if action == "medium" and path not in tried_other_for_medium and self._another_path(path):
                    tried_other_for_medium.add(path)
                    continue
                raise
            except IscsiError as e:  # e.g. a Reject: the path misbehaves; use another
                self.fail_path(path, f"{type(e).__name__}: {e}")
                if op.mutating:
                    self._unfenced.append(path)
                    self._start_fence()
                continue
            finally:
                elapsed = loop.time() - start
                path.inflight -= 1
                path.inflight_bytes -= op.nbytes
                self.selector.finished(path, op.nbytes, elapsed)
                if op.mutating:
                    self._mutating_inflight -= 1
                    if self._mutating_inflight == 0:
                        self._mutating_idle.set()
                if ok:
                    path.ios += 1
                    path.bytes += op.nbytes
                    path.service_time = elapsed if path.ios == 1 else 0.9 * path.service_time + 0.1 * elapsed
            self.stats_ios += 1
            return

    async def _activate_ghost(self) -> bool:
        """No usable path, but ghosts (standby / passive): ask the handler to make the best one usable.
        One activation at a time; concurrent callers wait for its outcome."""
        async with self._activation:
            if any(p.state.usable for p in self.paths):
                return True
            ghosts = sorted((p for p in self.paths if p.state == PathState.GHOST), key=lambda p: -p.priority)
            now = time.monotonic()
            for ghost in ghosts:
                if now - self._activated.get(ghost.name, -1e9) < self.policy.polling_interval:
                    continue  # just tried this one; let the checker see what the array did
                self._activated[ghost.name] = now
                done, what = await self.handler.activate(ghost, self.policy.command_timeout)
                self._event(PathEvent.now(ghost, PathEventKind.ACTIVATE, f"{self.handler.name}: {what}"))
                if done:
                    self.reinstate_path(ghost, reason=f"activated by the {self.handler.name} handler")
                    return True
            return False

    def _another_path(self, path: Path) -> bool:
        return any(p is not path and p.state.usable for p in self.paths)

    def _sense_action(self, path: Path, e: ScsiCommandError) -> str:
        if e.status in (Status.BUSY, Status.TASK_SET_FULL, Status.TASK_ABORTED):
            return "retry"
        triple = sense_triple(e.sense) if e.status == Status.CHECK_CONDITION else None
        if triple is None:
            return "error"
        if triple[0] == SenseKey.UNIT_ATTENTION or triple == TRANSITIONING:
            return "retry"  # a reset was reported, or the array is moving ownership: ask again
        ghost = GHOST_SENSE.get(triple)
        if ghost is not None:  # ALUA standby/unavailable, RDAC passive: up, but not for I/O here
            path.apply(PathEventKind.GHOST, ghost)
            self.choose_group()
            return "other-path"
        if triple[0] in (SenseKey.MEDIUM_ERROR, SenseKey.HARDWARE_ERROR):
            return "medium"
        return "error"

    async def _no_path(self, op: _Op, since: float | None) -> float:
        """No usable path: per no_path_retry fail, queue, or wait N polling intervals."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        since = now if since is None else since
        limit = self.policy.queue_intervals
        if limit == 0 or (limit is not None and now - since >= limit * self.policy.polling_interval):
            self.stats_errors += 1
            raise NoPathError(f"{self.wwid}: no usable path for {op.what} "
                              f"({self.active_paths} of {len(self.paths)} paths up; no_path_retry "
                              f"{self.policy.no_path_retry})")
        self._path_changed.clear()
        wait = None if limit is None else max(0.0, since + limit * self.policy.polling_interval - now)
        with contextlib.suppress(TimeoutError):
            await within(self._path_changed.wait(), wait)
        return since

    # --- fencing -------------------------------------------------------------------------------

    def _fence_running(self) -> bool:
        return self._fence_task is not None and not self._fence_task.done()

    def _start_fence(self) -> None:
        self._write_gate.clear()
        if not self._fence_running():
            self._fence_task = asyncio.get_running_loop().create_task(self._fence())

    async def _fence(self) -> None:
        """Make sure no command of the dead paths in ``_unfenced`` can still execute, then open the
        write gate (see the module docstring)."""
        while self._unfenced:
            await self._mutating_idle.wait()
            dead = self._unfenced[0]
            live = [p for p in self.paths if p.state.alive and p.session is not None and p.session.logged_in]
            if not live:
                self._path_changed.clear()
                await self._path_changed.wait()  # nothing to fence through: wait for a path to return
                continue
            how = ("session reinstatement" if await self._fence_by_reinstatement(dead, live)
                   else "LUN reset" if await self._fence_by_lun_reset(dead, live) else None)
            if how is not None:
                # reinstatement ends one I_T nexus (the dead path's session) only; other dead paths need
                # their own; a LUN reset aborts every nexus's tasks in the LU
                fenced = [p for p in self._unfenced if p is dead or (
                    p.session is dead.session if how == "session reinstatement" else p.spec.iqn == dead.spec.iqn)]
                self._unfenced = [p for p in self._unfenced if p not in fenced]
                self._event(PathEvent.now(dead, PathEventKind.FENCED, f"by {how}: no command of the failed "
                                          "path can execute any more"))
        self._write_gate.set()

    async def _fence_by_reinstatement(self, dead: Path, live: list[Path]) -> bool:
        if dead.session is None:
            return False
        if dead.session.logged_in and dead.state.alive:
            return True  # the path itself came back: its re-login reinstated its old session
        for p in live:
            if p.spec.iqn != dead.spec.iqn or p.session is None:
                continue
            config = dataclasses.replace(dead.session.config, host=p.spec.host, port=p.spec.port,
                                         source=p.spec.source, isid=dead.session.isid, reconnect=False,
                                         nop_interval=0)
            try:
                fence = await Session.open(config)
            except (LoginError, ConnectionLost) as e:
                log.warning("%s: fence by reinstatement through %s failed: %s", self.wwid, p.name, e)
                continue
            await fence.logout()
            return True
        return False

    async def _fence_by_lun_reset(self, dead: Path, live: list[Path]) -> bool:
        for p in live:
            assert p.session is not None
            try:
                response = await p.session.task_management(TaskFunction.LOGICAL_UNIT_RESET, p.spec.lun,
                                                           timeout=self.policy.command_timeout)
            except (IscsiError, TimeoutError) as e:
                log.warning("%s: LUN reset through %s failed: %s", self.wwid, p.name, e)
                continue
            if response != TaskResponse.COMPLETE:
                continue
            aborted = TaskAborted("aborted by the LUN reset that fenced a failed path", portal=p.spec.portal)
            for q in self.paths:
                if q.session is not None and q.session.logged_in:
                    q.session.abandon(q.spec.lun, aborted)
            return True
        return False

    # --- status ------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """XenServer's [active, max]: paths up now, and the most there ever were."""
        return self.active_paths, self.max_paths
