"""The blocking facade over the asyncio initiator, for scripts and tools that do not run an event loop.

Mechanical by design (DESIGN.md: "async core, mechanical sync facade; no logic written twice"): an event
loop runs in a daemon thread, and every method here submits the matching coroutine to it and waits for
the answer. Nothing is decided here; errors are those of the async core, re-raised in the caller's thread.

    with SyncSession.open(SessionConfig("127.0.0.1", 3260, "iqn.2026-11.org.example:array1")) as s:
        dev = s.device(0)
        data = dev.read(0, 4096)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from ..errors import IscsiError
from .device import LunInfo, ScsiDevice
from .discovery import DiscoveredTarget
from .discovery import discover as _discover
from .session import CommandResult, Session, SessionConfig

T = TypeVar("T")


class EventLoopThread:
    """An asyncio event loop running in a daemon thread; ``run(coro)`` blocks until the coroutine ends."""

    def __init__(self, name: str = "sanpath-sync") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync sanpath call from inside its own event loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncSession:
    """A blocking ``Session``. ``SyncSession.open(config)``; close with ``logout()`` or a ``with`` block."""

    def __init__(self, session: Session, runner: EventLoopThread, *, owns_runner: bool) -> None:
        self.session = session
        self.runner = runner
        self._owns_runner = owns_runner

    @classmethod
    def open(cls, config: SessionConfig, *, runner: EventLoopThread | None = None) -> SyncSession:
        own = runner is None
        r = runner or EventLoopThread()
        try:
            session = r.run(Session.open(config))
        except BaseException:
            if own:
                r.stop()
            raise
        return cls(session, r, owns_runner=own)

    @property
    def portal(self) -> str:
        return self.session.portal

    @property
    def logged_in(self) -> bool:
        return self.session.logged_in

    def execute(self, lun: int, cdb: bytes, *, data_out: bytes | bytearray | memoryview | None = None,
                read_length: int = 0, buffer: bytearray | memoryview | None = None,
                timeout: float | None = None) -> CommandResult:
        return self.runner.run(self.session.execute(lun, cdb, data_out=data_out, read_length=read_length,
                                                    buffer=buffer, timeout=timeout))

    def text(self, keys: list[tuple[str, str]], *, timeout: float = 10.0) -> list[tuple[str, str]]:
        return self.runner.run(self.session.text(keys, timeout=timeout))

    def ping(self, timeout: float = 5.0) -> float:
        return self.runner.run(self.session.ping(timeout))

    def device(self, lun: int) -> SyncDevice:
        """LUN ``lun``, opened (its capacity read)."""
        return SyncDevice(self.runner.run(ScsiDevice(self.session, lun).open()), self.runner)

    def logout(self, timeout: float = 5.0) -> None:
        try:
            self.runner.run(self.session.logout(timeout))
        finally:
            if self._owns_runner:
                self.runner.stop()

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.logout()


class SyncDevice:
    """A blocking ``ScsiDevice`` (a BlockDevice with the SCSI helpers)."""

    def __init__(self, device: ScsiDevice, runner: EventLoopThread) -> None:
        self.device = device
        self.runner = runner

    @property
    def lun(self) -> int:
        return self.device.lun

    @property
    def size(self) -> int:
        return self.device.size

    @property
    def block_size(self) -> int:
        return self.device.block_size

    def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        self.runner.run(self.device.read_into(offset, buffer))

    def read(self, offset: int, length: int) -> bytes:
        return self.runner.run(self.device.read(offset, length))

    def write(self, offset: int, data: bytes | bytearray | memoryview, *, fua: bool = False) -> None:
        self.runner.run(self.device.write(offset, data, fua=fua))

    def flush(self) -> None:
        self.runner.run(self.device.flush())

    def unmap(self, offset: int, length: int) -> None:
        self.runner.run(self.device.unmap(offset, length))

    def info(self) -> LunInfo:
        return self.runner.run(self.device.info())

    def report_luns(self) -> tuple[int, ...]:
        return self.runner.run(self.device.report_luns())

    def scsi_id(self) -> str:
        return self.runner.run(self.device.scsi_id())


def discover(portals: str | list[tuple[str, int]], config: SessionConfig | None = None, *,
             runner: EventLoopThread | None = None) -> tuple[list[DiscoveredTarget], dict[str, IscsiError]]:
    """Blocking ``discovery.discover``."""
    r = runner or EventLoopThread()
    try:
        return r.run(_discover(portals, config))
    finally:
        if runner is None:
            r.stop()
