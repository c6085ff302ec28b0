"""An initiator session on asyncio (RFC 7143, ErrorRecoveryLevel 0, one connection): the sans-IO
``InitiatorCore`` (sanpath.iscsi.initiator_core: the command window, the ITT table, the PDUs both ways)
with what needs a loop: connecting and logging in, futures for whoever waits, the command timeouts, the
NOP-Out keep-alive and reconnection.

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
from ..iscsi.constants import RESERVED_TAG, AsyncEvent, TaskFunction, TaskResponse
from ..iscsi.initiator_core import CommandResult, InitiatorCore, Request, ScsiTask
from ..scsi.constants import SenseKey, Status
from ..scsi.sense import parse_sense
from .connection import IscsiProtocol, open_connection
from .login import InitiatorLogin, LoginRedirect, default_keys

__all__ = ["CommandResult", "Session", "SessionConfig", "default_initiator_name", "new_isid"]

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
    connect_timeout: float | None = None  # the TCP connection alone (None: login_timeout)
    nop_interval: float = 5.0  # open-iscsi's defaults: a NOP-Out every 5 s, 5 s to answer
    nop_timeout: float = 5.0
    busy_silence: float = 0.0  # with commands in flight, a NOP-Out after this long without a byte (0: off)
    busy_nop_timeout: float = 0.0  # ...and dead when nothing arrives this long after it
    command_timeout: float = 30.0
    ua_retries: int = 5
    reconnect: bool = False
    reconnect_attempts: int = 8
    reconnect_backoff: float = 0.5  # first wait; doubles up to 8 s
    isid: bytes | None = None  # reuse an ISID: logging in with it reinstates that session (§6.3.5)

    @property
    def portal(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Session(InitiatorCore):
    """One logged-in session. Use ``await Session.open(config)``."""

    def __init__(self, config: SessionConfig) -> None:
        super().__init__(config.portal)
        self.config = config
        self.isid = config.isid or new_isid()
        self.conn: IscsiProtocol | None = None
        self.tsih = 0
        self.tpgt: int | None = None
        self._window_waiters: list[asyncio.Future[None]] = []
        self._login_q: asyncio.Queue[P.Pdu | str] | None = None  # str: the connection was lost
        self._ready = asyncio.Event()
        self._closing = False
        self._fatal: IscsiError | None = None
        self._nop_timer: asyncio.TimerHandle | None = None
        self._sweep: asyncio.TimerHandle | None = None  # the next command-timeout check
        self._sweep_at = 0.0
        self._loop: asyncio.AbstractEventLoop  # the running loop, set when the session connects
        self._ping_deadline: float | None = None  # a keep-alive NOP-Out is out: dead if nothing comes by then
        self._ping_sent = 0.0
        self._nop_busy = False  # liveness ticks at the busy pace (commands in flight)
        self.nops_sent = 0  # keep-alive NOP-Outs, idle and busy
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
            conn = await open_connection(lambda: self, host, port, source=cfg.source,
                                         timeout=cfg.connect_timeout or cfg.login_timeout)
        except (OSError, TimeoutError) as e:
            raise ConnectionLost(f"cannot connect: {e or 'timed out'}", portal=self.portal,
                                 cause="connect failed") from None
        self.conn = conn
        self._login_q = asyncio.Queue()
        chap = (ChapInitiator(cfg.chap, target=cfg.mutual, algorithms=cfg.chap_algorithms)
                if cfg.chap is not None else None)
        login = InitiatorLogin(initiator_name=cfg.initiator_name, target_name=cfg.target, isid=self.isid,
                               portal=self.portal, chap=chap, cmdsn=self.window.cmdsn,
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
        self.full_feature(result.params, expcmdsn=result.expcmdsn, maxcmdsn=result.maxcmdsn,
                          expstatsn=result.expstatsn)
        self.tsih, self.tpgt = result.tsih, result.tpgt
        conn.negotiated(header_digest=self.params.header_digest, data_digest=self.params.data_digest,
                        max_recv_data_segment_length=self.params.max_recv_data_segment_length)
        self.send = conn.send
        self._ready.set()
        self._schedule_nop()

    # --- the connection's sink ---------------------------------------------------------------

    def drop(self, cause: str) -> None:
        """Drop the connection now (its link is gone, say): what is in flight fails with ConnectionLost at
        once, to be reissued elsewhere, instead of waiting for liveness to find the connection dead."""
        if self.conn is not None:
            self.conn.abort(cause)

    def connection_lost(self, conn: IscsiProtocol, cause: str) -> None:
        if conn is not self.conn:
            return  # a connection we already gave up on (failed login, redirect)
        if self._login_q is not None:
            self._login_q.put_nowait(cause)  # the login in progress fails with this cause
            return
        self._ready.clear()
        self._cancel_nop()
        self.connection_gone(ConnectionLost(cause, portal=self.portal, cause=cause))
        self.window_opened()  # waiters see the session is down
        if not self._closing:
            self.lost_count += 1
            log.warning("%s: %s", self.portal, cause)
            for listener in list(self.lost_listeners):
                listener(cause)
            if self.config.reconnect and self._fatal is None:
                if self._reconnector is None or self._reconnector.done():
                    self._reconnector = asyncio.get_running_loop().create_task(self._reconnect())
            elif self._fatal is None:
                self._fatal = ConnectionLost(cause, portal=self.portal, cause=cause)

    def pdu_received(self, pdu: P.Pdu) -> None:
        if self._login_q is not None:
            self._login_q.put_nowait(pdu)
            return
        self.receive(pdu)

    # --- the core's hooks: who waits gets told -------------------------------------------------

    def command_ended(self, task: ScsiTask, outcome: CommandResult | BaseException) -> None:
        waiter = task.waiter
        if isinstance(waiter, asyncio.Future):  # ``execute``
            if not waiter.done():
                if isinstance(outcome, BaseException):
                    waiter.set_exception(outcome)
                else:
                    waiter.set_result(outcome)
        else:  # ``start``: a callback
            waiter(outcome)

    def request_ended(self, request: Request, outcome: P.Pdu | BaseException | None) -> None:
        fut = request.waiter
        if fut is not None and not fut.done():
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)

    def window_opened(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    def async_message(self, pdu: P.AsyncMessage) -> None:
        log.info("%s: asynchronous message, event %d", self.portal, pdu.event)
        if pdu.event in (AsyncEvent.DROP_CONNECTION, AsyncEvent.DROP_ALL_CONNECTIONS) and self.conn is not None:
            self.conn.abort(f"the target announced it drops the connection (async event {pdu.event})")
        elif pdu.event == AsyncEvent.LOGOUT_REQUEST and self.conn is not None:
            # The target wants us gone within Parameter3 seconds: at ERL 0 a drop and re-login will do.
            self.conn.abort("the target requested a logout (async event 1)")

    # --- waiting for the window ----------------------------------------------------------------

    async def _wait_window(self) -> None:
        """Wait until the session is logged in and the command window has room for a command."""
        while True:
            await self._wait_ready()
            if self.window.open:
                return
            f = asyncio.get_running_loop().create_future()
            self._window_waiters.append(f)
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
            if self._fatal is not None or not self._ready.is_set() or not self.window.open:
                await self._wait_window()
            future: asyncio.Future[CommandResult] = self._loop.create_future()
            task = self._issue(lun, cdb, data_out, read_length, buffer, limit, future)
            try:
                conn = self.conn
                if conn is not None and conn.writing_paused:
                    await conn.drain()
                result = await future
            except asyncio.CancelledError:
                if not future.done():  # the caller gave up: stop tracking it and abort it at the target
                    self.forget(task)
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
        if (self._fatal is not None or not self._ready.is_set() or not self.window.open
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
               waiter: asyncio.Future[CommandResult] | Callable[[CommandResult | BaseException], None]) -> ScsiTask:
        task = self.issue(lun, cdb, data_out, read_length, buffer, waiter)
        if not self._nop_busy and self.config.busy_silence > 0:
            self._watch_busy()
        if limit > 0:
            task.limit = limit
            task.deadline = self._loop.time() + limit
            if self._sweep is None or task.deadline < self._sweep_at:
                self._arm_sweep(task.deadline)
        return task

    async def _abort_quietly(self, task: ScsiTask) -> None:
        with contextlib.suppress(IscsiError, TimeoutError):
            await self.task_management(TaskFunction.ABORT_TASK, task.lun, task.itt,
                                       timeout=max(1.0, self.config.nop_timeout))

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
        for task in self.scsi_tasks():
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

    async def _escalate(self, task: ScsiTask) -> None:
        """ABORT TASK, then LOGICAL UNIT RESET, then drop the connection (the open-iscsi order)."""
        limit = task.limit
        log.warning("%s: command 0x%02x to LUN %d timed out after %.1f s; aborting it", self.portal, task.cdb[0],
                    task.lun, limit)
        error = CommandTimeout(f"command 0x{task.cdb[0]:02x} to LUN {task.lun} did not complete within "
                               f"{limit:.1f} s", portal=self.portal)
        step_timeout = max(1.0, self.config.nop_timeout)
        for function in (TaskFunction.ABORT_TASK, TaskFunction.LOGICAL_UNIT_RESET):
            if not self.in_flight(task):
                return
            try:
                response = await self.task_management(function, task.lun, task.itt, timeout=step_timeout)
            except (IscsiError, TimeoutError):
                continue
            if response in (TaskResponse.COMPLETE, TaskResponse.TASK_DOES_NOT_EXIST):
                self.fail(task, error)
                return
        if self.in_flight(task) and self.conn is not None:
            self.fail(task, error)
            self.conn.abort(f"task management did not clear a timed-out command to LUN {task.lun}")

    async def _await_reply(self, request: Request, timeout: float) -> P.Pdu | None:
        try:
            return await within(request.waiter, timeout)
        finally:
            self.cancel(request)

    async def task_management(self, function: int, lun: int, rtt: int = RESERVED_TAG, *,
                              timeout: float = 10.0) -> int:
        """Send a task management request (§11.5); returns the response code."""
        await self._wait_ready()
        request = self.task_mgmt_request(function, lun, rtt, waiter=self._loop.create_future())
        resp = await self._await_reply(request, timeout)
        assert isinstance(resp, P.TaskMgmtResponse)  # the core checked the reply's kind
        return resp.response

    # --- liveness --------------------------------------------------------------------------------

    def _schedule_nop(self, busy: bool = False) -> None:
        cfg = self.config
        self._nop_busy = busy
        if cfg.nop_interval > 0:
            step = cfg.busy_silence / 2 if busy else min(cfg.nop_interval, cfg.nop_timeout) / 2
            self._nop_timer = asyncio.get_running_loop().call_later(step, self._nop_tick)

    def _watch_busy(self) -> None:
        """A command went out on a connection whose liveness ticks at the idle pace: tick at the busy one."""
        if self._nop_timer is not None:
            self._nop_timer.cancel()
            self._schedule_nop(busy=True)

    def _cancel_nop(self) -> None:
        if self._nop_timer is not None:
            self._nop_timer.cancel()
            self._nop_timer = None
        self._ping_deadline = None

    def _nop_tick(self) -> None:
        """Liveness. An idle connection gets a NOP-Out when it has been quiet for ``nop_interval`` and is
        dead when nothing at all (not just the NOP-In) arrives within ``nop_timeout`` of it. A connection
        with commands in flight is expected to talk: silent for ``busy_silence``, it gets a NOP-Out at
        once, and is dead when nothing arrives within ``busy_nop_timeout``. A busy target that answers
        slowly still answers a NOP-Out, so only a dead line or target fails this."""
        conn = self.conn
        if conn is None or conn.transport is None:
            return
        now = asyncio.get_running_loop().time()
        cfg = self.config
        busy = cfg.busy_silence > 0 and any(type(t) is ScsiTask for t in self.itts.values())
        if self._ping_deadline is not None:
            if conn.last_rx >= self._ping_sent:
                self._ping_deadline = None  # something arrived: alive
            elif now >= self._ping_deadline:
                conn.abort(f"no response to NOP-Out within {self._ping_deadline - self._ping_sent:g} s "
                           "(portal black-holed or dead)")
                return
        quiet = now - conn.last_rx
        if self._ping_deadline is None and (quiet >= cfg.nop_interval or (busy and quiet >= cfg.busy_silence)):
            # The answer needs no waiter: any PDU at all, this NOP-In included, resets conn.last_rx.
            self.nop_out(keepalive=True)
            self.nops_sent += 1
            self._ping_sent = now
            self._ping_deadline = now + (cfg.busy_nop_timeout if busy else cfg.nop_timeout)
        self._schedule_nop(busy)

    async def ping(self, timeout: float = 5.0) -> float:
        """A NOP-Out round trip; returns its duration in seconds."""
        await self._wait_ready()
        start = self._loop.time()
        await self._await_reply(self.nop_out(b"ping", waiter=self._loop.create_future()), timeout)
        return self._loop.time() - start

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
        self.window_opened()

    # --- text, logout, close ----------------------------------------------------------------------

    async def text(self, keys: Sequence[tuple[str, str]], *, timeout: float = 10.0) -> list[tuple[str, str]]:
        """A text request (e.g. SendTargets=All), following C-bit continuation (§11.10)."""
        await self._wait_ready()
        reassembler = T.TextReassembler()
        request: Request | None = None
        ttt, data = RESERVED_TAG, T.encode(list(keys))
        while True:
            request = self.text_request(data, waiter=self._loop.create_future(), continuing=request, ttt=ttt)
            resp = await self._await_reply(request, timeout)
            assert isinstance(resp, P.TextResponse)  # the core checked the reply's kind
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
            request = self.logout_request(waiter=self._loop.create_future())
            with contextlib.suppress(IscsiError, TimeoutError):
                await self._await_reply(request, timeout)
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
