"""Fault injection for the sanpath target: the fault model, its scheduler, the counters the control
socket reports, and the wrappers that carry faults out. A connection pays nothing for fault injection
while no fault touches it: the server asks this module once per accepted connection (``attach``);
when a fault starts, the connections it concerns get a wrapping transport (delay, corrupt digests,
black hole), a swallowing protocol (a black hole's input) or a counting frame hook (``after_commands``),
and lose them when it ends. Backstores are wrapped by ``FaultyBackstore`` while medium errors last.

Faults (``kind``) and what each does while active:

``portal-down``      the portal stops listening (new connections are refused) and its connections drop
``blackhole``        the portal accepts and keeps connections but never answers; input is discarded.
                     Restoring it drops the connections it held (their byte streams are lost)
``drop-sessions``    one-shot: drop one session (``session`` = TSIH) or every session of a portal (or all)
``delay``            responses on a portal (or all portals) leave ``seconds`` late, in order
``medium-error``     backstore reads and writes of a LUN (or all) fail: MEDIUM ERROR 11h/00h (read) or
                     0Ch/00h (write); TEST UNIT READY, INQUIRY, READ CAPACITY still answer GOOD
``unit-attention``   every session that logs in (a reconnect) sees UNIT ATTENTION 29h/00h first
``digest``           the header or data digest of PDUs sent on a portal (or all) is wrong (only on
                     connections that negotiated that digest)
``controller``       a controller fails: all its portals go down at once; its LUs move (alua, rdac)

A fault is scheduled with ``after_commands`` (it starts as the server receives the SCSI command after
the next N, so exactly N more commands pass untouched) or ``after_seconds``; otherwise it starts at once.
``restore`` undoes one fault or all.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..blockdev import BlockDevice
from ..errors import ConfigError, RemoteProtocolError
from ..iscsi import pdu as P
from ..iscsi.constants import Opcode as IscsiOpcode
from .config import parse_portal

if TYPE_CHECKING:
    from .server import TargetConnection, TargetServer

log = logging.getLogger(__name__)

KINDS = ("portal-down", "blackhole", "drop-sessions", "delay", "medium-error", "unit-attention", "digest",
         "controller")
Portal = tuple[str, int]


@dataclass(slots=True)
class Counters:
    """Traffic through a portal or a session."""

    commands: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: int = 0  # commands ended with a status other than GOOD, plus digest and protocol errors

    def to_json(self) -> dict[str, int]:
        return {"commands": self.commands, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "errors": self.errors}


@dataclass(slots=True, eq=False)
class Fault:
    id: str
    kind: str
    portal: Portal | None = None
    controller: str | None = None
    session: int | None = None
    lun: int | None = None
    seconds: float = 0.0
    digest: str = "header"
    after_commands: int | None = None
    after_seconds: float | None = None
    state: str = "scheduled"  # scheduled, active, done (one-shot), restored
    remaining: int = 0  # commands still to let through (after_commands)
    held: set[TargetConnection] = field(default_factory=set)  # connections a black hole holds
    timer: asyncio.TimerHandle | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "state": self.state}
        if self.portal is not None:
            out["portal"] = f"{self.portal[0]}:{self.portal[1]}"
        for key in ("controller", "session", "lun", "after_commands", "after_seconds"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.kind == "delay":
            out["seconds"] = self.seconds
        if self.kind == "digest":
            out["digest"] = self.digest
        return out


class FaultInjector:
    """The faults of one ``TargetServer``, and which of its connections each one is applied to."""

    def __init__(self, server: TargetServer) -> None:
        self.server = server
        self.faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)
        self._countdown: list[Fault] = []
        self.down: set[Portal] = set()
        self.blackholed: set[Portal] = set()
        self.medium: list[int | None] = []  # LUN ids failing (None: every LUN); FaultyBackstore reads it

    # --- API ------------------------------------------------------------------------------------

    def inject(self, kind: str, *, portal: str | Portal | None = None, controller: str | None = None,
               session: int | None = None, lun: int | None = None, seconds: float = 0.0, digest: str = "header",
               after_commands: int | None = None, after_seconds: float | None = None) -> Fault:
        """Add a fault; it starts now or when its schedule says. Raises ConfigError for bad arguments."""
        if kind not in KINDS:
            raise ConfigError("kind", f"{kind!r}: use one of {', '.join(KINDS)}")
        where = parse_portal("portal", portal) if isinstance(portal, str) else portal
        if where is not None and where not in self.server.listen_portals():
            known = ", ".join(f"{h}:{p}" for h, p in self.server.listen_portals())
            raise ConfigError("portal", f"{where[0]}:{where[1]} is not a portal of this target; use one of {known}")
        if kind in ("portal-down", "blackhole") and where is None:
            raise ConfigError("portal", f"{kind} needs a portal")
        if kind == "controller":
            if controller is None:
                raise ConfigError("controller", "the controller fault needs a controller name (A, B, ...)")
            controller = controller.upper()
            if not any(controller in a.controllers for a in self.server.arrays):
                raise ConfigError("controller", f"{controller!r} is not a controller of any target")
        if kind == "delay" and not 0 < seconds <= 3600:
            raise ConfigError("seconds", "a delay needs seconds in (0, 3600]")
        if kind == "digest" and digest not in ("header", "data"):
            raise ConfigError("digest", f"{digest!r}: use header or data")
        if after_commands is not None and after_commands < 0:
            raise ConfigError("after_commands", "must be >= 0")
        if after_seconds is not None and after_seconds < 0:
            raise ConfigError("after_seconds", "must be >= 0")
        fault = Fault(f"f{next(self._ids)}", kind, where, controller, session, lun, seconds, digest,
                      after_commands, after_seconds)
        self.faults[fault.id] = fault
        if after_commands:
            fault.remaining = after_commands
            self._countdown.append(fault)
            self._recompute()  # the connections start counting commands
        elif after_seconds:
            fault.timer = asyncio.get_running_loop().call_later(after_seconds, self._start, fault)
        else:
            self._start(fault)
        return fault

    async def restore(self, fault_id: str = "all") -> list[Fault]:
        """Undo one fault (by id) or every fault; returns the faults restored."""
        if fault_id == "all":
            chosen = [f for f in self.faults.values() if f.state in ("scheduled", "active")]
        elif fault_id in self.faults:
            chosen = [self.faults[fault_id]]
        else:
            raise ConfigError("fault", f"no fault {fault_id!r}; see `sanpath target status`")
        for fault in chosen:
            if fault.timer is not None:
                fault.timer.cancel()
            if fault in self._countdown:
                self._countdown.remove(fault)
            was_active = fault.state == "active"
            if fault.state in ("scheduled", "active"):
                fault.state = "restored"
            if was_active:
                await self._undo(fault)
        self._recompute()
        return chosen

    def describe(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.faults.values()]

    # --- connections ----------------------------------------------------------------------------

    def attach(self, conn: TargetConnection) -> bool:
        """A new connection: apply the faults active on its portal. Returns True when a black hole
        holds it (it will never be answered, so the caller arms no login timer)."""
        if conn.local in self.blackholed:
            self._swallow(conn)
            return True
        self._fit(conn)
        return False

    def detach(self, conn: TargetConnection) -> None:
        """The connection is gone: drop what its wrappers still hold."""
        transport = conn.transport
        while isinstance(transport, FaultTransport):
            transport.discard()
            transport = transport.inner

    def _swallow(self, conn: TargetConnection) -> None:
        """Black-hole a connection: hold it (to drop it on restore); nothing goes out, input is discarded."""
        for f in self._active("blackhole"):
            if f.portal == conn.local:
                f.held.add(conn)
        transport = conn.transport
        if transport is None or isinstance(transport, BlackHole):
            return
        conn.transport = BlackHole(transport)
        transport.set_protocol(_Swallow(conn))

    def _fit(self, conn: TargetConnection) -> None:
        """Wrap or unwrap a connection's output and frame hook to match the active faults."""
        transport = conn.transport
        if transport is None or isinstance(transport, BlackHole):
            return
        wanted = self._output_faults_on(conn.local)
        if isinstance(transport, OutputFaults):
            transport.released = False
            if not wanted:
                transport.release()
        elif wanted:
            conn.transport = OutputFaults(transport, conn, self)
        conn.deliver = functools.partial(self._counting, conn) if self._countdown else conn.frame

    def _output_faults_on(self, portal: Portal) -> bool:
        return any(f.portal in (None, portal) for f in self._active("delay") + self._active("digest"))

    def _counting(self, conn: TargetConnection, header: bytes, data: bytes) -> None:
        """The frame hook while an ``after_commands`` schedule runs: count SCSI commands of full
        feature phase (as the server counts them) before the connection handles the frame."""
        session = conn.session
        if session is not None and not session.discovery and header[0] & 0x3F == IscsiOpcode.SCSI_COMMAND:
            try:
                command = isinstance(P.decode(header, data), P.ScsiCommand)
            except RemoteProtocolError:
                command = False  # rejected by the connection, not counted
            if command:
                self.command_seen()
        conn.frame(header, data)

    def command_seen(self) -> None:
        """A SCSI command arrived somewhere: advance ``after_commands`` schedules."""
        for fault in list(self._countdown):
            if fault.remaining <= 0:  # N commands went through untouched: this one meets the fault
                self._countdown.remove(fault)
                self._start(fault)
            else:
                fault.remaining -= 1

    def delay_for(self, portal: Portal) -> float:
        return max((f.seconds for f in self._active("delay") if f.portal in (None, portal)), default=0.0)

    def corrupt(self, portal: Portal, which: str) -> bool:
        return any(f.digest == which and f.portal in (None, portal) for f in self._active("digest"))

    def fails_medium(self, lun: int) -> bool:
        return None in self.medium or lun in self.medium

    # --- effects --------------------------------------------------------------------------------

    def _active(self, kind: str) -> list[Fault]:
        return [f for f in self.faults.values() if f.kind == kind and f.state == "active"]

    def _start(self, fault: Fault) -> None:
        if fault.state != "scheduled":
            return
        fault.state = "active"
        log.warning("fault %s: %s starts", fault.id, fault.to_json())
        server = self.server
        kind = fault.kind
        if kind == "portal-down":
            assert fault.portal is not None
            server.portal_down(fault.portal)
        elif kind == "blackhole":
            assert fault.portal is not None
            self.blackholed.add(fault.portal)
            for conn in server.connections_on(fault.portal):
                self._swallow(conn)
        elif kind == "drop-sessions":
            server.drop_connections(fault.portal, fault.session)
            fault.state = "done"
        elif kind == "unit-attention":
            for lu in self._luns(fault.lun):
                lu.ua_on_new_nexus = True
        elif kind == "medium-error":
            self.medium.append(fault.lun)
            for n, lu in self._numbered_luns():  # the backstores are wrapped while medium errors last
                if not isinstance(lu.backstore, FaultyBackstore):
                    lu.backstore = FaultyBackstore(lu.backstore, n, self)
        elif kind == "controller":
            assert fault.controller is not None
            for array in server.arrays:
                ctl = array.controllers.get(fault.controller)
                if ctl is not None:
                    for portal in ctl.portals:
                        server.portal_down(portal)
                    array.fail_controller(ctl.name)
        self._recompute()

    async def _undo(self, fault: Fault) -> None:
        log.warning("fault %s: %s restored", fault.id, fault.kind)
        server = self.server
        kind = fault.kind
        if kind == "portal-down":
            assert fault.portal is not None
            if not self._other_down(fault, fault.portal):
                await server.portal_up(fault.portal)
        elif kind == "blackhole":
            assert fault.portal is not None
            for conn in fault.held:
                conn.abort()
            fault.held.clear()
            if not any(f.portal == fault.portal for f in self._active("blackhole")):
                self.blackholed.discard(fault.portal)
        elif kind == "unit-attention":
            if not self._active("unit-attention"):
                for lu in self._luns(None):
                    lu.ua_on_new_nexus = False
        elif kind == "medium-error":
            self.medium.remove(fault.lun)
            if not self.medium:
                for _, lu in self._numbered_luns():
                    if isinstance(lu.backstore, FaultyBackstore):
                        lu.backstore = lu.backstore.inner
        elif kind == "controller":
            assert fault.controller is not None
            for array in server.arrays:
                ctl = array.controllers.get(fault.controller)
                if ctl is not None:
                    array.restore_controller(ctl.name)
                    for portal in ctl.portals:
                        if not self._other_down(fault, portal):
                            await server.portal_up(portal)

    def _other_down(self, fault: Fault, portal: Portal) -> bool:
        """Another active fault still keeps ``portal`` down."""
        for f in self.faults.values():
            if f is fault or f.state != "active":
                continue
            if f.kind == "portal-down" and f.portal == portal:
                return True
            if f.kind == "controller" and any(portal in a.controllers[f.controller].portals
                                              for a in self.server.arrays if f.controller in a.controllers):
                return True
        return False

    def _luns(self, lun: int | None) -> list[Any]:
        return [lu for n, lu in self._numbered_luns() if lun is None or n == lun]

    def _numbered_luns(self) -> list[tuple[int, Any]]:
        return [(n, lu) for a in self.server.arrays for n, lu in a.luns.items()]

    def _recompute(self) -> None:
        for conn in list(self.server.connections):
            self._fit(conn)

    def cancel_all(self) -> None:
        for fault in self.faults.values():
            if fault.timer is not None:
                fault.timer.cancel()


class FaultyBackstore:
    """Wraps a backstore so that ``medium-error`` faults fail its reads and writes with EIO (which the
    LU turns into MEDIUM ERROR). Everything else passes through."""

    def __init__(self, inner: BlockDevice, lun: int, faults: FaultInjector) -> None:
        self.inner = inner
        self.lun = lun
        self.faults = faults

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def block_size(self) -> int:
        return self.inner.block_size

    def _check(self, what: str) -> None:
        if self.faults.medium and self.faults.fails_medium(self.lun):
            raise OSError(errno.EIO, f"injected medium error on {what} (LUN {self.lun})")

    async def read(self, offset: int, length: int) -> bytes | bytearray:
        self._check("read")
        return await self.inner.read(offset, length)

    async def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        self._check("write")
        await self.inner.write(offset, data, fua=fua)

    async def flush(self) -> None:
        await self.inner.flush()

    async def unmap(self, offset: int, length: int) -> None:
        self._check("unmap")
        await self.inner.unmap(offset, length)

    def __getattr__(self, name: str) -> Any:
        # allocation() (GET LBA STATUS), close() and the like come from the wrapped backstore
        return getattr(self.inner, name)


# --- what a faulty connection is given ----------------------------------------------------------------


class FaultTransport(asyncio.Transport):
    """Stands between a ``TargetConnection`` and its socket transport; passes everything through. Each
    ``writelines`` given to one is one PDU (the connection sends PDUs one by one while it is wrapped)."""

    def __init__(self, inner: asyncio.Transport) -> None:
        super().__init__()
        self.inner = inner

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writelines([data])

    def writelines(self, frames: Iterable[bytes | bytearray | memoryview]) -> None:
        self.inner.writelines(frames)

    def discard(self) -> None:
        """The connection is lost: forget what is held."""

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def close(self) -> None:
        self.discard()
        self.inner.close()

    def abort(self) -> None:
        self.discard()
        self.inner.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.inner.get_protocol()

    def is_reading(self) -> bool:
        return self.inner.is_reading()

    def pause_reading(self) -> None:
        self.inner.pause_reading()

    def resume_reading(self) -> None:
        self.inner.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.inner.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return False


class BlackHole(FaultTransport):
    """A black-holed connection's output: nothing is sent, and nothing ever unwraps it (restoring the
    fault drops the connection, whose byte stream is lost)."""

    def writelines(self, frames: Iterable[bytes | bytearray | memoryview]) -> None:
        pass


class _Swallow(asyncio.BufferedProtocol):
    """A black-holed connection's input: counted and discarded (any bytes are still proof of life
    for the target's NOP-In); the connection's own protocol never sees them again."""

    def __init__(self, conn: TargetConnection) -> None:
        self.conn = conn
        self.buffer = memoryview(bytearray(65536))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        conn = self.conn
        conn.last_rx = asyncio.get_running_loop().time()
        conn.counters.bytes_in += nbytes
        conn.portal_counters.bytes_in += nbytes

    def eof_received(self) -> bool:
        return self.conn.eof_received()

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)


class OutputFaults(FaultTransport):
    """Output of a connection on a portal with ``delay`` or ``digest`` faults. Each ``writelines`` is one
    PDU as ``frame_pdu`` lays it out (header, header digest, data, pad, data digest): digests are
    corrupted as the faults say, and delayed PDUs leave in order. Once released (no such fault left),
    it unwraps itself as soon as nothing delayed is waiting; until then new PDUs queue behind."""

    def __init__(self, inner: asyncio.Transport, conn: TargetConnection, faults: FaultInjector) -> None:
        super().__init__(inner)
        self.conn = conn
        self.faults = faults
        self.released = False
        self.delayed: deque[tuple[float, list[bytes]]] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def writelines(self, frames: Iterable[bytes | bytearray | memoryview]) -> None:
        pieces = list(frames)
        conn, faults = self.conn, self.faults
        if conn.header_digest and faults.corrupt(conn.local, "header"):
            pieces[1] = bytes(b ^ 0xFF for b in pieces[1])
        if conn.data_digest and len(pieces) > 1 + conn.header_digest and faults.corrupt(conn.local, "data"):
            pieces[-1] = bytes(b ^ 0xFF for b in pieces[-1])  # a data digest is there only with data
        delay = faults.delay_for(conn.local)
        if not delay and not self.delayed:
            self.inner.writelines(pieces)
            return
        loop = asyncio.get_running_loop()
        self.delayed.append((loop.time() + delay, [bytes(p) for p in pieces]))
        if self.timer is None:
            self.timer = loop.call_at(self.delayed[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.delayed and self.delayed[0][0] <= now:
            pieces = self.delayed.popleft()[1]
            if not self.inner.is_closing():
                self.inner.writelines(pieces)
        if self.delayed:
            self.timer = loop.call_at(self.delayed[0][0], self._flush)
        elif self.released:
            self._unwrap()

    def release(self) -> None:
        self.released = True
        if not self.delayed:
            self._unwrap()

    def _unwrap(self) -> None:
        if self.conn.transport is self:
            self.conn.transport = self.inner

    def discard(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.delayed.clear()
