"""One path to a LUN: (source address, portal, target IQN, LUN), its session, its state and its counters.

A path owns its iSCSI session. It never decides its own state: the device (on I/O errors) and the
monitor (on checker results) do, through ``set_state``, which records the reason and emits an event.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..initiator.device import ScsiDevice
from ..initiator.session import Session
from .states import PathState


@dataclass(frozen=True, slots=True)
class PathSpec:
    """Where a path goes: it leaves through ``source`` (a storage NIC) to ``host:port``, target ``iqn``."""

    host: str
    port: int
    iqn: str
    lun: int
    source: str | None = None

    @property
    def portal(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def name(self) -> str:
        via = f"{self.source}->" if self.source else ""
        return f"{via}{self.portal}/{self.iqn}/{self.lun}"


@dataclass(frozen=True, slots=True)
class PathEvent:
    """An immutable fact about a path: it failed, came back, was held out, changed priority..."""

    time: float
    path: str
    kind: str  # failed | reinstated | marginal | ghost | priority | added | group
    reason: str
    state: str

    def __str__(self) -> str:
        return f"{time.strftime('%H:%M:%S', time.localtime(self.time))} {self.path}: {self.kind} ({self.reason})"


@dataclass(eq=False)
class Path:
    spec: PathSpec
    session: Session | None = None
    device: ScsiDevice | None = None
    wwid: str = ""
    state: PathState = PathState.FAULTY
    priority: int = 1
    reason: str = "not logged in"
    since: float = field(default_factory=time.monotonic)
    inflight: int = 0
    inflight_bytes: int = 0
    ios: int = 0
    bytes: int = 0
    errors: int = 0
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    marginal_until: float = 0.0
    service_time: float = 0.0  # moving average of I/O service time, seconds (for service-time)
    alua_state: int | None = None
    vendor: str = ""
    product: str = ""
    tpg_id: int | None = None
    on_event: Callable[[PathEvent], None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def set_state(self, state: PathState, reason: str, kind: str | None = None) -> None:
        if state == self.state and reason == self.reason:
            return
        old = self.state
        if kind == "group":  # active <-> ready as the active group changes: not news about the path
            self.state = state
            return
        self.state = state
        self.reason = reason
        self.since = time.monotonic()
        if state == PathState.FAULTY and old != PathState.FAULTY:
            self.failures.append(self.since)
        if kind is None:
            if state == PathState.FAULTY:
                kind = "failed"
            elif state == PathState.MARGINAL:
                kind = "marginal"
            elif state == PathState.GHOST:
                kind = "ghost"
            elif not old.up and state.up:
                kind = "reinstated"
            else:
                kind = "state"
        if self.on_event is not None:
            self.on_event(PathEvent(time.time(), self.name, kind, reason, state.value))

    def failures_within(self, window: float) -> int:
        now = time.monotonic()
        return sum(1 for t in self.failures if now - t <= window)
