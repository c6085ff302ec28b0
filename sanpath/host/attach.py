"""The attach service: log in to every path of a LUN, build its multipath device, export it over NBD, keep
the checker loop running, and answer status requests on a control socket; on SIGTERM drain what is in
flight, flush, and log out.

Control socket requests::

    {"op": "status"}  -> {"ok": true, "status": {topology..., "throughput": {path: {"mbps", "iops"}}}}
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from sanpath.aio import within

from .. import control
from ..errors import ConfigError
from ..export.nbd.server import NbdServer
from ..initiator.session import SessionConfig
from ..multipath.device import MultipathDevice
from ..multipath.discovery import MultipathSpec, PolicyFor, assemble
from ..multipath.monitor import PathMonitor
from ..multipath.sessions import SessionPool
from ..multipath.status import topology

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NbdEndpoint:
    """``unix:PATH`` or ``tcp:ADDR:PORT``."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> NbdEndpoint:
        if text.startswith("unix:") and len(text) > 5:
            return cls("unix", path=text[5:])
        if text.startswith("tcp:"):
            host, _, port = text[4:].rpartition(":")
            host = host.strip("[]")
            if host and port.isdigit() and 0 <= int(port) <= 65535:
                return cls("tcp", host=host, port=int(port))
        raise ConfigError("--nbd", f"{text!r}: write unix:PATH or tcp:ADDR:PORT (e.g. tcp:127.0.0.1:10809)")

    def uri(self, name: str, *, tls: bool = False) -> str:
        if self.kind == "unix":
            return f"nbd+unix:///{name}?socket={self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'nbds' if tls else 'nbd'}://{host}:{self.port}/{name}"


def tls_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """The export's TLS: its certificate and key; with ``ca``, clients must show a certificate it signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
        if ca:
            context.load_verify_locations(ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("--tls-cert", f"cannot load the TLS certificate {cert} / key {key}"
                          f"{f' / CA {ca}' if ca else ''}: {e}") from None
    return context


@dataclass
class Throughput:
    """Per-path I/O rates over the last sampling second."""

    last: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    rates: dict[str, dict[str, float]] = field(default_factory=dict)

    def sample(self, device: MultipathDevice) -> None:
        now = time.monotonic()
        for p in device.paths:
            prev = self.last.get(p.name)
            if prev is not None and now > prev[0]:
                dt = now - prev[0]
                self.rates[p.name] = {"mbps": (p.bytes - prev[1]) / dt / 1e6, "iops": (p.ios - prev[2]) / dt}
            self.last[p.name] = (now, p.bytes, p.ios)


class ExportService:
    """A multipath device exported over NBD, with its checker loop, per-path throughput and a control
    socket answering ``status``; what builds the device is the subclass's (``start``)."""

    def __init__(self, nbd: NbdEndpoint, control_path: str, *, read_only: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.nbd = nbd
        self.control_path = control_path
        self.read_only = read_only
        self.tls = tls
        self.pool = SessionPool()
        self.device: MultipathDevice | None = None
        self.monitor: PathMonitor | None = None
        self.export: NbdServer | None = None
        self.control = control.JsonLineServer(control_path, self.handle)
        self.throughput = Throughput()
        self.tasks: list[asyncio.Task[None]] = []

    async def serve(self, device: MultipathDevice) -> str:
        """Watch the device's paths, export it, answer on the control socket; returns the NBD URI."""
        self.device = device
        self.monitor = PathMonitor(device, self.pool)
        self.monitor.start()
        self.export = NbdServer(device, device.wwid, read_only=self.read_only, tls=self.tls)
        if self.nbd.kind == "unix":
            await self.export.start_unix(self.nbd.path)
        else:
            self.nbd = NbdEndpoint("tcp", host=self.nbd.host, port=await self._start_tcp())
        await self.control.start()
        self.tasks.append(asyncio.get_running_loop().create_task(self._sample()))
        return self.nbd.uri(device.wwid, tls=self.tls is not None)

    async def _start_tcp(self) -> int:
        assert self.export is not None
        try:
            bound = await self.export.start_tcp(self.nbd.host, self.nbd.port)
        except ValueError as e:
            raise ConfigError("--nbd", str(e)) from None
        return int(bound[1]) if isinstance(bound, tuple) else self.nbd.port

    async def _sample(self) -> None:
        while True:
            if self.device is not None:
                self.throughput.sample(self.device)
            await asyncio.sleep(1.0)

    def status(self, events: int = 20) -> dict[str, Any]:
        assert self.device is not None
        status = topology(self.device, events=events)
        status["throughput"] = self.throughput.rates
        status["nbd"] = self.nbd.uri(self.device.wwid, tls=self.tls is not None)
        return status

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") != "status":
            return {"ok": False, "error": f"unknown op {req.get('op')!r}; use status"}
        if self.device is None or self.export is None:
            return {"ok": False, "error": "not attached yet"}
        return {"ok": True, "status": self.status(int(req.get("events", 20)))}

    async def stop(self) -> bool:
        """Stop taking NBD requests, let those in flight finish, flush the LUN, log out everywhere.
        Returns whether the flush succeeded (False: acknowledged writes may not be on the array)."""
        for task in self.tasks:
            task.cancel()
        if self.export is not None:
            await self.export.close()
        flushed = True
        if self.device is not None:
            try:
                await within(self.device.flush(), 30)
            except Exception as e:
                log.error("%s: the last flush failed: %s", self.device.wwid, e)
                flushed = False
        if self.monitor is not None:
            await self.monitor.stop()
        await self.control.stop()
        await self.pool.close()
        return flushed


class AttachService(ExportService):
    """``sanpath attach``: discover, log in to every portal, one device for the LUN."""

    def __init__(self, spec: MultipathSpec, base: SessionConfig, policy: PolicyFor, nbd: NbdEndpoint,
                 control_path: str, *, read_only: bool = False, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(nbd, control_path, read_only=read_only, tls=tls)
        self.spec = spec
        self.base = base
        self.policy = policy

    async def start(self) -> str:
        """Everything up; returns the NBD URI."""
        devices = await assemble(self.spec, self.base, self.policy, self.pool)
        if len(devices) > 1:
            ids = ", ".join(d.wwid for d in devices)
            await self.pool.close()
            raise ConfigError("--scsi-id", f"{len(devices)} LUNs found ({ids}); choose one with --scsi-id")
        return await self.serve(devices[0])
