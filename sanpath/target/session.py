"""A target session in full feature phase (RFC 7143 §4.2, ErrorRecoveryLevel 0, one connection).

Owns the command window (CmdSN/ExpCmdSN/MaxCmdSN), StatSN, the tasks in flight, Data-Out collection
with R2T solicitation, Data-In with status phase collapse, task management, NOP, text (SendTargets)
and logout. SCSI semantics are the logical units' (``sanpath.target.lu``); this module only moves
bytes and status.

Memory is bounded by construction: at most ``cmd_window`` non-immediate commands are outstanding (the
window only opens as tasks complete), unsolicited data per command is at most FirstBurstLength, and
solicited data only arrives after an R2T, which is issued against a per-session byte budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..iscsi import pdu as P
from ..iscsi.constants import (
    RESERVED_TAG,
    LogoutReason,
    LogoutResponse,
    RejectReason,
    TaskFunction,
    TaskResponse,
)
from ..iscsi.keys import SessionParams
from ..iscsi.serial import sn_le, sn_lt
from ..scsi.constants import Status
from ..scsi.sense import build_fixed_sense
from .lu import Nexus, ScsiResult

if TYPE_CHECKING:
    from .server import Target

log = logging.getLogger(__name__)

MAX_EDTL = 64 << 20  # largest Expected Data Transfer Length accepted for one command
R2T_BUDGET = 128 << 20  # bytes of solicited Data-Out a session may have outstanding at once




class SessionClosed(Exception):
    """Raised into the connection when the session must drop it (protocol violation at ERL 0)."""


@dataclass(slots=True, eq=False)
class Task:
    """One SCSI command between its arrival and its response (an iSCSI task, RFC 7143 §3.2.2)."""

    cmd: P.ScsiCommand
    lun: int
    immediate: bool
    chunks: list[tuple[int, bytes]] = field(default_factory=list)
    received: int = 0
    unsolicited_end: int = 0  # data below this offset arrives without R2T
    next_r2t: int = 0  # next offset to solicit
    unsolicited_got: int = 0  # bytes of unsolicited Data-Out received (after any immediate data)
    unsolicited_datasn: int = 0  # DataSN expected next in the unsolicited sequence
    r2ts: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # TTT -> offset, length, got, DataSN
    r2tsn: int = 0
    reserved: int = 0  # bytes of the session's R2T budget held
    runner: asyncio.Task[None] | None = None
    waiting_budget: bool = False


class TargetSession:
    """Full feature phase of one session. ``send`` writes one PDU to the connection."""

    def __init__(self, target: Target, *, initiator_name: str, isid: bytes, tsih: int, tpgt: int,
                 params: SessionParams, cmdsn: int, statsn: int, window: int,
                 send: Callable[[P.Pdu], None], close: Callable[[], None]) -> None:
        self.target = target
        self.initiator_name = initiator_name
        self.isid = isid
        self.tsih = tsih
        self.params = params
        self.send = send
        self.close = close
        self.window = window
        self.expcmdsn = cmdsn
        self.statsn = statsn
        self.outstanding = 0
        self.tasks: dict[int, Task] = {}
        # Commands that arrived ahead of a CmdSN gap; None marks a CmdSN counted as received without
        # running, because ABORT TASK named it before it arrived (RFC 7143 §11.6.1 b).
        self.pending: dict[int, P.ScsiCommand | P.NopOut | P.TextRequest | P.LogoutRequest
                           | P.TaskMgmtRequest | None] = {}
        self.r2t_budget = R2T_BUDGET
        self.budget_waiters: deque[Task] = deque()
        self.dropped: deque[int] = deque(maxlen=64)  # ITTs of commands ended by a Reject
        self.next_ttt = 1
        self.text_pending: tuple[int, bytes] | None = None  # (TTT, rest of a continued text response)
        self.logged_out = False
        self.discovery = False
        self.closed = False
        port = target.port_for_tpgt(tpgt)
        self.nexus = Nexus(initiator_port=f"{initiator_name},i,0x{isid.hex()}",
                           target_port=f"{target.iqn},t,0x{tpgt:04x}",
                           relative_port_id=port.relative_port_id, tpg_id=port.tpg_id)
        for lu in target.luns.values():
            lu.nexus_new(self.nexus)

    # --- sequence numbers ----------------------------------------------------------------------

    @property
    def maxcmdsn(self) -> int:
        return (self.expcmdsn + self.window - self.outstanding - 1) & 0xFFFFFFFF

    def _next_statsn(self) -> int:
        sn = self.statsn
        self.statsn = (sn + 1) & 0xFFFFFFFF
        return sn

    def reject(self, header: bytes, reason: RejectReason) -> None:
        self.send(P.Reject(data=header[:48], reason=reason, statsn=self._next_statsn(),
                           expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn, datasn=0))

    # --- intake ----------------------------------------------------------------------------------

    def receive(self, pdu: P.Pdu, header: bytes) -> None:
        """Handle one decoded PDU from the initiator."""
        if isinstance(pdu, P.DataOut):
            self._data_out(pdu, header)
        elif isinstance(pdu, P.NopOut) and pdu.itt == RESERVED_TAG:
            pass  # the answer to one of our NOP-In pings: its arrival is all that matters
        elif isinstance(pdu, P.Snack):
            self.reject(header, RejectReason.SNACK_REJECT)  # ErrorRecoveryLevel 0 (RFC 7143 §11.16)
        elif isinstance(pdu, P.ScsiCommand | P.NopOut | P.TextRequest | P.LogoutRequest | P.TaskMgmtRequest):
            self._ordered(pdu, header)
        else:
            self.reject(header, RejectReason.PROTOCOL_ERROR)

    def _ordered(self, pdu: P.ScsiCommand | P.NopOut | P.TextRequest | P.LogoutRequest | P.TaskMgmtRequest,
                 header: bytes) -> None:
        """Commands go through the CmdSN window (§4.2.2.1); immediate ones are delivered at once."""
        if pdu.immediate:
            self._deliver(pdu, header)
            return
        sn = pdu.cmdsn
        if not (sn_le(self.expcmdsn, sn) and sn_le(sn, self.maxcmdsn)):
            # The RFC lets a target drop these silently; a Reject tells the initiator at once instead.
            log.warning("%s: CmdSN %d outside the window [%d, %d]", self.initiator_name, sn, self.expcmdsn,
                        self.maxcmdsn)
            self.reject(header, RejectReason.PROTOCOL_ERROR)
            return
        if sn != self.expcmdsn:
            if sn not in self.pending or self.pending[sn] is not None:  # None: aborted before it came
                self.pending[sn] = pdu
            return
        self._advance(pdu, header)
        self._drain()

    def _drain(self) -> None:
        """Deliver the commands that were waiting for the gap at ExpCmdSN to fill."""
        while self.expcmdsn in self.pending:
            nxt = self.pending.pop(self.expcmdsn)
            if nxt is None:
                self.expcmdsn = (self.expcmdsn + 1) & 0xFFFFFFFF
            else:
                self._advance(nxt, nxt.encode_header())

    def _advance(self, pdu: P.ScsiCommand | P.NopOut | P.TextRequest | P.LogoutRequest | P.TaskMgmtRequest,
                 header: bytes) -> None:
        self.expcmdsn = (self.expcmdsn + 1) & 0xFFFFFFFF
        self._deliver(pdu, header)

    def _deliver(self, pdu: P.Pdu, header: bytes) -> None:
        if isinstance(pdu, P.ScsiCommand):
            self._scsi_command(pdu, header)
        elif isinstance(pdu, P.NopOut):
            self.send(P.NopIn(data=pdu.data, lun=pdu.lun, itt=pdu.itt, statsn=self._next_statsn(),
                              expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn))
        elif isinstance(pdu, P.TextRequest):
            self._text(pdu, header)
        elif isinstance(pdu, P.LogoutRequest):
            self._logout(pdu)
        elif isinstance(pdu, P.TaskMgmtRequest):
            asyncio.get_running_loop().create_task(self._task_mgmt(pdu))

    # --- SCSI commands ---------------------------------------------------------------------------

    def _scsi_command(self, cmd: P.ScsiCommand, header: bytes) -> None:
        if cmd.itt in self.tasks or cmd.itt == RESERVED_TAG:
            self.reject(header, RejectReason.TASK_IN_PROGRESS if cmd.itt in self.tasks
                        else RejectReason.INVALID_PDU_FIELD)
            return
        p = self.params
        if cmd.data and not p.immediate_data:
            log.warning("%s: immediate data with ImmediateData=No", self.initiator_name)
            self.reject(header, RejectReason.PROTOCOL_ERROR)
            return
        if len(cmd.data) > min(p.first_burst_length, cmd.edtl if cmd.write else 0) and cmd.data:
            self.reject(header, RejectReason.PROTOCOL_ERROR)
            return
        task = Task(cmd, P.field_to_lun(cmd.lun), cmd.immediate)
        self.tasks[cmd.itt] = task
        if not cmd.immediate:
            self.outstanding += 1
        if cmd.write and cmd.edtl:
            if cmd.edtl > MAX_EDTL:
                self._complete(task, ScsiResult(Status.CHECK_CONDITION,
                                                sense=build_fixed_sense(0x05, 0x24, 0x00)))
                return
            if cmd.data:
                task.chunks.append((0, bytes(cmd.data)))
                task.received = len(cmd.data)
            task.unsolicited_end = len(cmd.data) if p.initial_r2t else min(p.first_burst_length, cmd.edtl)
            task.next_r2t = task.unsolicited_end
            self._solicit(task)
            if task.received < cmd.edtl:
                return
        self._execute(task)

    def _solicit(self, task: Task) -> None:
        """Issue R2Ts for the rest of the task's data, within MaxOutstandingR2T. The whole solicited
        length is reserved from the session's byte budget at once, so tasks cannot deadlock on it."""
        p = self.params
        edtl = task.cmd.edtl
        if task.reserved == 0 and task.next_r2t < edtl:
            need = edtl - task.next_r2t
            if need > self.r2t_budget:
                if not task.waiting_budget:
                    task.waiting_budget = True
                    self.budget_waiters.append(task)
                return
            self.r2t_budget -= need
            task.reserved = need
        while task.next_r2t < edtl and len(task.r2ts) < p.max_outstanding_r2t:
            length = min(p.max_burst_length, edtl - task.next_r2t)
            ttt = self.next_ttt
            self.next_ttt = (ttt + 1) % 0xFFFFFFFF or 1
            task.r2ts[ttt] = (task.next_r2t, length, 0, 0)
            self.send(P.R2T(lun=task.cmd.lun, itt=task.cmd.itt, ttt=ttt, statsn=self.statsn,
                            expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn, r2tsn=task.r2tsn,
                            offset=task.next_r2t, length=length))
            task.r2tsn += 1
            task.next_r2t += length

    def _data_out(self, d: P.DataOut, header: bytes) -> None:
        task = self.tasks.get(d.itt)
        if task is None and d.itt in self.dropped:
            return  # the rest of a command already rejected
        if task is None or task.runner is not None or not task.cmd.write:
            log.warning("%s: Data-Out for unknown or finished ITT 0x%08x", self.initiator_name, d.itt)
            self.reject(header, RejectReason.INVALID_PDU_FIELD)
            return
        n = len(d.data)
        if n > self.params.max_recv_data_segment_length:
            self.reject(header, RejectReason.PROTOCOL_ERROR)
            return
        # DataPDUInOrder=Yes and DataSequenceInOrder=Yes (§13.19, §13.20): within each sequence the
        # offsets are contiguous and DataSN counts from 0 (§11.7.5). Anything else is a protocol error
        # that ErrorRecoveryLevel 0 cannot repair, so the connection goes.
        if d.ttt == RESERVED_TAG:
            expect_offset = len(task.cmd.data) + task.unsolicited_got
            expect_sn = task.unsolicited_datasn
            if d.offset + n > task.unsolicited_end:
                expect_offset = -1
            task.unsolicited_got += n
            task.unsolicited_datasn += 1
        else:
            r2t = task.r2ts.get(d.ttt)
            if r2t is None:
                self.reject(header, RejectReason.INVALID_PDU_FIELD)
                return
            offset, length, got, expect_sn = r2t
            got += n
            expect_offset = offset + got - n if got <= length and (got == length or not d.final) else -1
            if got >= length:
                del task.r2ts[d.ttt]
            else:
                task.r2ts[d.ttt] = (offset, length, got, expect_sn + 1)
        if d.offset != expect_offset or d.datasn != expect_sn:
            # The command cannot complete (ErrorRecoveryLevel 0 has no recovery within a command): the
            # Reject ends it at the initiator (§11.17.1), and the target drops it without a response.
            # The rest of the session is unharmed.
            log.warning("%s: Data-Out for ITT 0x%08x at offset %d DataSN %d; expected offset %d DataSN %d "
                        "(RFC 7143 11.7.5); the command is rejected", self.initiator_name, d.itt, d.offset,
                        d.datasn, expect_offset, expect_sn)
            self.reject(header, RejectReason.PROTOCOL_ERROR)
            self._forget(task)
            self.dropped.append(d.itt)
            return
        if n:
            task.chunks.append((d.offset, bytes(d.data)))
            task.received += n
        if task.received == task.cmd.edtl:
            task.r2ts.clear()
            self._execute(task)
        else:
            self._solicit(task)

    def _release_budget(self, task: Task) -> None:
        if task.reserved:
            self.r2t_budget += task.reserved
            task.reserved = 0
        while self.budget_waiters:
            waiter = self.budget_waiters[0]
            if waiter.cmd.edtl - waiter.next_r2t > self.r2t_budget:
                break
            self.budget_waiters.popleft()
            waiter.waiting_budget = False
            self._solicit(waiter)

    def _execute(self, task: Task) -> None:
        data = _assemble(task)
        task.chunks = []
        # One asyncio task per SCSI command, so that commands run concurrently (a slow flush does not
        # hold up reads) and ABORT TASK can cancel exactly one. PDUs themselves never get a task.
        task.runner = asyncio.get_running_loop().create_task(self._run(task, data))

    async def _run(self, task: Task, data: bytes | memoryview) -> None:
        lu = self.target.luns.get(task.lun)
        try:
            if lu is None:
                result = self.target.no_lun_result(task.cmd.cdb)
            else:
                result = await lu.execute(self.nexus, task.cmd.cdb, data)
        except asyncio.CancelledError:
            self._forget(task)
            raise
        except Exception:
            log.exception("%s: LUN %d: command 0x%02x failed", self.target.iqn, task.lun, task.cmd.cdb[0])
            # HARDWARE ERROR / INTERNAL TARGET FAILURE (SPC-4 Table 52: 44h/00h)
            result = ScsiResult(Status.CHECK_CONDITION, sense=build_fixed_sense(0x04, 0x44, 0x00))
        self._complete(task, result)

    def _forget(self, task: Task) -> None:
        if self.tasks.pop(task.cmd.itt, None) is task and not task.immediate:
            self.outstanding -= 1
        self._release_budget(task)
        if task.waiting_budget:
            self.budget_waiters.remove(task)
            task.waiting_budget = False

    def _complete(self, task: Task, result: ScsiResult) -> None:
        self._forget(task)
        if self.closed:
            return
        cmd = task.cmd
        edtl = cmd.edtl
        data = result.data
        produced = len(data) if not cmd.write else result.data_out_length
        send_len = min(len(data), edtl) if cmd.read else 0
        residual, over, under = 0, False, False
        if produced > edtl:
            residual, over = produced - edtl, True
        elif produced < edtl:
            residual, under = edtl - produced, True
        if send_len:
            self._send_data_in(task, memoryview(data)[:send_len], result, residual, over, under)
            if result.status == Status.GOOD and not result.sense:
                return
        sense = result.sense
        payload = len(sense).to_bytes(2, "big") + sense if sense else b""
        self.send(P.ScsiResponse(data=payload, status=result.status, overflow=over, underflow=under,
                                 residual=residual, itt=cmd.itt, statsn=self._next_statsn(),
                                 expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn,
                                 expdatasn=task.r2tsn + (_ceil(send_len, self._seg()) if send_len else 0)))

    def _seg(self) -> int:
        return self.params.max_send_data_segment_length

    def _send_data_in(self, task: Task, data: memoryview, result: ScsiResult, residual: int, over: bool,
                      under: bool) -> None:
        """Data-In PDUs of at most the initiator's MaxRecvDataSegmentLength; F at the end of each burst
        of MaxBurstLength (§11.7.1); the last one carries GOOD status (phase collapse, §11.7.4)."""
        cmd = task.cmd
        seg = self._seg()
        burst = self.params.max_burst_length
        total = len(data)
        collapse = result.status == Status.GOOD and not result.sense
        offset = 0
        datasn = 0
        send = self.send
        while offset < total:
            n = min(seg, total - offset, burst - offset % burst)
            end = offset + n
            last = end == total
            if last and collapse:
                send(P.DataIn(data=data[offset:end], final=True, has_status=True, status=result.status,
                              overflow=over, underflow=under, residual=residual, lun=cmd.lun, itt=cmd.itt,
                              statsn=self._next_statsn(), expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn,
                              datasn=datasn, offset=offset))
            else:
                send(P.DataIn(data=data[offset:end], final=last or end % burst == 0, lun=cmd.lun, itt=cmd.itt,
                              expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn, datasn=datasn, offset=offset))
            offset = end
            datasn += 1

    # --- text, logout -------------------------------------------------------------------------

    def _text(self, req: P.TextRequest, header: bytes) -> None:
        """SendTargets in a normal session (§12.3), with C-bit continuation of long answers."""
        if req.ttt != RESERVED_TAG:
            if self.text_pending is None or self.text_pending[0] != req.ttt:
                self.reject(header, RejectReason.INVALID_PDU_FIELD)
                return
            body = self.text_pending[1]
        else:
            body = self.target.server.text_response(req.data, None if self.discovery else self.target,
                                                   self.initiator_name)
        seg = self._seg()
        more = len(body) > seg
        ttt = RESERVED_TAG
        if more:
            ttt = self.next_ttt
            self.next_ttt = (ttt + 1) % 0xFFFFFFFF or 1
            self.text_pending = (ttt, body[seg:])
        else:
            self.text_pending = None
        self.send(P.TextResponse(data=body[:seg], final=not more, cont=more, lun=req.lun, itt=req.itt, ttt=ttt,
                                 statsn=self._next_statsn(), expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn))

    def _logout(self, req: P.LogoutRequest) -> None:
        response = LogoutResponse.SUCCESS
        if req.reason == LogoutReason.REMOVE_CONNECTION_FOR_RECOVERY:
            response = LogoutResponse.RECOVERY_NOT_SUPPORTED
        self.send(P.LogoutResponse(response=response, itt=req.itt, statsn=self._next_statsn(),
                                   expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn, time2wait=0, time2retain=0))
        if response == LogoutResponse.SUCCESS:
            self.logged_out = True
            self.close()

    # --- task management ------------------------------------------------------------------------

    async def _task_mgmt(self, req: P.TaskMgmtRequest) -> None:
        fn = req.function
        lun = P.field_to_lun(req.lun)
        response = TaskResponse.COMPLETE
        if fn == TaskFunction.ABORT_TASK:
            task = self.tasks.get(req.rtt)
            queued = self.pending.get(req.refcmdsn)
            if task is not None and task.lun == lun:
                await self.abort_tasks([task])
            elif (task is None and (queued is None or queued.itt == req.rtt) and sn_lt(req.refcmdsn, req.cmdsn)
                  and sn_le(self.expcmdsn, req.refcmdsn) and sn_le(req.refcmdsn, self.maxcmdsn)):
                # Not received yet (or held behind a gap), inside the window and before the TMF: the
                # CmdSN counts as received and the command never runs; "function complete" (§11.6.1 b).
                self.pending[req.refcmdsn] = None
                self._drain()
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
        elif fn == TaskFunction.TARGET_WARM_RESET:
            await self._abort_where(self.target.sessions(), lambda t: True)
            for lu in self.target.luns.values():
                lu.reset("target")
        elif fn == TaskFunction.TASK_REASSIGN:
            response = TaskResponse.REASSIGNMENT_NOT_SUPPORTED
        else:
            response = TaskResponse.NOT_SUPPORTED
        if not self.closed:
            self.send(P.TaskMgmtResponse(response=response, itt=req.itt, statsn=self._next_statsn(),
                                         expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn))

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
                self._forget(task)
        if runners:
            await asyncio.gather(*runners, return_exceptions=True)

    def shutdown(self) -> list[tuple[object, asyncio.Task[None]]]:
        """The connection is gone: at ErrorRecoveryLevel 0 every task of the session ends with it. Returns
        (logical unit, task) for the tasks still unwinding (a backend write in a thread finishes first)."""
        self.closed = True
        runners: list[tuple[object, asyncio.Task[None]]] = []
        for task in list(self.tasks.values()):
            if task.runner is not None:
                task.runner.cancel()
                runners.append((self.target.luns.get(task.lun), task.runner))
            else:
                self._forget(task)
        return runners


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _assemble(task: Task) -> bytes | memoryview:
    """The Data-Out of a task as one buffer (no copy when it came in one piece)."""
    chunks = task.chunks
    if not chunks:
        return b""
    if len(chunks) == 1 and chunks[0][0] == 0:
        return chunks[0][1]
    buf = bytearray(task.cmd.edtl)
    for offset, data in chunks:
        buf[offset : offset + len(data)] = data
    return memoryview(buf)
