"""The target role of a session in full feature phase (RFC 7143 §4.2, ErrorRecoveryLevel 0), sans-IO.

Owns the command window (``OrderWindow``: commands delivered in CmdSN order), StatSN, the tasks by ITT,
Data-Out collection with R2T solicitation (``WritePlan``), and the responses: Data-In with status phase
collapse, SCSI Response, NOP-In, Text and Logout Responses, Reject. What a command means is not its
business: it is given ``send`` (writes a PDU), and a subclass gets the hooks ``execute`` (a command with all its data:
run it, then call ``complete``), ``task_management``, ``text_body`` and ``logout_accepted``. The asyncio
session (``sanpath.target.session``) is that subclass: it runs commands and times nothing else.

Memory is bounded by construction: at most ``window`` non-immediate commands are outstanding (the window
only opens as tasks end), unsolicited data per command is at most FirstBurstLength, and solicited data
only arrives after an R2T, which is issued against a per-session byte budget (``r2t_budget``).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..scsi.constants import Status
from ..scsi.sense import build_fixed_sense
from . import pdu as P
from .constants import RESERVED_TAG, LogoutReason, LogoutResponse, RejectReason
from .keys import SessionParams
from .r2t import WritePlan
from .serial import sn_lt
from .window import OrderWindow

log = logging.getLogger(__name__)

MAX_EDTL = 64 << 20  # largest Expected Data Transfer Length accepted for one command
R2T_BUDGET = 128 << 20  # bytes of solicited Data-Out a session may have outstanding at once

Ordered = P.ScsiCommand | P.NopOut | P.TextRequest | P.LogoutRequest | P.TaskMgmtRequest


class SessionClosed(Exception):
    """Raised into the connection when the session must drop it (protocol violation at ERL 0)."""


@dataclass(slots=True, eq=False)
class Task:
    """One SCSI command between its arrival and its response (an iSCSI task, RFC 7143 §3.2.2)."""

    cmd: P.ScsiCommand
    lun: int
    immediate: bool
    plan: WritePlan | None = None  # a write's data still to come
    chunks: list[tuple[int, bytes]] = field(default_factory=list)
    reserved: int = 0  # bytes of the session's R2T budget held
    waiting_budget: bool = False
    executing: bool = False
    runner: Any = None  # the subclass's handle on the running command


def _ttts() -> Iterator[int]:
    """Target Transfer Tags: 1, 2, ... wrapping before the reserved ffffffffh."""
    return (n % 0xFFFFFFFF or 1 for n in itertools.count(1))


class TargetCore:
    """Full feature phase of one session, for the target. See the module comment for the hooks."""

    def __init__(self, *, initiator_name: str, params: SessionParams, cmdsn: int, statsn: int, window: int,
                 send: Callable[[P.Pdu], None]) -> None:
        self.initiator_name = initiator_name
        self.send = send  # writes one PDU to the connection
        self.params = params
        self.window: OrderWindow[Ordered] = OrderWindow(expcmdsn=cmdsn, statsn=statsn, size=window)
        self.tasks: dict[int, Task] = {}
        self.r2t_budget = R2T_BUDGET
        self.budget_waiters: deque[Task] = deque()
        self.dropped: deque[int] = deque(maxlen=64)  # ITTs of commands ended by a Reject
        self.ttts = _ttts()
        self.text_pending: tuple[int, bytes] | None = None  # (TTT, rest of a continued text response)
        self.discovery = False
        self.logged_out = False
        self.closed = False

    # --- hooks -------------------------------------------------------------------------------------

    def execute(self, task: Task, data: bytes | memoryview) -> None:
        """Run a command whose data has all arrived; ``complete`` it (or ``forget`` it) when it ends."""
        raise NotImplementedError

    def task_management(self, req: P.TaskMgmtRequest) -> None:
        """A task management request, in CmdSN order; answer it with ``tmf_response``."""
        raise NotImplementedError

    def text_body(self, req: P.TextRequest) -> bytes:
        """The text response to a new Text Request (SendTargets, §12.3)."""
        raise NotImplementedError

    def logout_accepted(self) -> None:
        """The initiator logged out: close the connection once the response is written."""

    # --- the window --------------------------------------------------------------------------------

    @property
    def expcmdsn(self) -> int:
        return self.window.expcmdsn

    @property
    def maxcmdsn(self) -> int:
        return self.window.maxcmdsn

    @property
    def statsn(self) -> int:
        return self.window.statsn

    def reject(self, header: bytes, reason: RejectReason) -> None:
        w = self.window
        self.send(P.Reject(data=header[:48], reason=reason, statsn=w.next_statsn(), expcmdsn=w.expcmdsn,
                           maxcmdsn=w.maxcmdsn, datasn=0))

    # --- intake ----------------------------------------------------------------------------------

    def receive(self, pdu: P.Pdu, header: bytes) -> None:
        """Handle one decoded PDU from the initiator."""
        if type(pdu) is P.DataOut:
            self._data_out(pdu, header)
        elif isinstance(pdu, P.NopOut) and pdu.itt == RESERVED_TAG:
            pass  # the answer to one of our NOP-In pings: its arrival is all that matters
        elif isinstance(pdu, P.Snack):
            self.reject(header, RejectReason.SNACK_REJECT)  # ErrorRecoveryLevel 0 (RFC 7143 §11.16)
        elif isinstance(pdu, Ordered):
            self._ordered(pdu, header)
        else:
            self.reject(header, RejectReason.PROTOCOL_ERROR)

    def _ordered(self, pdu: Ordered, header: bytes) -> None:
        """Commands go through the CmdSN window (§4.2.2.1); immediate ones are delivered at once."""
        if pdu.immediate:
            self._deliver(pdu, header)
            return
        w = self.window
        if not w.within(pdu.cmdsn):
            # The RFC lets a target drop these silently; a Reject tells the initiator at once instead.
            log.warning("%s: CmdSN %d outside the window [%d, %d]", self.initiator_name, pdu.cmdsn, w.expcmdsn,
                        w.maxcmdsn)
            self.reject(header, RejectReason.PROTOCOL_ERROR)
            return
        for ready in w.arrive(pdu.cmdsn, pdu):
            self._deliver(ready, header if ready is pdu else ready.encode_header())

    def skip(self, cmdsn: int) -> None:
        """Count ``cmdsn`` as received, never to run (ABORT TASK named it before it arrived, §11.6.1 b)."""
        for ready in self.window.skip(cmdsn):
            self._deliver(ready, ready.encode_header())

    def unarrived(self, itt: int, refcmdsn: int, cmdsn: int) -> bool:
        """Whether ABORT TASK for (ITT, RefCmdSN), sent with ``cmdsn``, names a command not delivered yet
        (not arrived, or held behind a gap), inside the window and before the TMF (§11.6.1 b)."""
        w = self.window
        queued = w.waiting.get(refcmdsn)
        return (itt not in self.tasks and (queued is None or queued.itt == itt) and sn_lt(refcmdsn, cmdsn)
                and w.within(refcmdsn))

    def _deliver(self, pdu: Ordered, header: bytes) -> None:
        if type(pdu) is P.ScsiCommand:
            self._scsi_command(pdu, header)
        elif isinstance(pdu, P.NopOut):
            w = self.window
            self.send(P.NopIn(data=pdu.data, lun=pdu.lun, itt=pdu.itt, statsn=w.next_statsn(),
                              expcmdsn=w.expcmdsn, maxcmdsn=w.maxcmdsn))
        elif isinstance(pdu, P.TextRequest):
            self._text(pdu, header)
        elif isinstance(pdu, P.LogoutRequest):
            self._logout(pdu)
        elif isinstance(pdu, P.TaskMgmtRequest):
            self.task_management(pdu)

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
            self.window.outstanding += 1
        if cmd.write and cmd.edtl:
            if cmd.edtl > MAX_EDTL:  # ILLEGAL REQUEST / INVALID FIELD IN CDB (24h/00h)
                self.complete(task, Status.CHECK_CONDITION, sense=build_fixed_sense(0x05, 0x24, 0x00))
                return
            if cmd.data:
                task.chunks.append((0, bytes(cmd.data)))
            task.plan = WritePlan.start(cmd.edtl, len(cmd.data), initial_r2t=p.initial_r2t,
                                        first_burst_length=p.first_burst_length)
            self._solicit(task)
            if not task.plan.complete:
                return
        self._run(task)

    def _solicit(self, task: Task) -> None:
        """R2Ts for the rest of the task's data, within MaxOutstandingR2T. The whole solicited length is
        reserved from the session's byte budget at once, so that tasks cannot deadlock on it."""
        plan = task.plan
        assert plan is not None
        if task.reserved == 0 and plan.to_solicit:
            need = plan.to_solicit
            if need > self.r2t_budget:
                if not task.waiting_budget:
                    task.waiting_budget = True
                    self.budget_waiters.append(task)
                return
            self.r2t_budget -= need
            task.reserved = need
        p, w, cmd = self.params, self.window, task.cmd
        for ttt, r2tsn, offset, length in plan.solicit(self.ttts, max_burst_length=p.max_burst_length,
                                                       max_outstanding_r2t=p.max_outstanding_r2t):
            self.send(P.R2T(lun=cmd.lun, itt=cmd.itt, ttt=ttt, statsn=w.statsn, expcmdsn=w.expcmdsn,
                            maxcmdsn=w.maxcmdsn, r2tsn=r2tsn, offset=offset, length=length))

    def _data_out(self, d: P.DataOut, header: bytes) -> None:
        task = self.tasks.get(d.itt)
        if task is None and d.itt in self.dropped:
            return  # the rest of a command already rejected
        plan = task.plan if task is not None else None
        if task is None or plan is None or task.executing:
            log.warning("%s: Data-Out for unknown or finished ITT 0x%08x", self.initiator_name, d.itt)
            self.reject(header, RejectReason.INVALID_PDU_FIELD)
            return
        n = len(d.data)
        if n > self.params.max_recv_data_segment_length or not plan.knows(d.ttt):
            self.reject(header, RejectReason.PROTOCOL_ERROR if plan.knows(d.ttt) else RejectReason.INVALID_PDU_FIELD)
            return
        expected = plan.accept(d.ttt, d.offset, d.datasn, n, d.final)
        if expected is not None:
            # The command cannot complete (ErrorRecoveryLevel 0 has no recovery within a command): the
            # Reject ends it at the initiator (§11.17.1), and the target drops it without a response.
            # The rest of the session is unharmed.
            log.warning("%s: Data-Out for ITT 0x%08x at offset %d DataSN %d; expected offset %d DataSN %d "
                        "(RFC 7143 11.7.5); the command is rejected", self.initiator_name, d.itt, d.offset,
                        d.datasn, *expected)
            self.reject(header, RejectReason.PROTOCOL_ERROR)
            self.forget(task)
            self.dropped.append(d.itt)
            return
        if n:
            task.chunks.append((d.offset, bytes(d.data)))
        if plan.complete:
            self._run(task)
        else:
            self._solicit(task)

    def _release_budget(self, task: Task) -> None:
        if task.reserved:
            self.r2t_budget += task.reserved
            task.reserved = 0
        while self.budget_waiters:
            waiter = self.budget_waiters[0]
            assert waiter.plan is not None
            if waiter.plan.to_solicit > self.r2t_budget:
                break
            self.budget_waiters.popleft()
            waiter.waiting_budget = False
            self._solicit(waiter)

    def _run(self, task: Task) -> None:
        data = _assemble(task)
        task.chunks = []
        task.executing = True
        self.execute(task, data)

    def forget(self, task: Task) -> None:
        """The task ends without a response (aborted, or its connection is gone)."""
        if self.tasks.pop(task.cmd.itt, None) is task and not task.immediate:
            self.window.outstanding -= 1
        self._release_budget(task)
        if task.waiting_budget:
            self.budget_waiters.remove(task)
            task.waiting_budget = False

    def complete(self, task: Task, status: int, *, sense: bytes = b"", data: bytes | bytearray | memoryview = b"",
                 data_out_length: int = 0) -> None:
        """The command ended with ``status``: Data-In (status collapsed into the last one when GOOD,
        §11.7.4) and/or a SCSI Response with the residual (§11.4.5)."""
        self.forget(task)
        if self.closed:
            return
        cmd = task.cmd
        edtl = cmd.edtl
        produced = len(data) if not cmd.write else data_out_length
        send_len = min(len(data), edtl) if cmd.read else 0
        residual, over, under = 0, False, False
        if produced > edtl:
            residual, over = produced - edtl, True
        elif produced < edtl:
            residual, under = edtl - produced, True
        collapse = status == Status.GOOD and not sense
        datasn = 0
        if send_len:
            datasn = self._data_in(cmd, memoryview(data)[:send_len], status if collapse else None, residual,
                                   over, under)
            if collapse:
                return
        w = self.window
        payload = len(sense).to_bytes(2, "big") + sense if sense else b""
        r2tsn = task.plan.r2tsn if task.plan is not None else 0
        self.send(P.ScsiResponse(data=payload, status=status, overflow=over, underflow=under, residual=residual,
                                 itt=cmd.itt, statsn=w.next_statsn(), expcmdsn=w.expcmdsn, maxcmdsn=w.maxcmdsn,
                                 expdatasn=r2tsn + datasn))

    def _data_in(self, cmd: P.ScsiCommand, data: memoryview, status: int | None, residual: int, over: bool,
                 under: bool) -> int:
        """Data-In PDUs of at most the initiator's MaxRecvDataSegmentLength, DataSN from 0, F at the end of
        each burst of MaxBurstLength (§11.7.1); with ``status`` the last one carries it. Returns the count."""
        seg = self.params.max_send_data_segment_length
        burst = self.params.max_burst_length
        total = len(data)
        offset = datasn = 0
        send, w = self.send, self.window
        while offset < total:
            n = min(seg, total - offset, burst - offset % burst)
            end = offset + n
            last = end == total
            if last and status is not None:
                send(P.DataIn(data=data[offset:end], final=True, has_status=True, status=status, overflow=over,
                              underflow=under, residual=residual, lun=cmd.lun, itt=cmd.itt,
                              statsn=w.next_statsn(), expcmdsn=w.expcmdsn, maxcmdsn=w.maxcmdsn, datasn=datasn,
                              offset=offset))
            else:
                send(P.DataIn(data=data[offset:end], final=last or end % burst == 0, lun=cmd.lun, itt=cmd.itt,
                              expcmdsn=w.expcmdsn, maxcmdsn=w.maxcmdsn, datasn=datasn, offset=offset))
            offset = end
            datasn += 1
        return datasn

    # --- task management, text, logout ----------------------------------------------------------

    def tmf_response(self, req: P.TaskMgmtRequest, response: int) -> None:
        if not self.closed:
            w = self.window
            self.send(P.TaskMgmtResponse(response=response, itt=req.itt, statsn=w.next_statsn(),
                                         expcmdsn=w.expcmdsn, maxcmdsn=w.maxcmdsn))

    def _text(self, req: P.TextRequest, header: bytes) -> None:
        """A text exchange (SendTargets in a normal session, §12.3), with C-bit continuation (§11.10)."""
        if req.ttt != RESERVED_TAG:
            if self.text_pending is None or self.text_pending[0] != req.ttt:
                self.reject(header, RejectReason.INVALID_PDU_FIELD)
                return
            body = self.text_pending[1]
        else:
            body = self.text_body(req)
        seg = self.params.max_send_data_segment_length
        more = len(body) > seg
        ttt = RESERVED_TAG
        if more:
            ttt = next(self.ttts)
            self.text_pending = (ttt, body[seg:])
        else:
            self.text_pending = None
        w = self.window
        self.send(P.TextResponse(data=body[:seg], final=not more, cont=more, lun=req.lun, itt=req.itt, ttt=ttt,
                                 statsn=w.next_statsn(), expcmdsn=w.expcmdsn, maxcmdsn=w.maxcmdsn))

    def _logout(self, req: P.LogoutRequest) -> None:
        response = LogoutResponse.SUCCESS
        if req.reason == LogoutReason.REMOVE_CONNECTION_FOR_RECOVERY:
            response = LogoutResponse.RECOVERY_NOT_SUPPORTED
        w = self.window
        self.send(P.LogoutResponse(response=response, itt=req.itt, statsn=w.next_statsn(), expcmdsn=w.expcmdsn,
                                   maxcmdsn=w.maxcmdsn, time2wait=0, time2retain=0))
        if response == LogoutResponse.SUCCESS:
            self.logged_out = True
            self.logout_accepted()


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
