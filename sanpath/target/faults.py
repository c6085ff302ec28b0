"""Fault injection for the sanpath target: the fault model, its scheduler, and the counters the
control socket reports. The server, its connections and the backstore wrapper below ask this module
what to do at their narrowest points (accept, read, write, backstore I/O); everything else is here.

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
import itertools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..blockdev import BlockDevice
from ..errors import ConfigError
from .config import parse_portal

if TYPE_CHECKING:
    from .server import TargetServer

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
    held: set[Any] = field(default_factory=set)  # connections a black hole holds
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
    """The faults of one ``TargetServer``. Hooks read the plain attributes below (cheap on the hot path)."""

    def __init__(self, server: TargetServer) -> None:
        self.server = server
        self.faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)
        self._countdown: list[Fault] = []
        # what the hooks look at
        self.down: set[Portal] = set()
        self.blackholed: set[Portal] = set()
        self.output_faults = False  # any delay or digest fault active (checked on every PDU sent)
        self.medium: list[int | None] = []  # LUN ids failing (None: every LUN)

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

    # --- hooks ----------------------------------------------------------------------------------

    def command_seen(self) -> None:
        """A SCSI command arrived somewhere: advance ``after_commands`` schedules."""
        if not self._countdown:
            return
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

    def hold(self, portal: Portal, conn: Any) -> None:
        """A connection on a black-holed portal: remember it, to drop it on restore."""
        for f in self._active("blackhole"):
            if f.portal == portal:
                f.held.add(conn)

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
                fault.held.add(conn)
        elif kind == "drop-sessions":
            server.drop_connections(fault.portal, fault.session)
            fault.state = "done"
        elif kind == "unit-attention":
            for lu in self._luns(fault.lun):
                lu.ua_on_new_nexus = True
        elif kind == "medium-error":
            self.medium.append(fault.lun)
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
        return [lu for a in self.server.arrays for n, lu in a.luns.items() if lun is None or n == lun]

    def _recompute(self) -> None:
        self.output_faults = bool(self._active("delay") or self._active("digest"))

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

    async def read(self, offset: int, length: int) -> bytes:
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
