"""The sanpath target: targets, portal groups and portals on asyncio listeners, and one protocol object
per TCP connection that carries it from login to full feature phase.

Object model (named after RFC 7143 §3.4 and SAM-5): a ``TargetServer`` serves ``Target``s; each target
has target portal groups (TPGT), each a SCSI target port with a relative target port identifier; each
TPG lists network portals. Sessions are kept per (initiator name, ISID, target) so that a new login with
the same triple reinstates the session (§6.3.5).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from dataclasses import dataclass

from ..errors import RemoteProtocolError
from ..iscsi import pdu as P
from ..iscsi import text as T
from ..iscsi.constants import RESERVED_TAG, RejectReason
from ..iscsi.framing import DigestError, OversizedDataSegment, PduReader, frame_pdu
from ..scsi.constants import Status
from ..scsi.sense import build_fixed_sense
from .backstore import FileBackstore, MemoryBackstore
from .config import ServerSpec, TargetSpec, lun_naa, lun_serial
from .login import LoginFailed, TargetLogin
from .lu import LogicalUnit, PortGroupInfo, ScsiResult, report_luns_data
from .session import SessionClosed, TargetSession

log = logging.getLogger(__name__)

LOGIN_TIMEOUT = 15.0  # seconds a connection may take to finish login (open-iscsi's default login_timeout)


@dataclass(frozen=True, slots=True)
class TargetPort:
    """One target portal group of a target: a SCSI target port (SAM-5 §4.6.4)."""

    tpgt: int
    relative_port_id: int
    tpg_id: int
    portals: tuple[tuple[str, int], ...]


class Target:
    """An iSCSI target node: its name, ports, LUNs, ACL and CHAP settings."""

    def __init__(self, server: TargetServer, spec: TargetSpec) -> None:
        self.server = server
        self.spec = spec
        self.iqn = spec.iqn
        self.ports = {g.tag: TargetPort(g.tag, i + 1, g.tag, g.portals) for i, g in enumerate(spec.portal_groups)}
        self.luns: dict[int, LogicalUnit] = {}
        for lun in spec.luns:
            backstore: FileBackstore | MemoryBackstore
            if lun.path is None:
                backstore = MemoryBackstore(lun.size or 0, block_size=lun.block_size)
            else:
                backstore = FileBackstore(lun.path, size=lun.size, block_size=lun.block_size)
            serial = lun_serial(spec.iqn, lun)
            # No POWER ON unit attention for each new session: initiators that do not retry on UNIT
            # ATTENTION would fail their first command. Fault injection can turn it on.
            self.luns[lun.id] = LogicalUnit(backstore, naa=lun_naa(serial), serial=serial,
                                            port_groups=self.port_groups, read_only=lun.read_only,
                                            luns=self.lun_ids, ua_on_new_nexus=False)

    def lun_ids(self) -> list[int]:
        return sorted(self.luns)

    def port_for_tpgt(self, tpgt: int) -> TargetPort:
        return self.ports[tpgt]

    def port_groups(self) -> list[PortGroupInfo]:
        """One target port group per TPG, all active/optimized (SPC-4 §5.15)."""
        return [PortGroupInfo(p.tpg_id, 0, (p.relative_port_id,)) for p in self.ports.values()]

    def sessions(self) -> list[TargetSession]:
        return [c.session for c in self.server.connections if c.session is not None and c.session.target is self]

    def allows(self, initiator_name: str) -> bool:
        return not self.spec.initiators or initiator_name in self.spec.initiators

    def no_lun_result(self, cdb: bytes) -> ScsiResult:
        """Commands addressed to a LUN that does not exist (SPC-4 §4.6.4, §6.6.1)."""
        op = cdb[0] if cdb else 0
        if op == 0xA0:  # REPORT LUNS works through any LUN
            alloc = int.from_bytes(cdb[6:10], "big")
            return ScsiResult(Status.GOOD, data=report_luns_data(sorted(self.luns))[:alloc])
        if op == 0x12:  # INQUIRY: peripheral qualifier 011b, device type 1Fh
            alloc = int.from_bytes(cdb[3:5], "big")
            data = bytes([0x7F, 0, 6, 0x02, 31]) + bytes(31)
            return ScsiResult(Status.GOOD, data=data[:alloc])
        # ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED (25h/00h)
        return ScsiResult(Status.CHECK_CONDITION, sense=build_fixed_sense(0x05, 0x25, 0x00))

    async def close(self) -> None:
        for lu in self.luns.values():
            await lu.close()


class TargetServer:
    """Serves the targets of a ``ServerSpec`` on every portal they name."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.targets = {t.iqn: Target(self, t) for t in spec.targets}
        self.connections: set[TargetConnection] = set()
        self.servers: list[asyncio.Server] = []
        self.portals: list[tuple[str, int]] = []
        self._tsih = 0

    async def start(self) -> list[tuple[str, int]]:
        """Listen on every portal; returns the bound (address, port) pairs (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        wanted = sorted({p for t in self.targets.values() for tp in t.ports.values() for p in tp.portals})
        try:
            for host, port in wanted:
                srv = await loop.create_server(functools.partial(TargetConnection, self, (host, port)),
                                               host, port, reuse_address=True, backlog=128)
                self.servers.append(srv)
                bound = srv.sockets[0].getsockname()
                self.portals.append((bound[0], bound[1]))
                if port == 0:
                    self._rebind(host, bound[1])
        except OSError:
            await self.stop()
            raise
        return list(self.portals)

    def _rebind(self, host: str, port: int) -> None:
        """A portal given with port 0 takes the port the kernel chose, for discovery answers."""
        for t in self.targets.values():
            for tag, tp in list(t.ports.items()):
                portals = tuple((h, port) if (h, p) == (host, 0) else (h, p) for h, p in tp.portals)
                t.ports[tag] = TargetPort(tp.tpgt, tp.relative_port_id, tp.tpg_id, portals)

    async def stop(self) -> None:
        """Stop listening, drop every connection, then flush and close the backstores."""
        for srv in self.servers:
            srv.close()
        for conn in list(self.connections):
            conn.abort()
        for srv in self.servers:
            await srv.wait_closed()
        self.servers.clear()
        await asyncio.sleep(0)
        for t in self.targets.values():
            await t.close()

    def new_tsih(self) -> int:
        self._tsih = self._tsih % 0xFFFF + 1
        return self._tsih

    def targets_on_portal(self, portal: tuple[str, int]) -> list[tuple[Target, int]]:
        """(target, TPGT) pairs reachable through a local portal address."""
        out = []
        for t in self.targets.values():
            for tp in t.ports.values():
                if any(p == portal or (p[0] == portal[0] and p[1] == 0) for p in tp.portals):
                    out.append((t, tp.tpgt))
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
                for tp in t.ports.values():
                    for host, port in tp.portals:
                        addr = f"[{host}]" if ":" in host else host
                        out.append(("TargetAddress", f"{addr}:{port},{tp.tpgt}"))
        return T.encode(out)

    def register(self, conn: TargetConnection) -> None:
        self.connections.add(conn)

    def reinstate(self, new: TargetConnection, initiator: str, isid: bytes, target: Target) -> None:
        """A login with the same initiator name, ISID and target replaces the old session (§6.3.5)."""
        for c in list(self.connections):
            s = c.session
            if c is not new and s is not None and s.target is target and s.initiator_name == initiator \
                    and s.isid == isid:
                log.info("%s: reinstating session ISID %s of %s", target.iqn, isid.hex(), initiator)
                c.abort()


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
        self._login_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._last_rx = 0.0
        self._ping_ttt = 0

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
        self._login_timer = asyncio.get_running_loop().call_later(LOGIN_TIMEOUT, self._login_timeout)

    def _login_timeout(self) -> None:
        if self.session is None:
            log.warning("%s: login not finished within %.0f s; closing", self.peer, LOGIN_TIMEOUT)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._login_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self.server.connections.discard(self)
        if self.session is not None:
            self.session.shutdown()
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
        self._last_rx = asyncio.get_running_loop().time()  # any bytes at all are proof of life
        self.reader.buffer_updated(nbytes)
        try:
            while self.transport is not None and not self.transport.is_closing():
                frame = self.reader.next_frame()
                if frame is None:
                    break
                self._frame(frame.header, frame.data)
        except DigestError as e:
            log.warning("%s: %s", self.peer, e)
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

    def eof_received(self) -> bool:
        return False

    # --- PDUs ------------------------------------------------------------------------------------

    def _frame(self, header: bytes, data: bytes) -> None:
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
        self.write(reply)
        if done is not None:
            self._enter_full_feature(done)

    def _enter_full_feature(self, done: TargetLogin.Result) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
        target = done.target
        if target is not None:
            self.server.reinstate(self, done.initiator_name, done.isid, target)
        params = done.params
        self.header_digest = params.header_digest
        self.data_digest = params.data_digest
        self.reader.header_digest = params.header_digest
        self.reader.data_digest = params.data_digest
        self.reader.max_data = params.max_recv_data_segment_length
        self.session = TargetSession(
            target or _DiscoveryTarget(self.server), initiator_name=done.initiator_name, isid=done.isid,
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
        quiet = asyncio.get_running_loop().time() - self._last_rx
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
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.writelines(frame_pdu(pdu, header_digest=self.header_digest, data_digest=self.data_digest))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _DiscoveryTarget(Target):
    """Stand-in target for a discovery session: no LUNs; SendTargets=All lists every target."""

    def __init__(self, server: TargetServer) -> None:
        self.server = server
        self.iqn = ""
        self.luns = {}
        self.ports = {0: TargetPort(0, 0, 0, ())}
        self.spec = TargetSpec("")

