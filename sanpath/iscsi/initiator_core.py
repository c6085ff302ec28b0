"""The initiator role of a session in full feature phase (RFC 7143, ErrorRecoveryLevel 0), sans-IO.

Owns the command window (``IssueWindow``), the ITT table and the PDUs both ways: SCSI commands with
immediate and unsolicited data, Data-Out for each R2T, Data-In in DataSN order, SCSI Responses, and the
requests that are not SCSI commands (NOP-Out, task management, text, logout) with their replies.

Every entry of the ITT table records which reply it expects and what becomes of it when the connection
goes (``OnReconnect``). A reply of another kind is a ``RemoteProtocolError`` naming the PDU, the ITT and
what that ITT waits for; the connection then drops it (ErrorRecoveryLevel 0 has nothing better).

It is given ``send`` (writes a PDU); a subclass gets the hooks ``command_ended`` (a SCSI command's
result or error), ``request_ended`` (a request's reply or error), ``window_opened`` and
``async_message``. The asyncio session (``sanpath.initiator.session``) is that subclass: futures,
timers and reconnection are all it adds.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import IscsiError, RemoteProtocolError
from . import pdu as P
from .constants import RESERVED_TAG, LogoutReason, Opcode
from .keys import SessionParams
from .r2t import data_out_sequence
from .window import IssueWindow

log = logging.getLogger(__name__)


class OnReconnect(Enum):
    """What becomes of a pending ITT when its connection is lost (ErrorRecoveryLevel 0: nothing resumes)."""

    FAIL = "fail"  # ends with the connection's error: the caller may reissue it, on another path too
    DROP = "drop"  # forgotten: a keep-alive NOP-Out means nothing once the connection is gone
    SUCCEED = "succeed"  # ends as if answered: a logout is as complete as it gets when the connection goes


@dataclass(slots=True)
class CommandResult:
    """How a SCSI command ended. ``data`` is the Data-In actually received."""

    status: int
    sense: bytes = b""
    data: memoryview = field(default_factory=lambda: memoryview(b""))
    residual: int = 0
    overflow: bool = False
    underflow: bool = False


# the replies a SCSI command expects (§11.4, §11.7.2, §11.8)
SCSI_REPLIES = (P.DataIn, P.R2T, P.ScsiResponse)


@dataclass(slots=True, eq=False)
class ScsiTask:
    """A SCSI command in flight: where its Data-In goes, its Data-Out, and the DataSN expected next."""

    itt: int
    lun: int
    cdb: bytes
    edtl: int
    buffer: memoryview | None  # where Data-In goes
    data_out: memoryview | None
    waiter: Any  # the subclass's: who is told how it ended
    datasn: int = 0
    limit: float = 0.0  # the command timeout, seconds (0: none)
    deadline: float = 0.0  # when it times out (0: none, or already escalated)
    ended: bool = False

    expects = SCSI_REPLIES
    on_reconnect = OnReconnect.FAIL


@dataclass(slots=True, eq=False)
class Request:
    """A request that is not a SCSI command, waiting for its one reply."""

    itt: int
    expects: type[P.Pdu]
    on_reconnect: OnReconnect
    waiter: Any = None  # the subclass's: who is told how it ended


def _discard(pdu: P.Pdu) -> None:
    """``send`` before there is a connection to send on."""


class InitiatorCore:
    """Full feature phase of one session, for the initiator. See the module comment for the hooks."""

    def __init__(self, portal: str) -> None:
        self.portal = portal
        self.params = SessionParams()
        self.window = IssueWindow()
        self.itts: dict[int, ScsiTask | Request] = {}
        self._itt = itertools.count(1)
        self.send: Callable[[P.Pdu], None] = _discard

    # --- hooks ---------------------------------------------------------------------------------

    def command_ended(self, task: ScsiTask, outcome: CommandResult | BaseException) -> None:
        raise NotImplementedError

    def request_ended(self, request: Request, outcome: P.Pdu | BaseException | None) -> None:
        """A request's reply, or its error; None when it ended with its connection, unanswered, as its
        ``on_reconnect`` (SUCCEED) allows."""
        raise NotImplementedError

    def window_opened(self) -> None:
        """MaxCmdSN moved up: commands waiting for room may go."""

    def async_message(self, pdu: P.AsyncMessage) -> None:
        """An Asynchronous Message (§11.9), already counted in the sequence numbers."""

    # --- state -----------------------------------------------------------------------------------

    def full_feature(self, params: SessionParams, *, expcmdsn: int, maxcmdsn: int, expstatsn: int) -> None:
        self.params = params
        self.window.logged_in(expcmdsn=expcmdsn, maxcmdsn=maxcmdsn, expstatsn=expstatsn)

    def next_itt(self) -> int:
        """A fresh Initiator Task Tag (never the reserved ffffffffh)."""
        while True:
            itt = next(self._itt) & 0xFFFFFFFF
            if itt != RESERVED_TAG and itt not in self.itts:
                return itt

    def scsi_tasks(self) -> list[ScsiTask]:
        return [t for t in self.itts.values() if type(t) is ScsiTask]

    def connection_gone(self, error: BaseException) -> None:
        """The connection is lost: every pending ITT ends as its ``on_reconnect`` says."""
        pending, self.itts = self.itts, {}
        for entry in pending.values():
            if entry.on_reconnect is OnReconnect.DROP:
                continue
            if type(entry) is ScsiTask:
                self._end(entry, error)
            elif isinstance(entry, Request):
                self.request_ended(entry, error if entry.on_reconnect is OnReconnect.FAIL else None)

    # --- SCSI commands ---------------------------------------------------------------------------

    def issue(self, lun: int, cdb: bytes, data_out: bytes | bytearray | memoryview | None, read_length: int,
              buffer: bytearray | memoryview | None, waiter: Any) -> ScsiTask:
        """Send one command now, with its immediate and unsolicited data (the caller has checked that the
        window is open, ``window.open``)."""
        out = memoryview(data_out).cast("B") if data_out is not None else None
        buf: memoryview | None = None
        if read_length:
            buf = memoryview(buffer if buffer is not None else bytearray(read_length)).cast("B")[:read_length]
        edtl = len(out) if out is not None else read_length
        itt = self.next_itt()
        task = ScsiTask(itt, lun, cdb, edtl, buf, out, waiter)
        self.itts[itt] = task
        p, w = self.params, self.window
        immediate = b"" if out is None or not p.immediate_data else out[: min(edtl, p.first_burst_length,
                                                                                  p.max_send_data_segment_length)]
        self.send(P.ScsiCommand(data=immediate, read=bool(read_length), write=out is not None and edtl > 0,
                                lun=P.lun_to_field(lun), itt=itt, edtl=edtl, cmdsn=w.take(),
                                expstatsn=w.expstatsn, cdb=cdb))
        if out is not None and not p.initial_r2t and len(immediate) < min(edtl, p.first_burst_length):
            self._data_out(task, len(immediate), min(edtl, p.first_burst_length) - len(immediate), RESERVED_TAG)
        return task

    def _data_out(self, task: ScsiTask, offset: int, length: int, ttt: int) -> None:
        """Data-Out PDUs for ``[offset, offset+length)`` of the task's data, one sequence (§11.7)."""
        data = task.data_out
        assert data is not None
        send, lun, itt, expstatsn = self.send, P.lun_to_field(task.lun), task.itt, self.window.expstatsn
        for start, n, final, datasn in data_out_sequence(offset, length, self.params.max_send_data_segment_length):
            send(P.DataOut(data=data[start : start + n], final=final, lun=lun, itt=itt, ttt=ttt,
                           expstatsn=expstatsn, datasn=datasn, offset=start))

    def forget(self, task: ScsiTask) -> None:
        """Stop tracking a command (its caller gave up); nothing is sent."""
        if self.itts.get(task.itt) is task:
            del self.itts[task.itt]

    def in_flight(self, task: ScsiTask) -> bool:
        """Whether a command still waits for its end (neither ended nor forgotten)."""
        return not task.ended and self.itts.get(task.itt) is task

    def fail(self, task: ScsiTask, error: BaseException) -> None:
        """End a command with ``error`` without telling the target."""
        self.forget(task)
        self._end(task, error)

    def abandon(self, lun: int, error: BaseException) -> int:
        """Fail every command in flight to ``lun`` with ``error`` without telling the target: for commands
        a LUN reset has aborted (no response will ever come for them, RFC 7143 §4.2.3.3)."""
        tasks = [t for t in self.scsi_tasks() if t.lun == lun]
        for task in tasks:
            self.fail(task, error)
        return len(tasks)

    def _end(self, task: ScsiTask, outcome: CommandResult | BaseException) -> None:
        if not task.ended:
            task.ended = True
            self.command_ended(task, outcome)

    def _complete(self, task: ScsiTask, result: CommandResult) -> None:
        # Payloads placed straight into the buffer leave no count behind; the residual says how much
        # of the expected length arrived (§11.4.5).
        if task.buffer is not None:
            result.data = task.buffer[: max(0, task.edtl - result.residual) if result.underflow else task.edtl]
        self.forget(task)
        self._end(task, result)

    # --- requests that are not SCSI commands -------------------------------------------------------

    def _request(self, expects: type[P.Pdu], on_reconnect: OnReconnect, waiter: Any) -> Request:
        request = Request(self.next_itt(), expects, on_reconnect, waiter)
        self.itts[request.itt] = request
        return request

    def nop_out(self, data: bytes = b"", *, waiter: Any = None, keepalive: bool = False) -> Request:
        """A NOP-Out ping (§11.18); a keep-alive one is dropped, not failed, if the connection goes."""
        r = self._request(P.NopIn, OnReconnect.DROP if keepalive else OnReconnect.FAIL, waiter)
        w = self.window
        self.send(P.NopOut(immediate=True, itt=r.itt, cmdsn=w.cmdsn, expstatsn=w.expstatsn, data=data))
        return r

    def task_mgmt_request(self, function: int, lun: int, rtt: int, *, waiter: Any) -> Request:
        """A task management function request (§11.5), immediate; RefCmdSN is the next CmdSN."""
        r = self._request(P.TaskMgmtResponse, OnReconnect.FAIL, waiter)
        w = self.window
        self.send(P.TaskMgmtRequest(immediate=True, function=function, lun=P.lun_to_field(lun), itt=r.itt, rtt=rtt,
                                    cmdsn=w.cmdsn, expstatsn=w.expstatsn, refcmdsn=w.cmdsn))
        return r

    def text_request(self, data: bytes, *, waiter: Any, continuing: Request | None = None,
                     ttt: int = RESERVED_TAG) -> Request:
        """A Text Request (§11.10); ``continuing`` with the target's TTT asks for the rest of a reply."""
        r = continuing if continuing is not None else self._request(P.TextResponse, OnReconnect.FAIL, waiter)
        r.waiter = waiter
        self.itts[r.itt] = r
        w = self.window
        self.send(P.TextRequest(immediate=True, data=data, final=True, itt=r.itt, ttt=ttt, cmdsn=w.cmdsn,
                                expstatsn=w.expstatsn))
        return r

    def logout_request(self, *, waiter: Any) -> Request:
        """Logout Request, closing the session (§11.14)."""
        r = self._request(P.LogoutResponse, OnReconnect.SUCCEED, waiter)
        w = self.window
        self.send(P.LogoutRequest(immediate=True, reason=LogoutReason.CLOSE_SESSION, itt=r.itt, cmdsn=w.cmdsn,
                                  expstatsn=w.expstatsn))
        return r

    def cancel(self, request: Request) -> None:
        """Stop waiting for a request's reply (it timed out); a late reply is then ignored."""
        if self.itts.get(request.itt) is request:
            del self.itts[request.itt]

    # --- receiving -------------------------------------------------------------------------------

    def place_data_in(self, header: bytes, data_len: int) -> memoryview | None:
        """``PduReader``'s placement: a Data-In payload goes into its command's buffer at the PDU's
        BufferOffset (§11.7.4). Anything else, or a payload that does not fit, comes with its PDU (and
        ``receive`` says what is wrong with it)."""
        if header[0] & 0x3F != Opcode.DATA_IN:
            return None
        task = self.itts.get(int.from_bytes(header[16:20], "big"))
        if type(task) is not ScsiTask or task.buffer is None:
            return None
        offset = int.from_bytes(header[40:44], "big")
        if offset + data_len > len(task.buffer):
            return None
        return task.buffer[offset : offset + data_len]

    def receive(self, pdu: P.Pdu) -> None:
        """Handle one PDU from the target in full feature phase."""
        w = self.window
        if type(pdu) is P.DataIn:  # the hot path of a read workload: checked first, by identity
            if pdu.has_status:
                w.expstatsn = (pdu.statsn + 1) & 0xFFFFFFFF
            if w.update(pdu.expcmdsn, pdu.maxcmdsn):
                self.window_opened()
            self._data_in(pdu)
            return
        if isinstance(pdu, P.ScsiResponse | P.TaskMgmtResponse | P.TextResponse | P.LogoutResponse | P.Reject
                      | P.AsyncMessage | P.NopIn):
            if type(pdu) is not P.NopIn or pdu.itt != RESERVED_TAG:  # a target's ping carries no status
                w.status(pdu.statsn)
            if w.update(pdu.expcmdsn, pdu.maxcmdsn):
                self.window_opened()
        elif isinstance(pdu, P.R2T) and w.update(pdu.expcmdsn, pdu.maxcmdsn):
            self.window_opened()
        if type(pdu) is P.ScsiResponse:
            task = self._scsi_entry(pdu)
            if task is not None:
                self._complete(task, CommandResult(pdu.status, pdu.sense, residual=pdu.residual,
                                                   overflow=pdu.overflow, underflow=pdu.underflow))
        elif type(pdu) is P.R2T:
            self._r2t(pdu)
        elif type(pdu) is P.NopIn and pdu.itt == RESERVED_TAG:
            if pdu.ttt != RESERVED_TAG:  # the target pings us: answer (§11.18)
                self.send(P.NopOut(immediate=True, lun=pdu.lun, itt=RESERVED_TAG, ttt=pdu.ttt, cmdsn=w.cmdsn,
                                   expstatsn=w.expstatsn))
        elif isinstance(pdu, P.NopIn | P.TaskMgmtResponse | P.TextResponse | P.LogoutResponse):
            self._reply(pdu)
        elif isinstance(pdu, P.Reject):
            self._reject(pdu)
        elif isinstance(pdu, P.AsyncMessage):
            self.async_message(pdu)
        else:
            raise RemoteProtocolError(f"{type(pdu).__name__} from the target in full feature phase "
                                      "(RFC 7143 11.1)")

    def _wrong_kind(self, pdu: P.Pdu, itt: int, entry: ScsiTask | Request) -> RemoteProtocolError:
        waits = (f"a {entry.expects.__name__}" if isinstance(entry, Request)
                 else "a SCSI command's Data-In, R2T or SCSI Response")
        return RemoteProtocolError(f"{type(pdu).__name__} for ITT 0x{itt:08x}, which awaits {waits} "
                                   "(full feature phase, RFC 7143 11)")

    def _scsi_entry(self, pdu: P.DataIn | P.R2T | P.ScsiResponse) -> ScsiTask | None:
        entry = self.itts.get(pdu.itt)
        if entry is None or type(entry) is ScsiTask:
            return entry
        raise self._wrong_kind(pdu, pdu.itt, entry)

    def _reply(self, pdu: P.NopIn | P.TaskMgmtResponse | P.TextResponse | P.LogoutResponse) -> None:
        entry = self.itts.get(pdu.itt)
        if entry is None:
            return  # its waiter gave up (timed out) before it came
        if type(entry) is not Request or type(pdu) is not entry.expects:
            raise self._wrong_kind(pdu, pdu.itt, entry)
        del self.itts[pdu.itt]
        self.request_ended(entry, pdu)

    def _r2t(self, r2t: P.R2T) -> None:
        task = self._scsi_entry(r2t)
        if task is None or task.data_out is None or r2t.offset + r2t.length > task.edtl:
            raise RemoteProtocolError(f"R2T for ITT 0x{r2t.itt:08x} at {r2t.offset}+{r2t.length} does not match "
                                      "a write in flight (RFC 7143 11.8)")
        self._data_out(task, r2t.offset, r2t.length, r2t.ttt)

    def _data_in(self, d: P.DataIn) -> None:
        task = self._scsi_entry(d)
        if task is None:
            raise RemoteProtocolError(f"Data-In for unknown ITT 0x{d.itt:08x}")
        if d.datasn != task.datasn:
            raise RemoteProtocolError(f"Data-In DataSN {d.datasn}, expected {task.datasn} (RFC 7143 11.7.5)")
        task.datasn += 1
        n = len(d.data)
        if n:  # the connection places payloads in task.buffer itself; this is for the ones it did not
            if task.buffer is None or d.offset + n > len(task.buffer):
                raise RemoteProtocolError(f"Data-In at {d.offset}+{n} beyond the expected length {task.edtl}")
            task.buffer[d.offset : d.offset + n] = d.data
        if d.has_status:
            self._complete(task, CommandResult(d.status, b"", residual=d.residual, overflow=d.overflow,
                                               underflow=d.underflow))

    def _reject(self, pdu: P.Reject) -> None:
        itt = int.from_bytes(pdu.data[16:20], "big") if len(pdu.data) >= 48 else RESERVED_TAG
        error = IscsiError(f"the target rejected a PDU (reason 0x{pdu.reason:02x}, RFC 7143 11.17.1)",
                           portal=self.portal)
        entry = self.itts.pop(itt, None)
        if type(entry) is ScsiTask:
            self._end(entry, error)
        elif isinstance(entry, Request):
            self.request_ended(entry, error)
        else:
            log.warning("%s: %s", self.portal, error)
