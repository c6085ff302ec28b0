"""The sanpath target server: asyncio listeners on the portals of the targets it serves, one protocol
object per TCP connection that carries it from login to full feature phase, session reinstatement,
and SendTargets.

What is served where (targets, TPGs, portals, LUNs, ACLs) is the object model of model.py, laid out
per array family by profiles.py. Sessions are kept per (initiator name, ISID, target) so that a new
login with the same triple reinstates the session (RFC 7143 §6.3.5). Faults (faults.py) reach a
connection only by wrapping it while they are active.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, RemoteProtocolError
from ..iscsi import pdu as P
from ..iscsi import text as T
from ..iscsi.constants import RESERVED_TAG, RejectReason
from ..iscsi.framing import DigestError, OversizedDataSegment, PduReader, frame_pdu
from .config import ServerSpec
from .faults import Counters, FaultInjector, FaultTransport
from .login import LoginFailed, TargetLogin
from .model import TPG, Target
from .profiles import Array
from .session import SessionClosed, TargetSession

log = logging.getLogger(__name__)

_BATCH_PDUS = 16  # PDUs sent together at most (see TargetConnection.write)
_BATCH_BYTES = 512 << 10  # nor more bytes: larger bursts (1-4 MiB) of 128 KiB reads led to losses and
# retransmission timeouts on loopback under BBR (ss: bytes_retrans, 4K instead of 10K IOPS for seconds)
LOGIN_TIMEOUT = 15.0  # seconds a connection may take to finish login (open-iscsi's default login_timeout)


class TargetServer:
    """Serves the targets of a ``ServerSpec`` on every portal they name."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.faults = FaultInjector(self)
        self.arrays = [Array(t) for t in spec.targets]
        self.targets: dict[str, Target] = {}
        for array in self.arrays:
            for target in array.targets:
                if target.iqn in self.targets:
                    raise ConfigError("target", f"two targets would be named {target.iqn}; rename one")
                target.server = self
                self.targets[target.iqn] = target
        # stand-in target of discovery sessions: no LUNs; SendTargets=All lists every target
        self.discovery = Target("", tpgs=(TPG(0, 0, 0),))
        self.discovery.server = self
        self.connections: set[TargetConnection] = set()
        # tasks of sessions whose connection died, still unwinding, by (target, initiator, ISID)
        self.draining: dict[tuple[str, str, bytes], list[tuple[object, asyncio.Task[None]]]] = {}
        self.servers: list[asyncio.Server] = []
        self.portals: list[tuple[str, int]] = []
        self.listeners: dict[tuple[str, int], asyncio.Server] = {}
        self.portal_counters: dict[tuple[str, int], Counters] = {}
        self._tsih = 0

    async def start(self) -> list[tuple[str, int]]:
        """Listen on every portal; returns the bound (address, port) pairs (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        wanted = sorted({p for t in self.targets.values() for tpg in t.tpgs for p in tpg.network_portals})
        try:
            for host, port in wanted:
                srv = await loop.create_server(functools.partial(TargetConnection, self, (host, port)),
                                               host, port, reuse_address=True, backlog=128)
                self.servers.append(srv)
                bound = srv.sockets[0].getsockname()
                self.portals.append((bound[0], bound[1]))
                self.listeners[(bound[0], bound[1])] = srv
                self.portal_counters[(bound[0], bound[1])] = Counters()
                if port == 0:  # the portal takes the port the kernel chose, for discovery answers
                    for array in self.arrays:
                        array.rebind(host, bound[1])
        except OSError:
            await self.stop()
            raise
        return list(self.portals)

    # --- portals under fault injection (faults.py) -------------------------------------------------

    def listen_portals(self) -> list[tuple[str, int]]:
        return list(self.portal_counters)

    def connections_on(self, portal: tuple[str, int]) -> list[TargetConnection]:
        return [c for c in self.connections if c.local == portal]

    def portal_down(self, portal: tuple[str, int]) -> None:
        """Stop listening on a portal (connections are refused) and drop its connections."""
        srv = self.listeners.get(portal)
        if srv is not None and srv.is_serving():
            srv.close()
        self.faults.down.add(portal)
        for conn in self.connections_on(portal):
            conn.abort()

    async def portal_up(self, portal: tuple[str, int]) -> None:
        """Listen on a portal again (same address and port)."""
        self.faults.down.discard(portal)
        srv = self.listeners.get(portal)
        if srv is None or srv.is_serving():
            return
        loop = asyncio.get_running_loop()
        try:
            srv = await loop.create_server(functools.partial(TargetConnection, self, portal), *portal,
                                           reuse_address=True, backlog=128)
        except OSError as e:
            log.error("portal %s:%d: cannot listen again: %s", *portal, e)
            raise
        if portal in self.faults.down:  # taken down again meanwhile
            srv.close()
            return
        self.servers.append(srv)
        self.listeners[portal] = srv

    def drop_connections(self, portal: tuple[str, int] | None = None, tsih: int | None = None) -> int:
        """Abort the connections of one session (TSIH), of a portal, or all; returns how many."""
        chosen = [c for c in self.connections if (portal is None or c.local == portal)
                  and (tsih is None or (c.session is not None and c.session.tsih == tsih))]
        for conn in chosen:
            conn.abort()
        return len(chosen)

    def status(self) -> dict[str, Any]:
        """Targets, controllers, LU owners, per-portal and per-session counters, faults."""
        portals = []
        for portal, counters in self.portal_counters.items():
            portals.append({"portal": f"{portal[0]}:{portal[1]}", "listening": portal not in self.faults.down,
                            "blackholed": portal in self.faults.blackholed,
                            "connections": len(self.connections_on(portal)), **counters.to_json()})
        sessions = []
        for c in sorted(self.connections, key=lambda c: c.session.tsih if c.session else 0):
            s = c.session
            if s is None:
                continue
            sessions.append({"tsih": s.tsih, "initiator": s.initiator_name, "isid": s.isid.hex(),
                             "target": s.target.iqn or "(discovery)", "portal": f"{c.local[0]}:{c.local[1]}",
                             "peer": c.peer, **c.counters.to_json()})
        return {"arrays": [a.describe() for a in self.arrays], "portals": portals, "sessions": sessions,
                "faults": self.faults.describe()}

    async def stop(self) -> None:
        """Stop listening, drop every connection, then flush and close the backstores."""
        self.faults.cancel_all()
        for srv in self.servers:
            srv.close()
        for conn in list(self.connections):
            conn.abort()
        for srv in self.servers:
            await srv.wait_closed()
        self.servers.clear()
        await asyncio.sleep(0)
        for array in self.arrays:
            await array.close()

    def new_tsih(self) -> int:
        self._tsih = self._tsih % 0xFFFF + 1
        return self._tsih

    def targets_on_portal(self, portal: tuple[str, int]) -> list[tuple[Target, int]]:
        """(target, TPGT) pairs reachable through a local portal address."""
        out = []
        for t in self.targets.values():
            for tpg in t.tpgs:
                if any(p == portal or (p[0] == portal[0] and p[1] == 0) for p in tpg.network_portals):
                    out.append((t, tpg.tag))
        return out

    def text_response(self, data: bytes | bytearray | memoryview, only: Target | None, initiator: str = "") -> bytes:
        """Answer a text request: SendTargets=All|<name>|"" (RFC 7143 §12.3, Appendix C)."""
        pairs = T.decode_pairs(data)
        out: list[tuple[str, str]] = []
        for key, value in pairs:
            if key != "SendTargets":
                out.append((key, "NotUnderstood"))
                continue
            if value == "All" and only is None:
                chosen = list(self.targets.values())
            elif value in ("", "All") and only is not None:
                chosen = [only]
            else:
                chosen = [t for t in self.targets.values() if t.iqn == value]
            for t in chosen:
                if initiator and not t.allows(initiator):
                    continue
                out.append(("TargetName", t.iqn))
                for tpg in t.tpgs:
                    for portal in tpg.network_portals:
                        out.append(("TargetAddress", portal.target_address(tpg.tag)))
        return T.encode(out)

    def register(self, conn: TargetConnection) -> None:
        self.connections.add(conn)

    async def reinstate(self, new: TargetConnection, initiator: str, isid: bytes, target: Target) -> None:
        """A login with the same initiator name, ISID and target replaces the old session (§6.3.5): drop
        its connection and wait until every one of its tasks has ended, so that nothing of the old
        session can execute once the new login completes (initiators rely on this to fence a dead path)."""
        for c in list(self.connections):
            s = c.session
            if c is not new and s is not None and s.target is target and s.initiator_name == initiator \
                    and s.isid == isid:
                log.info("%s: reinstating session ISID %s of %s", target.iqn, isid.hex(), initiator)
                c.abort()
        await asyncio.sleep(0)  # let connection_lost of the aborted connections run
        runners = self.draining.pop((target.iqn, initiator, isid), [])
        pending = [r for _, r in runners if not r.done()]
        if pending:
            await asyncio.wait(pending)
        self._prune_draining()

    async def drain(self, lu: object) -> None:
        """Wait for the unwinding tasks of dead sessions that touch ``lu`` (a LUN reset ends them too)."""
        pending = [r for runners in self.draining.values() for owner, r in runners if owner is lu and not r.done()]
        if pending:
            await asyncio.wait(pending)
        self._prune_draining()

    def _prune_draining(self) -> None:
        for key in list(self.draining):
            alive = [(lu, r) for lu, r in self.draining[key] if not r.done()]
            if alive:
                self.draining[key] = alive
            else:
                del self.draining[key]

    def all_sessions(self) -> list[TargetSession]:
        return [c.session for c in self.connections if c.session is not None]


class TargetConnection(asyncio.BufferedProtocol):
    """One TCP connection: login, then full feature phase through a ``TargetSession``."""

    def __init__(self, server: TargetServer, portal: tuple[str, int]) -> None:
        self.server = server
        self.portal = portal
        self.transport: asyncio.Transport | None = None
        self.reader = PduReader(max_data=T.MIN_NEGOTIATION_BYTES)
        self.login: TargetLogin | None = None
        self.session: TargetSession | None = None
        self.header_digest = False
        self.data_digest = False
        self.peer = ""
        self._reinstating: asyncio.Task[None] | None = None
        self._login_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self.last_rx = 0.0  # loop time bytes last arrived
        self._ping_ttt = 0
        self.local = portal
        self.counters = Counters()
        self.portal_counters = Counters()
        self._out: list[list[bytes | memoryview]] = []  # PDUs to send (see write)
        self._out_bytes = 0
        self._receiving = False  # inside buffer_updated: what is written leaves when it returns
        # each received frame goes here; the fault layer points it elsewhere while it counts commands
        self.deliver: Callable[[bytes, bytes], None] = self.frame

    # --- transport events -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        local = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.local = (local[0], local[1]) if local else self.portal
        self.login = TargetLogin(self.server, self.server.targets_on_portal(self.local), self.peer)
        self.server.register(self)
        self.portal_counters = self.server.portal_counters.setdefault(self.local, Counters())
        if self.server.faults.attach(self):
            return  # held by a black hole: no login timer either, a black hole never closes anything
        self._login_timer = asyncio.get_running_loop().call_later(LOGIN_TIMEOUT, self._login_timeout)

    def _login_timeout(self) -> None:
        if self.session is None and self.local not in self.server.faults.blackholed:
            log.warning("%s: login not finished within %.0f s; closing", self.peer, LOGIN_TIMEOUT)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._login_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self.server.faults.detach(self)
        self.server.connections.discard(self)
        if self.session is not None:
            s = self.session
            self.server.draining.setdefault((s.target.iqn, s.initiator_name, s.isid), []).extend(s.shutdown())
        self.transport = None

    def pause_writing(self) -> None:
        # The initiator is not reading: stop taking new commands until it catches up.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.last_rx = asyncio.get_running_loop().time()  # any bytes at all are proof of life
        self.counters.bytes_in += nbytes
        self.portal_counters.bytes_in += nbytes
        self.reader.buffer_updated(nbytes)
        self._receiving = True
        try:
            while self.transport is not None and not self.transport.is_closing():
                frame = self.reader.next_frame()
                if frame is None:
                    break
                self.deliver(frame.header, frame.data)
        except DigestError as e:
            log.warning("%s: %s", self.peer, e)
            self.counters.errors += 1
            self.portal_counters.errors += 1
            if e.data_digest and self.session is not None:
                self.session.reject(e.header, RejectReason.DATA_DIGEST_ERROR)
            self.close()
        except OversizedDataSegment as e:
            log.warning("%s: %s", self.peer, e)
            if self.session is not None:
                self.session.reject(e.header, RejectReason.PROTOCOL_ERROR)
            self.close()
        except (SessionClosed, RemoteProtocolError) as e:
            log.warning("%s: %s; closing the connection", self.peer, e)
            self.close()
        except Exception:
            # A bug of ours must cost one connection, never the server.
            log.exception("%s: internal error; dropping the connection", self.peer)
            self.abort()
        finally:
            self._receiving = False
            if self._out:  # the responses of the commands these bytes carried, in one send
                self._flush()

    def eof_received(self) -> bool:
        return False

    # --- PDUs ------------------------------------------------------------------------------------

    def frame(self, header: bytes, data: bytes) -> None:
        try:
            pdu = P.decode(header, data)
        except RemoteProtocolError as e:
            log.warning("%s: %s", self.peer, e)
            if self.session is None:
                raise
            self.session.reject(header, RejectReason.COMMAND_NOT_SUPPORTED
                                if P.parse_bhs(header)[0] is None else RejectReason.INVALID_PDU_FIELD)
            return
        if not pdu.INITIATOR:
            if self.session is None:
                raise RemoteProtocolError(f"target opcode 0x{header[0] & 0x3F:02x} from an initiator")
            self.session.reject(header, RejectReason.PROTOCOL_ERROR)
            return
        if self.session is not None:
            if isinstance(pdu, P.LoginRequest):
                self.session.reject(header, RejectReason.PROTOCOL_ERROR)
                return
            if self.session.discovery and isinstance(pdu, P.ScsiCommand | P.TaskMgmtRequest | P.DataOut):
                self.session.reject(header, RejectReason.PROTOCOL_ERROR)  # §4.3: discovery sessions only
                return
            if isinstance(pdu, P.ScsiCommand):
                self.counters.commands += 1
                self.portal_counters.commands += 1
            self.session.receive(pdu, header)
            return
        assert self.login is not None
        if not isinstance(pdu, P.LoginRequest):
            raise RemoteProtocolError(f"{type(pdu).__name__} before login completed (RFC 7143 6.1)")
        try:
            reply, done = self.login.receive(pdu)
        except LoginFailed as e:
            log.warning("%s: login failed: %s", self.peer, e)
            self.write(e.response)
            self.close()
            return
        if done is None:
            self.write(reply)
            return
        if done.target is None:
            self.write(reply)
            self._enter_full_feature(done)
            return
        # Session reinstatement must finish before the final login response (see TargetServer.reinstate).
        # Nothing else arrives meanwhile: the initiator waits for this response.
        self._reinstating = asyncio.get_running_loop().create_task(self._finish_login(reply, done))

    async def _finish_login(self, reply: P.LoginResponse, done: TargetLogin.Result) -> None:
        assert done.target is not None
        await self.server.reinstate(self, done.initiator_name, done.isid, done.target)
        if self.transport is None or self.transport.is_closing():
            return
        self.write(reply)
        self._enter_full_feature(done)

    def _enter_full_feature(self, done: TargetLogin.Result) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
        target = done.target
        params = done.params
        self.header_digest = params.header_digest
        self.data_digest = params.data_digest
        self.reader.header_digest = params.header_digest
        self.reader.data_digest = params.data_digest
        self.reader.max_data = params.max_recv_data_segment_length
        self.session = TargetSession(
            target or self.server.discovery, initiator_name=done.initiator_name, isid=done.isid,
            tsih=done.tsih, tpgt=done.tpgt, params=params, cmdsn=done.expcmdsn, statsn=done.statsn,
            window=self.server.spec.cmd_window, send=self.write, close=self.close)
        self.session.discovery = target is None
        self.login = None
        interval = self.server.spec.nop_in_interval
        if interval > 0:
            self._ping_timer = asyncio.get_running_loop().call_later(interval, self._ping, interval)

    def _ping(self, interval: float) -> None:
        """Target NOP-In (RFC 7143 §11.19): ask for a NOP-Out when the line has been quiet for an interval;
        drop the connection when nothing at all arrived for two."""
        session = self.session
        if session is None or self.transport is None:
            return
        quiet = asyncio.get_running_loop().time() - self.last_rx
        if quiet >= 2 * interval:
            log.warning("%s: nothing received for %.1f s after a NOP-In; dropping the connection", self.peer, quiet)
            self.abort()
            return
        if quiet >= interval:
            self._ping_ttt = self._ping_ttt % 0xFFFFFFFE + 1
            self.write(P.NopIn(itt=RESERVED_TAG, ttt=self._ping_ttt, statsn=session.statsn,
                               expcmdsn=session.expcmdsn, maxcmdsn=session.maxcmdsn))
        self._ping_timer = asyncio.get_running_loop().call_later(interval / 2, self._ping, interval)

    # --- output --------------------------------------------------------------------------------

    def write(self, pdu: P.Pdu) -> None:
        # Hot path: PDUs written while received bytes are handled (the responses of commands that ran at
        # once) or within one loop turn leave together, in one writelines: one send system call for a
        # few of them. Not for all: a burst's first responses leave while the rest are being made, so the
        # initiator works on them meanwhile instead of both sides taking turns.
        if self.transport is None or self.transport.is_closing():
            return
        frames = frame_pdu(pdu, header_digest=self.header_digest, data_digest=self.data_digest)
        n = sum(map(len, frames))
        self.counters.bytes_out += n
        self.portal_counters.bytes_out += n
        if type(pdu) is P.DataIn:
            failed = pdu.has_status and pdu.status
        else:
            failed = isinstance(pdu, P.ScsiResponse) and pdu.status
        if failed:
            self.counters.errors += 1
            self.portal_counters.errors += 1
        if not self._out and not self._receiving:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(frames)
        self._out_bytes += n
        if self._out_bytes >= _BATCH_BYTES or len(self._out) >= _BATCH_PDUS:
            self._flush()

    def _flush(self) -> None:
        out, self._out = self._out, []
        self._out_bytes = 0
        transport = self.transport
        if not out or transport is None or transport.is_closing():
            return
        if isinstance(transport, FaultTransport):  # faults act on one PDU at a time
            for frames in out:
                transport.writelines(frames)
        else:
            transport.writelines([piece for frames in out for piece in frames])

    def close(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
