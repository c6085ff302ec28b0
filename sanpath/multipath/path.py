"""One path to a LUN: (source address, portal, target IQN, LUN), its session, its state and its counters.

A path owns its iSCSI session. It never decides its own state: the device (on I/O errors) and the
monitor (on checker results) tell it what happened through ``apply``, which looks the move up in the
transition table (``states.TRANSITIONS``), records the reason and emits an event.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..initiator.device import ScsiDevice
from ..initiator.session import Session
from .states import QUIET, PathEventKind, PathState, next_state


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
    kind: PathEventKind
    reason: str
    state: str

    @classmethod
    def now(cls, path: Path, kind: PathEventKind, reason: str) -> PathEvent:
        """An event about ``path`` in its current state, stamped with the wall-clock time."""
        return cls(time.time(), path.name, kind, reason, path.state.value)

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

    @property
    def lun(self) -> int:
        """The LUN commands to this path address (the opened device's, else the spec's)."""
        return self.device.lun if self.device is not None else self.spec.lun

    @property
    def block_length(self) -> int | None:
        """The LUN's block size once READ CAPACITY answered through some path, else None."""
        capacity = self.device.capacity if self.device is not None else None
        return capacity.block_length if capacity is not None else None

    def apply(self, kind: PathEventKind, reason: str | None = None) -> None:
        """Move the path as the table says for ``kind`` (``PathTransitionError`` when it has no such
        move), with ``reason`` (None keeps the current one). Being told again what is already so is no
        news. A move to faulty counts towards the marginal limit."""
        new = next_state(self.state, kind)
        reason = self.reason if reason is None else reason
        if new == self.state and reason == self.reason:
            return
        old, self.state, self.reason = self.state, new, reason
        if kind in QUIET:
            return
        self.since = time.monotonic()
        if new == PathState.FAULTY and old != PathState.FAULTY:
            self.failures.append(self.since)
        if self.on_event is not None:
            self.on_event(PathEvent.now(self, kind, reason))

    def failures_within(self, window: float) -> int:
        now = time.monotonic()
        return sum(1 for t in self.failures if now - t <= window)

    @property
    def last_failure(self) -> float | None:
        """When the path last went faulty (monotonic), if it counts towards flapping."""
        return self.failures[-1] if self.failures else None

    def forgive_last_failure(self) -> None:
        """Take the latest failure back from the flapping count (it was an array- or fabric-wide event)."""
        if self.failures:
            self.failures.pop()
