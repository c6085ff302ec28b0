"""An initiator session (RFC 7143, ErrorRecoveryLevel 0, one connection): login, the command window,
SCSI commands with immediate, unsolicited and solicited data, Data-In, liveness, timeouts, reconnect.

Failure model, for the multipath layer above: when the connection goes, every command in flight fails
at once with ``ConnectionLost`` naming the portal and the cause, so the caller can reissue it on another
path. A command that does not complete within ``command_timeout`` is escalated: ABORT TASK, then LOGICAL
UNIT RESET, then the connection is dropped; the caller gets ``CommandTimeout``. With ``reconnect`` the
session logs in again in the background (same ISID, so the target reinstates it) with bounded,
backed-off retries; a refused login (wrong CHAP secret, ACL) is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import struct
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field

from sanpath.aio import within

from ..errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectionLost,
    IscsiError,
    LoginError,
    RemoteProtocolError,
)
from ..iscsi import pdu as P
from ..iscsi import text as T
from ..iscsi.auth import ChapCredentials, ChapInitiator
from ..iscsi.constants import RESERVED_TAG, AsyncEvent, LogoutReason, TaskFunction, TaskResponse
from ..iscsi.keys import SessionParams
from ..iscsi.serial import sn_lt
from ..scsi.constants import SenseKey, Status
from ..scsi.sense import parse_sense
from .connection import IscsiProtocol, open_connection
from .login import InitiatorLogin, LoginRedirect, default_keys

log = logging.getLogger(__name__)



def default_initiator_name() -> str:
    """This host's IQN: $SANPATH_INITIATOR_NAME, else iqn.2026-11.org.sanpath:<hostname>."""
    name = os.environ.get("SANPATH_INITIATOR_NAME")
    if name:
        return name
    host = "".join(c if c.isalnum() or c in ".-" else "-" for c in os.uname().nodename.lower()) or "host"
    return f"iqn.2026-11.org.sanpath:{host}"


_ISID_BASE = secrets.token_bytes(3)
_isid_counter = itertools.count(secrets.randbelow(0x10000))


def new_isid() -> bytes:
    """A random-type ISID (RFC 7143 §10.12.5, T=10b): 24 random bits per process, then a 16-bit counter,
    so sessions of one process never collide."""
    return bytes([0x80]) + _ISID_BASE + struct.pack(">H", next(_isid_counter) & 0xFFFF)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything needed to open one session. ``target`` None makes a discovery session."""

    host: str
    port: int = 3260
    target: str | None = None
    initiator_name: str = field(default_factory=default_initiator_name)
    source: str | None = None  # local address to bind: the storage NIC this path leaves through
    chap: ChapCredentials | None = None
    mutual: ChapCredentials | None = None  # what the target must prove (mutual CHAP)
    # CHAP_A values offered, in order of preference. MD5 alone by default, as open-iscsi does: some
    # targets (tgtd 1.0.x) pick SHA-256 (7) and then cannot check a 32-byte response. Add 7 to use
    # SHA-256 with targets that implement it.
    chap_algorithms: tuple[int, ...] = (5,)
    header_digest: bool = False
    data_digest: bool = False
    immediate_data: bool = True
    initial_r2t: bool = False
    max_recv_data_segment_length: int = 262144
    max_burst_length: int = 16776192
    first_burst_length: int = 262144
    login_timeout: float = 15.0
    nop_interval: float = 5.0  # open-iscsi's defaults: a NOP-Out every 5 s, 5 s to answer
    nop_timeout: float = 5.0
    command_timeout: float = 30.0
    ua_retries: int = 5
    reconnect: bool = False
    reconnect_attempts: int = 8
    reconnect_backoff: float = 0.5  # first wait; doubles up to 8 s
    isid: bytes | None = None  # reuse an ISID: logging in with it reinstates that session (§6.3.5)

    @property
    def portal(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(slots=True)
class CommandResult:
    """How a SCSI command ended. ``data`` is the Data-In actually received."""

    status: int
    sense: bytes = b""
    data: memoryview = field(default_factory=lambda: memoryview(b""))
    residual: int = 0
    overflow: bool = False
    underflow: bool = False


@dataclass(slots=True, eq=False)
class _Task:
    itt: int
    lun: int
    cdb: bytes
    edtl: int
    buffer: memoryview | None  # where Data-In goes
    data_out: memoryview | None
    future: asyncio.Future[CommandResult] | None  # who waits: ``execute`` (a future) ...
    callback: Callable[[CommandResult | BaseException], None] | None = None  # ... or ``start`` (a callback)
    datasn: int = 0
    limit: float = 0.0  # the command timeout, seconds (0: none)
    deadline: float = 0.0  # loop time when it times out (0: none, or already escalated)

    @property
    def done(self) -> bool:
        return self.future.done() if self.future is not None else self.callback is None

    def settle(self, outcome: CommandResult | BaseException) -> None:
        """Hand the command's result or error to whoever waits for it, once."""
        if self.future is not None:
            if not self.future.done():
                if isinstance(outcome, BaseException):
                    self.future.set_exception(outcome)
                else:
                    self.future.set_result(outcome)
        elif self.callback is not None:
            callback, self.callback = self.callback, None
            callback(outcome)


class Session:
    """One logged-in session. Use ``await Session.open(config)``."""

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.portal = config.portal
        self.isid = config.isid or new_isid()
        self.conn: IscsiProtocol | None = None
        self.params = SessionParams()
        self.tsih = 0
        self.tpgt: int | None = None
        self.cmdsn = 0
        self.expcmdsn = 0
        self.maxcmdsn = 0
        self.expstatsn = 0
        self._itt = itertools.count(1)
        self.tasks: dict[int, _Task] = {}
        self._waiters: dict[int, asyncio.Future[P.Pdu]] = {}  # ITT -> NOP/TMF/text/logout answer
        self._window: list[asyncio.Future[None]] = []
        self._login_q: asyncio.Queue[P.Pdu | str] | None = None  # str: the connection was lost
        self._ready = asyncio.Event()
        self._closing = False
        self._fatal: IscsiError | None = None
        self._nop_timer: asyncio.TimerHandle | None = None
        self._sweep: asyncio.TimerHandle | None = None  # the next command-timeout check
        self._sweep_at = 0.0
        self._loop: asyncio.AbstractEventLoop  # the running loop, set when the session connects
        self._ping_deadline: float | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self.lost_count = 0
        self.unit_attentions = 0  # commands retried after UNIT ATTENTION
        self.lost_listeners: list[Callable[[str], None]] = []
        self._background: set[asyncio.Task[None]] = set()  # told at once when the connection goes

    # --- opening, login ----------------------------------------------------------------------

    @classmethod
    async def open(cls, config: SessionConfig) -> Session:
        session = cls(config)
        await session._connect_and_login(config.host, config.port)
        return session

    async def _connect_and_login(self, host: str, port: int, redirects: int = 0) -> None:
        cfg = self.config
        self._loop = loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.login_timeout
        try:
            conn = await open_connection(lambda: self, host, port, source=cfg.source, timeout=cfg.login_timeout)
        except (OSError, TimeoutError) as e:
            raise ConnectionLost(f"cannot connect: {e or 'timed out'}", portal=self.portal,
                                 cause="connect failed") from None
        self.conn = conn
        self._login_q = asyncio.Queue()
        chap = (ChapInitiator(cfg.chap, target=cfg.mutual, algorithms=cfg.chap_algorithms)
                if cfg.chap is not None else None)
        login = InitiatorLogin(initiator_name=cfg.initiator_name, target_name=cfg.target, isid=self.isid,
                               portal=self.portal, chap=chap, cmdsn=self.cmdsn,
                               keys=default_keys(max_recv_data_segment_length=cfg.max_recv_data_segment_length,
                                                 max_burst_length=cfg.max_burst_length,
                                                 first_burst_length=cfg.first_burst_length,
                                                 immediate_data=cfg.immediate_data, initial_r2t=cfg.initial_r2t,
                                                 header_digest=cfg.header_digest, data_digest=cfg.data_digest))
        try:
            req: P.LoginRequest | None = login.start()
            while req is not None:
                conn.send(req)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                resp = await within(self._login_q.get(), remaining)
                if isinstance(resp, str):
                    raise ConnectionLost(f"during login: {resp}", portal=self.portal, cause=resp)
                if not isinstance(resp, P.LoginResponse):
                    raise RemoteProtocolError(f"{type(resp).__name__} during login (RFC 7143 6)")
                req = login.receive(resp)
        except LoginRedirect as r:
            self.conn = None
            conn.abort("redirected")
            if redirects >= 4:
                raise LoginError("too many login redirections", portal=self.portal) from None
            from .url import parse_host_port

            h, p = parse_host_port(r.address.split(",")[0], what="TargetAddress")
            log.info("%s: %s", self.portal, r)
            await self._connect_and_login(h, p, redirects + 1)
            return
        except TimeoutError:
            self.conn = None
            conn.abort("login timeout")
            raise ConnectionLost(f"login did not finish within {cfg.login_timeout:.0f} s", portal=self.portal,
                                 cause="login timeout") from None
        except (LoginError, AuthenticationError, RemoteProtocolError) as e:
            self.conn = None
            conn.abort(str(e))
            if isinstance(e, LoginError):
                raise
            raise LoginError(f"login failed: {e}", portal=self.portal) from None
        except ConnectionLost:
            self.conn = None
            raise
        finally:
            self._login_q = None
        if conn.transport is None:
            raise ConnectionLost("connection closed during login", portal=self.portal, cause="closed in login")
        result = login.result
        assert result is not None
        self.params = result.params
        self.tsih, self.tpgt = result.tsih, result.tpgt
        self.expstatsn, self.expcmdsn, self.maxcmdsn = result.expstatsn, result.expcmdsn, result.maxcmdsn
        self.cmdsn = result.expcmdsn
        conn.negotiated(header_digest=self.params.header_digest, data_digest=self.params.data_digest,
                        max_recv_data_segment_length=self.params.max_recv_data_segment_length)
        self._ready.set()
        self._schedule_nop()

    # --- sink interface (called by the connection) -----------------------------------------

    def data_in_buffer(self, itt: int) -> memoryview | None:
        task = self.tasks.get(itt)
        return task.buffer if task is not None else None

    def connection_lost(self, conn: IscsiProtocol, cause: str) -> None:
        if conn is not self.conn:
            return  # a connection we already gave up on (failed login, redirect)
        if self._login_q is not None:
            self._login_q.put_nowait(cause)  # the login in progress fails with this cause
            return
        self._ready.clear()
        self._cancel_nop()
        error = ConnectionLost(cause, portal=self.portal, cause=cause)
        for task in list(self.tasks.values()):
            self._fail(task, error)
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(error)
        self._waiters.clear()
        self._wake_window()
        if not self._closing:
            self.lost_count += 1
            log.warning("%s: %s", self.portal, cause)
            for listener in list(self.lost_listeners):
                listener(cause)
            if self.config.reconnect and self._fatal is None:
                if self._reconnector is None or self._reconnector.done():
                    self._reconnector = asyncio.get_running_loop().create_task(self._reconnect())
            elif self._fatal is None:
                self._fatal = error

    def pdu_received(self, pdu: P.Pdu) -> None:
        if self._login_q is not None:
            self._login_q.put_nowait(pdu)
            return
        if type(pdu) is P.DataIn:  # the hot path of a read workload: checked first, by identity
            if pdu.has_status:
                self.expstatsn = (pdu.statsn + 1) & 0xFFFFFFFF
            self._update_window(pdu.expcmdsn, pdu.maxcmdsn)
            self._data_in(pdu)
            return
        self._update_sn(pdu)
        if isinstance(pdu, P.ScsiResponse):
            task = self.tasks.get(pdu.itt)
            if task is not None:
                self._complete(task, CommandResult(pdu.status, pdu.sense, residual=pdu.residual,
                                                   overflow=pdu.overflow, underflow=pdu.underflow))
        elif isinstance(pdu, P.R2T):
            self._r2t(pdu)
        elif isinstance(pdu, P.NopIn):
            if pdu.itt == RESERVED_TAG:
                if pdu.ttt != RESERVED_TAG:  # the target pings us: answer (§11.18)
                    self._send(P.NopOut(immediate=True, lun=pdu.lun, itt=RESERVED_TAG, ttt=pdu.ttt,
                                        cmdsn=self.cmdsn, expstatsn=self.expstatsn))
            else:
                self._answer(pdu.itt, pdu)
        elif isinstance(pdu, P.TaskMgmtResponse | P.TextResponse | P.LogoutResponse):
            self._answer(pdu.itt, pdu)
        elif isinstance(pdu, P.Reject):
            self._reject(pdu)
        elif isinstance(pdu, P.AsyncMessage):
            self._async_message(pdu)

    # --- sequence numbers, window -----------------------------------------------------------

    def _update_sn(self, pdu: P.Pdu) -> None:
        """ExpStatSN, ExpCmdSN and MaxCmdSN from any PDU but Data-In (``pdu_received`` does those)."""
        statsn = getattr(pdu, "statsn", None)
        if statsn is not None and (
            isinstance(pdu, P.ScsiResponse | P.TaskMgmtResponse | P.TextResponse | P.LogoutResponse | P.Reject
                       | P.AsyncMessage)
            or (isinstance(pdu, P.NopIn) and pdu.itt != RESERVED_TAG)
        ):
            self.expstatsn = (statsn + 1) & 0xFFFFFFFF
        expcmdsn = getattr(pdu, "expcmdsn", None)
        maxcmdsn = getattr(pdu, "maxcmdsn", None)
        if expcmdsn is not None and maxcmdsn is not None:
            self._update_window(expcmdsn, maxcmdsn)

    def _update_window(self, expcmdsn: int, maxcmdsn: int) -> None:
        if sn_lt(maxcmdsn, (expcmdsn - 1) & 0xFFFFFFFF):
            return  # §4.2.2.1: ignore both values when MaxCmdSN < ExpCmdSN - 1
        if sn_lt(self.expcmdsn, expcmdsn):
            self.expcmdsn = expcmdsn
        if sn_lt(self.maxcmdsn, maxcmdsn):
            self.maxcmdsn = maxcmdsn
            self._wake_window()

    def _wake_window(self) -> None:
        waiters, self._window = self._window, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    async def _wait_window(self) -> None:
        """Wait until the session is logged in and the command window has room for a command."""
        while True:
            await self._wait_ready()
            if not sn_lt(self.maxcmdsn, self.cmdsn):
                return
            f = asyncio.get_running_loop().create_future()
            self._window.append(f)
            await f

    async def _wait_ready(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if not self._ready.is_set():
            if self._reconnector is None or self._reconnector.done():
                raise self._fatal or ConnectionLost("session is not logged in", portal=self.portal)
            await self._ready.wait()
            if self._fatal is not None:
                raise self._fatal

    def _send(self, pdu: P.Pdu) -> None:
        if self.conn is not None:
            self.conn.send(pdu)

    # --- SCSI commands ---------------------------------------------------------------------

    async def execute(self, lun: int, cdb: bytes, *, data_out: bytes | bytearray | memoryview | None = None,
                      read_length: int = 0, buffer: bytearray | memoryview | None = None,
                      timeout: float | None = None) -> CommandResult:
        """Run one SCSI command. Reads land in ``buffer`` (allocated when not given); a command that ends
        in UNIT ATTENTION is retried (``ua_retries`` times); other statuses are returned, not raised."""
        limit = timeout if timeout is not None else self.config.command_timeout
        attempts = self.config.ua_retries + 1
        while True:
            # Hot path: when the session is up and the window open (nearly always), the command is issued
            # without awaiting anything, so one I/O costs one suspension (on its future).
            if self._fatal is not None or not self._ready.is_set() or sn_lt(self.maxcmdsn, self.cmdsn):
                await self._wait_window()
            future = self._loop.create_future()
            task = self._issue(lun, cdb, data_out, read_length, buffer, limit, future)
            try:
                conn = self.conn
                if conn is not None and conn.writing_paused:
                    await conn.drain()
                result = await future
            except asyncio.CancelledError:
                if not future.done():  # the caller gave up: stop tracking it and abort it at the target
                    self._finish(task)
                    self._spawn(self._abort_quietly(task))
                raise
            attempts -= 1
            if not (attempts and self.unit_attention(lun, result)):
                return result

    def start(self, lun: int, cdb: bytes, callback: Callable[[CommandResult | BaseException], None], *,
              data_out: bytes | bytearray | memoryview | None = None, read_length: int = 0,
              buffer: bytearray | memoryview | None = None) -> bool:
        """Issue one SCSI command now, if the session is logged in, the command window open and the send
        buffer not full, and return True; otherwise issue nothing and return False (``execute`` waits).

        ``callback`` gets the ``CommandResult``, or the error (``ConnectionLost``, ``CommandTimeout``),
        later, from the event loop, and must not raise. A UNIT ATTENTION is not retried here. This is the
        fast path for engines that keep many commands in flight: no future, task or coroutine per command.
        """
        conn = self.conn
        if (self._fatal is not None or not self._ready.is_set() or sn_lt(self.maxcmdsn, self.cmdsn)
                or conn is None or conn.writing_paused):
            return False
        self._issue(lun, cdb, data_out, read_length, buffer, self.config.command_timeout, callback)
        return True

    def unit_attention(self, lun: int, result: CommandResult) -> bool:
        """Whether ``result`` is a UNIT ATTENTION (then counted and logged: the caller retries)."""
        if result.status != Status.CHECK_CONDITION or not result.sense:
            return False
        try:
            sense = parse_sense(result.sense)
        except (ValueError, RemoteProtocolError):
            return False
        if sense.key != SenseKey.UNIT_ATTENTION:
            return False
        self.unit_attentions += 1
        log.info("%s: LUN %d: %s; retrying", self.portal, lun, sense)
        return True

    def _issue(self, lun: int, cdb: bytes, data_out: bytes | bytearray | memoryview | None, read_length: int,
               buffer: bytearray | memoryview | None, limit: float,
               waiter: asyncio.Future[CommandResult] | Callable[[CommandResult | BaseException], None]) -> _Task:
        """Send one command now (the caller has checked the session is ready and the window open)."""
        out = memoryview(data_out).cast("B") if data_out is not None else None
        buf: memoryview | None = None
        if read_length:
            buf = memoryview(buffer if buffer is not None else bytearray(read_length)).cast("B")[:read_length]
        edtl = len(out) if out is not None else read_length
        itt = next(self._itt) & 0xFFFFFFFF
        loop = self._loop
        task = (_Task(itt, lun, cdb, edtl, buf, out, waiter) if isinstance(waiter, asyncio.Future)
                else _Task(itt, lun, cdb, edtl, buf, out, None, waiter))
        cmdsn = self.cmdsn
        self.cmdsn = (cmdsn + 1) & 0xFFFFFFFF
        self.tasks[itt] = task
        p = self.params
        immediate = b"" if out is None or not p.immediate_data else out[: min(edtl, p.first_burst_length,
                                                                                  p.max_send_data_segment_length)]
        self._send(P.ScsiCommand(data=immediate, read=bool(read_length), write=out is not None and edtl > 0,
                                 lun=P.lun_to_field(lun), itt=itt, edtl=edtl, cmdsn=cmdsn,
                                 expstatsn=self.expstatsn, cdb=cdb))
        if out is not None and not p.initial_r2t and len(immediate) < min(edtl, p.first_burst_length):
            self._send_data(task, len(immediate), min(edtl, p.first_burst_length) - len(immediate), RESERVED_TAG)
        if limit > 0:
            task.limit = limit
            task.deadline = loop.time() + limit
            if self._sweep is None or task.deadline < self._sweep_at:
                self._arm_sweep(task.deadline)
        return task

    async def _abort_quietly(self, task: _Task) -> None:
        with contextlib.suppress(IscsiError, TimeoutError):
            await self.task_management(TaskFunction.ABORT_TASK, task.lun, task.itt,
                                       timeout=max(1.0, self.config.nop_timeout))

    def _send_data(self, task: _Task, offset: int, length: int, ttt: int) -> None:
        """Data-Out PDUs for ``[offset, offset+length)`` of the task's data, one sequence (§11.7)."""
        assert task.data_out is not None
        seg = self.params.max_send_data_segment_length
        end = offset + length
        datasn = 0
        send = self._send
        lun = P.lun_to_field(task.lun)
        while offset < end:
            n = min(seg, end - offset)
            send(P.DataOut(data=task.data_out[offset : offset + n], final=offset + n == end, lun=lun,
                           itt=task.itt, ttt=ttt, expstatsn=self.expstatsn, datasn=datasn, offset=offset))
            offset += n
            datasn += 1

    def _r2t(self, r2t: P.R2T) -> None:
        task = self.tasks.get(r2t.itt)
        if task is None or task.data_out is None or r2t.offset + r2t.length > task.edtl:
            raise RemoteProtocolError(f"R2T for ITT 0x{r2t.itt:08x} at {r2t.offset}+{r2t.length} does not match "
                                      "a write in flight (RFC 7143 11.8)")
        self._send_data(task, r2t.offset, r2t.length, r2t.ttt)

    def _data_in(self, d: P.DataIn) -> None:
        task = self.tasks.get(d.itt)
        if task is None:
            raise RemoteProtocolError(f"Data-In for unknown ITT 0x{d.itt:08x}")
        if d.datasn != task.datasn:
            raise RemoteProtocolError(f"Data-In DataSN {d.datasn}, expected {task.datasn} (RFC 7143 11.7.5)")
        task.datasn += 1
        n = len(d.data)
        if n:  # the connection copies payloads into task.buffer itself; this is the fallback path
            if task.buffer is None or d.offset + n > len(task.buffer):
                raise RemoteProtocolError(f"Data-In at {d.offset}+{n} beyond the expected length {task.edtl}")
            task.buffer[d.offset : d.offset + n] = d.data
        if d.has_status:
            self._complete(task, CommandResult(d.status, b"", residual=d.residual, overflow=d.overflow,
                                               underflow=d.underflow))

    def _complete(self, task: _Task, result: CommandResult) -> None:
        # Payloads placed straight into the buffer leave no count behind; the residual says how much
        # of the expected length arrived (§11.4.5).
        if task.buffer is not None:
            result.data = task.buffer[: max(0, task.edtl - result.residual) if result.underflow else task.edtl]
        self._finish(task)
        task.settle(result)

    def abandon(self, lun: int, error: BaseException) -> int:
        """Fail every command in flight to ``lun`` with ``error`` without telling the target: for commands
        a LUN reset has aborted (no response will ever come for them, RFC 7143 §4.2.3.3)."""
        tasks = [t for t in self.tasks.values() if t.lun == lun]
        for task in tasks:
            self._fail(task, error)
        return len(tasks)

    def _fail(self, task: _Task, error: BaseException) -> None:
        self._finish(task)
        task.settle(error)

    def _finish(self, task: _Task) -> None:
        self.tasks.pop(task.itt, None)

    def _reject(self, pdu: P.Reject) -> None:
        itt = int.from_bytes(pdu.data[16:20], "big") if len(pdu.data) >= 48 else RESERVED_TAG
        error = IscsiError(f"the target rejected a PDU (reason 0x{pdu.reason:02x}, RFC 7143 11.17.1)",
                           portal=self.portal)
        task = self.tasks.get(itt)
        if task is not None:
            self._fail(task, error)
        elif itt in self._waiters:
            fut = self._waiters.pop(itt)
            if not fut.done():
                fut.set_exception(error)
        else:
            log.warning("%s: %s", self.portal, error)

    def _async_message(self, pdu: P.AsyncMessage) -> None:
        log.info("%s: asynchronous message, event %d", self.portal, pdu.event)
        if pdu.event in (AsyncEvent.DROP_CONNECTION, AsyncEvent.DROP_ALL_CONNECTIONS) and self.conn is not None:
            self.conn.abort(f"the target announced it drops the connection (async event {pdu.event})")
        elif pdu.event == AsyncEvent.LOGOUT_REQUEST and self.conn is not None:
            # The target wants us gone within Parameter3 seconds: at ERL 0 a drop and re-login will do.
            self.conn.abort("the target requested a logout (async event 1)")

    # --- timeouts and task management -------------------------------------------------------

    # Command timeouts: one timer per session, not one per command (a timer per command cost about as
    # much as the rest of issuing it). It is due at the earliest deadline of the commands in flight.

    def _arm_sweep(self, when: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = when
        self._sweep = asyncio.get_running_loop().call_at(when, self._sweep_tasks)

    def _sweep_tasks(self) -> None:
        self._sweep = None
        now = asyncio.get_running_loop().time()
        earliest = 0.0
        for task in list(self.tasks.values()):
            if not task.deadline:
                continue
            if task.deadline <= now:
                task.deadline = 0.0  # escalated once
                self._spawn(self._escalate(task))
            elif not earliest or task.deadline < earliest:
                earliest = task.deadline
        if earliest:
            self._arm_sweep(earliest)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run a background job, holding a reference until it ends (asyncio keeps only weak ones)."""
        job = asyncio.get_running_loop().create_task(coro)
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    async def _escalate(self, task: _Task) -> None:
        """ABORT TASK, then LOGICAL UNIT RESET, then drop the connection (the open-iscsi order)."""
        limit = task.limit
        log.warning("%s: command 0x%02x to LUN %d timed out after %.1f s; aborting it", self.portal, task.cdb[0],
                    task.lun, limit)
        error = CommandTimeout(f"command 0x{task.cdb[0]:02x} to LUN {task.lun} did not complete within "
                               f"{limit:.1f} s", portal=self.portal)
        step_timeout = max(1.0, self.config.nop_timeout)
        for function in (TaskFunction.ABORT_TASK, TaskFunction.LOGICAL_UNIT_RESET):
            if task.done:
                return
            try:
                response = await self.task_management(function, task.lun, task.itt, timeout=step_timeout)
            except (IscsiError, TimeoutError):
                continue
            if response in (TaskResponse.COMPLETE, TaskResponse.TASK_DOES_NOT_EXIST):
                self._fail(task, error)
                return
        if not task.done and self.conn is not None:
            self._fail(task, error)
            self.conn.abort(f"task management did not clear a timed-out command to LUN {task.lun}")

    async def task_management(self, function: int, lun: int, rtt: int = RESERVED_TAG, *,
                              timeout: float = 10.0) -> int:
        """Send a task management request (§11.5); returns the response code."""
        await self._wait_ready()
        itt = next(self._itt) & 0xFFFFFFFF
        fut: asyncio.Future[P.Pdu] = asyncio.get_running_loop().create_future()
        self._waiters[itt] = fut
        refcmdsn = self.cmdsn
        self._send(P.TaskMgmtRequest(immediate=True, function=function, lun=P.lun_to_field(lun), itt=itt, rtt=rtt,
                                     cmdsn=self.cmdsn, expstatsn=self.expstatsn, refcmdsn=refcmdsn))
        try:
            resp = await within(fut, timeout)
        finally:
            self._waiters.pop(itt, None)
        assert isinstance(resp, P.TaskMgmtResponse)
        return resp.response

    def _answer(self, itt: int, pdu: P.Pdu) -> None:
        fut = self._waiters.pop(itt, None)
        if fut is not None and not fut.done():
            fut.set_result(pdu)

    # --- liveness --------------------------------------------------------------------------------

    def _schedule_nop(self) -> None:
        if self.config.nop_interval > 0:
            step = min(self.config.nop_interval, self.config.nop_timeout) / 2
            self._nop_timer = asyncio.get_running_loop().call_later(step, self._nop_tick)

    def _cancel_nop(self) -> None:
        if self._nop_timer is not None:
            self._nop_timer.cancel()
            self._nop_timer = None
        self._ping_deadline = None

    def _nop_tick(self) -> None:
        """A NOP-Out when the line has been quiet for ``nop_interval``; the connection is dead when
        nothing at all (not just the NOP-In) arrives within ``nop_timeout`` of it."""
        conn = self.conn
        if conn is None or conn.transport is None:
            return
        now = asyncio.get_running_loop().time()
        cfg = self.config
        if self._ping_deadline is not None:
            if conn.last_rx >= self._ping_deadline - cfg.nop_timeout:
                self._ping_deadline = None  # something arrived: alive
            elif now >= self._ping_deadline:
                conn.abort(f"no response to NOP-Out within {cfg.nop_timeout:g} s (portal black-holed or dead)")
                return
        if self._ping_deadline is None and now - conn.last_rx >= cfg.nop_interval:
            # The answer needs no waiter: any PDU at all, this NOP-In included, resets conn.last_rx.
            itt = next(self._itt) & 0xFFFFFFFF
            self._send(P.NopOut(immediate=True, itt=itt, cmdsn=self.cmdsn, expstatsn=self.expstatsn))
            self._ping_deadline = now + cfg.nop_timeout
        self._schedule_nop()

    async def ping(self, timeout: float = 5.0) -> float:
        """A NOP-Out round trip; returns its duration in seconds."""
        await self._wait_ready()
        loop = asyncio.get_running_loop()
        itt = next(self._itt) & 0xFFFFFFFF
        fut: asyncio.Future[P.Pdu] = loop.create_future()
        self._waiters[itt] = fut
        start = loop.time()
        self._send(P.NopOut(immediate=True, itt=itt, cmdsn=self.cmdsn, expstatsn=self.expstatsn, data=b"ping"))
        try:
            await within(fut, timeout)
        finally:
            self._waiters.pop(itt, None)
        return loop.time() - start

    # --- reconnect -------------------------------------------------------------------------------

    async def _reconnect(self) -> None:
        cfg = self.config
        delay = cfg.reconnect_backoff
        for attempt in range(1, cfg.reconnect_attempts + 1):
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._connect_and_login(cfg.host, cfg.port)
                log.info("%s: reconnected (attempt %d)", self.portal, attempt)
                return
            except LoginError as e:
                if e.status >> 8 == 2:  # initiator error (auth, ACL, not found): retrying cannot help
                    self._fatal = e
                    break
                log.warning("%s: reconnect attempt %d failed: %s", self.portal, attempt, e)
            except (ConnectionLost, OSError) as e:
                log.warning("%s: reconnect attempt %d failed: %s", self.portal, attempt, e)
            delay = min(delay * 2, 8.0)
        if self._fatal is None:
            self._fatal = ConnectionLost(f"gave up reconnecting after {cfg.reconnect_attempts} attempts",
                                         portal=self.portal, cause="reconnect exhausted")
        self._ready.set()  # wake waiters so that they see the error
        self._wake_window()

    # --- text, logout, close ----------------------------------------------------------------------

    async def text(self, keys: Sequence[tuple[str, str]], *, timeout: float = 10.0) -> list[tuple[str, str]]:
        """A text request (e.g. SendTargets=All), following C-bit continuation (§11.10)."""
        await self._wait_ready()
        itt = next(self._itt) & 0xFFFFFFFF
        reassembler = T.TextReassembler()
        ttt = RESERVED_TAG
        data = T.encode(list(keys))
        while True:
            fut: asyncio.Future[P.Pdu] = asyncio.get_running_loop().create_future()
            self._waiters[itt] = fut
            self._send(P.TextRequest(immediate=True, data=data, final=True, itt=itt, ttt=ttt, cmdsn=self.cmdsn,
                                     expstatsn=self.expstatsn))
            resp = await within(fut, timeout)
            assert isinstance(resp, P.TextResponse)
            text = reassembler.feed(resp.data, resp.cont)
            if text is not None:
                return T.decode_pairs(text)
            ttt, data = resp.ttt, b""

    async def logout(self, timeout: float = 5.0) -> None:
        """Clean logout (§11.14), then close."""
        self._closing = True
        if self._reconnector is not None:
            self._reconnector.cancel()
        conn = self.conn
        if conn is not None and conn.transport is not None and self._ready.is_set():
            itt = next(self._itt) & 0xFFFFFFFF
            fut: asyncio.Future[P.Pdu] = asyncio.get_running_loop().create_future()
            self._waiters[itt] = fut
            self._send(P.LogoutRequest(immediate=True, reason=LogoutReason.CLOSE_SESSION, itt=itt, cmdsn=self.cmdsn,
                                       expstatsn=self.expstatsn))
            with contextlib.suppress(IscsiError, TimeoutError):
                await within(fut, timeout)
        await self.close()

    async def close(self) -> None:
        self._closing = True
        self._cancel_nop()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._reconnector is not None:
            self._reconnector.cancel()
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.transport.close()
            with contextlib.suppress(TimeoutError):
                await within(asyncio.shield(conn.closed), 5)

    @property
    def logged_in(self) -> bool:
        return self._ready.is_set() and self._fatal is None
