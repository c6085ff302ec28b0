"""A target session on asyncio: the sans-IO ``TargetCore`` (sanpath.iscsi.target_core: the command
window, the tasks, R2Ts, Data-In and the responses) with what needs a loop: running each SCSI command
on its logical unit as an asyncio task, and task management, which waits for aborted commands to stop.
SCSI semantics are the logical units' (``sanpath.target.lu``).
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ..iscsi import pdu as P
from ..iscsi.constants import TaskFunction, TaskResponse
from ..iscsi.keys import SessionParams
from ..iscsi.target_core import SessionClosed, TargetCore, Task
from ..scsi.constants import Status
from ..scsi.sense import build_fixed_sense
from .lu import Nexus, ScsiResult

if TYPE_CHECKING:
    from .server import Target

__all__ = ["SessionClosed", "TargetSession", "Task"]

log = logging.getLogger(__name__)


class TargetSession(TargetCore):
    """Full feature phase of one session. ``send`` writes one PDU to the connection."""

    def __init__(self, target: Target, *, initiator_name: str, isid: bytes, tsih: int, tpgt: int,
                 params: SessionParams, cmdsn: int, statsn: int, window: int,
                 send: Callable[[P.Pdu], None], close: Callable[[], None]) -> None:
        super().__init__(initiator_name=initiator_name, params=params, cmdsn=cmdsn, statsn=statsn, window=window,
                         send=send)
        self.target = target
        self.isid = isid
        self.tsih = tsih
        self.close = close
        port = target.port_for_tpgt(tpgt)
        self.nexus = Nexus(initiator_port=f"{initiator_name},i,0x{isid.hex()}",
                           target_port=f"{target.iqn},t,0x{tpgt:04x}",
                           relative_port_id=port.relative_port_id, tpg_id=port.tpg_id)
        for lu in target.luns.values():
            lu.nexus_new(self.nexus)

    # --- the core's hooks --------------------------------------------------------------------------

    def execute(self, task: Task, data: bytes | memoryview) -> None:
        # Hot path: the command starts at once. Most end without waiting for anything (a read from the
        # page cache, INQUIRY, TEST UNIT READY), and then cost no asyncio task at all. One that waits
        # (a thread, a lock) goes on as an asyncio task of its own, so that commands still run
        # concurrently (a slow flush does not hold up reads) and ABORT TASK can cancel exactly one.
        coro = self._run_command(task, data)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
        task.runner = asyncio.get_running_loop().create_task(_resume(coro, waiting_on))

    def text_body(self, req: P.TextRequest) -> bytes:
        return self.target.server.text_response(req.data, None if self.discovery else self.target,
                                               self.initiator_name)

    def logout_accepted(self) -> None:
        self.close()

    def task_management(self, req: P.TaskMgmtRequest) -> None:
        asyncio.get_running_loop().create_task(self._task_mgmt(req))

    async def _run_command(self, task: Task, data: bytes | memoryview) -> None:
        lu = self.target.luns.get(task.lun)
        try:
            if lu is None:
                result = self.target.no_lun_result(task.cmd.cdb)
            else:
                result = await lu.execute(self.nexus, task.cmd.cdb, data)
        except asyncio.CancelledError:
            self.forget(task)
            raise
        except Exception:
            log.exception("%s: LUN %d: command 0x%02x failed", self.target.iqn, task.lun, task.cmd.cdb[0])
            # HARDWARE ERROR / INTERNAL TARGET FAILURE (SPC-4 Table 52: 44h/00h)
            result = ScsiResult(Status.CHECK_CONDITION, sense=build_fixed_sense(0x04, 0x44, 0x00))
        self.complete(task, result.status, sense=result.sense, data=result.data,
                      data_out_length=result.data_out_length)

    # --- task management ------------------------------------------------------------------------

    async def _task_mgmt(self, req: P.TaskMgmtRequest) -> None:
        fn = req.function
        lun = P.field_to_lun(req.lun)
        response = TaskResponse.COMPLETE
        if fn == TaskFunction.ABORT_TASK:
            task = self.tasks.get(req.rtt)
            if task is not None and task.lun == lun:
                await self.abort_tasks([task])
            elif self.unarrived(req.rtt, req.refcmdsn, req.cmdsn):
                # The CmdSN counts as received and the command never runs; "function complete" (§11.6.1 b).
                self.skip(req.refcmdsn)
            else:
                response = TaskResponse.TASK_DOES_NOT_EXIST
        elif fn in (TaskFunction.ABORT_TASK_SET, TaskFunction.CLEAR_TASK_SET):
            if lun not in self.target.luns:
                response = TaskResponse.LUN_DOES_NOT_EXIST
            else:
                scope = [self] if fn == TaskFunction.ABORT_TASK_SET else self.target.sessions()
                await self._abort_where(scope, lambda t: t.lun == lun)
        elif fn == TaskFunction.LOGICAL_UNIT_RESET:
            lu = self.target.luns.get(lun)
            if lu is None:
                response = TaskResponse.LUN_DOES_NOT_EXIST
            else:
                # every I_T nexus to this logical unit, through any target that presents it (a multi-IQN
                # array shows one LU under several names), including sessions whose connection is gone
                # but whose tasks are still unwinding (SAM-5: the reset ends every task in the task set)
                for s in self.target.server.all_sessions():
                    await s.abort_tasks([t for t in s.tasks.values() if s.target.luns.get(t.lun) is lu])
                await self.target.server.drain(lu)
                lu.reset("lun")
        elif fn in (TaskFunction.TARGET_WARM_RESET, TaskFunction.TARGET_COLD_RESET):
            await self._abort_where(self.target.sessions(), lambda t: True)
            for lu in self.target.luns.values():
                lu.reset("target" if fn == TaskFunction.TARGET_WARM_RESET else "target_cold")
        elif fn == TaskFunction.TASK_REASSIGN:
            response = TaskResponse.REASSIGNMENT_NOT_SUPPORTED
        else:
            response = TaskResponse.NOT_SUPPORTED
        self.tmf_response(req, response)
        if fn == TaskFunction.TARGET_COLD_RESET:  # RFC 7143 §11.5.1: then every connection of the target goes
            for s in self.target.sessions():
                s.close()

    async def _abort_where(self, sessions: list[TargetSession], match: Callable[[Task], bool]) -> None:
        for s in sessions:
            await s.abort_tasks([t for t in s.tasks.values() if match(t)])

    async def abort_tasks(self, tasks: list[Task]) -> None:
        """Abort tasks: no response is sent for them (§4.2.3.3); returns when they have stopped."""
        runners = []
        for task in tasks:
            if task.runner is not None:
                task.runner.cancel()
                runners.append(task.runner)
            else:
                self.forget(task)
        if runners:
            await asyncio.gather(*runners, return_exceptions=True)

    def shutdown(self) -> list[tuple[object, asyncio.Task[None]]]:
        """The connection is gone: at ErrorRecoveryLevel 0 every task of the session ends with it. Returns
        (logical unit, task) for the tasks still unwinding (a backend write in a thread finishes first)."""
        self.closed = True
        for lu in self.target.luns.values():
            lu.nexus_lost(self.nexus)
        runners: list[tuple[object, asyncio.Task[None]]] = []
        for task in list(self.tasks.values()):
            if task.runner is not None:
                task.runner.cancel()
                runners.append((self.target.luns.get(task.lun), task.runner))
            else:
                self.forget(task)
        return runners


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], waiting_on: Any) -> Generator[Any, Any, None]:
    """The rest of a coroutine that was started outside any task and is waiting on ``waiting_on`` (an
    asyncio future): run as a task, it waits on what the coroutine waits on, and passes on to it what the
    task sends or throws (cancellation included), as the task would if it had run it from the start."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as e:
            try:
                waiting_on = coro.throw(e)
            except StopIteration:
                return
            continue
        try:
            waiting_on = coro.send(sent)
        except StopIteration:
            return
