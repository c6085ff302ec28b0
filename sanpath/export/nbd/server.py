"""The asyncio NBD server: one export (a BlockDevice, named by its SCSI id) on a unix socket or TCP
(loopback by default), many clients, many requests in flight per client.

Per connection, an ``asyncio.BufferedProtocol`` reads into the ``Framer`` (a WRITE payload lands
straight in its own buffer), ``ServerHandshake`` answers the options, and each request runs in its
own task, so slow and fast requests overlap and replies go out in completion order, each written
whole with one ``transport.write``/``writelines`` call so chunks of different replies never interleave.
(A task per request rather than per PDU is fine here: an NBD request is a whole I/O, typically 64 KiB
to 2 MiB, and the device call it awaits dwarfs the task.)

Backpressure: reading pauses while ``max_in_flight`` requests or ``max_buffered`` bytes of payload
and read data are outstanding, or while the transport's write buffer is over its high-water mark;
buffered events are pulled again when it resumes.

Misbehaving clients cost their own connection at most: a wrong magic or an unknown client flag
closes it; an oversized request, an offset past the end, an unknown command or flag gets an error
reply ("Error values"); a client that vanishes mid-request has its in-flight requests finish
(a write is never torn off half-way) with their replies dropped. Other clients are never affected.

TLS: given an ``ssl.SSLContext``, the server requires NBD_OPT_STARTTLS of every TCP client (its unix
socket clients are local and need none), and a TCP listener on an address that is not loopback is
refused without one: nothing leaves the host in clear.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import itertools
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from sanpath.blockdev import BlockDevice
from sanpath.errors import IscsiError, LocalProtocolError, RemoteProtocolError, ScsiCommandError
from sanpath.export.device import ExportedDevice

from . import codec
from .codec import OFFSET_DATA_HEADER_LENGTH, SIMPLE_REPLY, SIMPLE_REPLY_LENGTH, Request
from .constants import DEFAULT_MAX_PAYLOAD, SIMPLE_REPLY_MAGIC, Cmd, CmdFlag, Errno, State
from .framing import (
    ClientFlagsReceived,
    Framer,
    OptionReceived,
    OptionTooLarge,
    RequestReceived,
    WriteTooLarge,
)
from .protocol import ExportInfo, Next, ServerHandshake, Stage

log = logging.getLogger(__name__)

_MAX_EXTENTS = 1024  # descriptors in one BLOCK_STATUS reply (the client asks again for the rest)
_conn_ids = itertools.count(1)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def error_value(exc: BaseException) -> Errno:
    """The NBD error value ("Error values") for a device failure."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return Errno.ENOSPC
        if exc.errno in (errno.EROFS, errno.EPERM, errno.EACCES):
            return Errno.EPERM
        return Errno.EINVAL if exc.errno == errno.EINVAL else Errno.EIO
    if isinstance(exc, ScsiCommandError) and len(exc.sense) > 2:
        key = (exc.sense[2] if exc.sense[0] & 0x7F in (0x70, 0x71) else exc.sense[1]) & 0x0F
        return {0x5: Errno.EINVAL, 0x7: Errno.EPERM}.get(key, Errno.EIO)
    if isinstance(exc, LocalProtocolError | ValueError):
        return Errno.EINVAL
    if isinstance(exc, MemoryError):
        return Errno.ENOMEM
    return Errno.EIO


class NbdServer:
    """Serve ``device`` as the NBD export ``name`` (by convention the LUN's SCSI id / WWID).

    ``start_unix(path)`` and ``start_tcp(host, port)`` may both be used; ``close()`` stops listening,
    lets in-flight requests finish (up to ``grace`` seconds) and closes every connection.
    """

    def __init__(self, device: BlockDevice, name: str, *, read_only: bool = False, description: str = "",
                 max_payload: int = DEFAULT_MAX_PAYLOAD, max_in_flight: int = 64,
                 max_buffered: int = 64 << 20, handshake_timeout: float = 30.0,
                 tls: ssl.SSLContext | None = None) -> None:
        if max_payload % device.block_size:
            raise ValueError(f"max_payload {max_payload} is not a multiple of the block size {device.block_size}")
        self.device = ExportedDevice(device)
        self.export = ExportInfo(name=name, size=device.size, block_size=device.block_size,
                                 description=description, read_only=read_only, max_payload=max_payload,
                                 allocation=self.device.reports_allocation)
        self.max_in_flight = max_in_flight
        self.max_buffered = max(max_buffered, max_payload)
        self.handshake_timeout = handshake_timeout
        self.tls = tls
        self._servers: list[asyncio.Server] = []
        self._unix_paths: list[str] = []
        self.connections: set[_Connection] = set()
        self.addresses: list[str] = []
        self.accepting = True  # new clients are let in (a host in maintenance mode refuses them)
        self.on_change: Callable[[], None] | None = None  # called when a client comes or goes

    def _protocol(self, tls: bool = False) -> _Connection:
        return _Connection(self, tls=tls)

    async def start_unix(self, path: str | os.PathLike[str]) -> str:
        path = os.fspath(path)
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(self._protocol, path)
        self._servers.append(server)
        self._unix_paths.append(path)
        self.addresses.append(f"nbd+unix:///{self.export.name}?socket={path}")
        log.info("NBD export %r on unix socket %s", self.export.name, path)
        return path

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        if self.tls is None and not _loopback(host):
            raise ValueError(f"an NBD export on {host}, which is not loopback, needs TLS (NBD_OPT_STARTTLS with "
                             "x509 certificates): give a certificate and key, or export on loopback or a unix socket")
        loop = asyncio.get_running_loop()
        server = await loop.create_server(functools.partial(self._protocol, self.tls is not None), host, port,
                                          reuse_address=True)
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        bound = (str(sockname[0]), int(sockname[1]))
        url_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.addresses.append(f"nbd://{url_host}:{bound[1]}/{self.export.name}")
        log.info("NBD export %r on %s:%d", self.export.name, *bound)
        return bound

    async def disconnect_clients(self, grace: float = 5.0) -> int:
        """Close every client: requests still buffered get ESHUTDOWN, the ones in flight finish and are
        answered first (up to ``grace`` seconds; then they are aborted). Returns how many were closed."""
        conns = list(self.connections)
        for conn in conns:
            conn.shutdown()
        pending = [c.closed for c in self.connections]
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            if late:
                for conn in list(self.connections):
                    conn.abort()
                still = [c.closed for c in self.connections]
                if still:
                    await asyncio.wait(still, timeout=grace)
        return len(conns)

    async def close(self, grace: float = 5.0) -> None:
        for server in self._servers:
            server.close()
        await self.disconnect_clients(grace)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for path in self._unix_paths:
            try:
                if os.path.exists(path) and not os.path.isfile(path):
                    os.unlink(path)
            except OSError:
                pass
        self._unix_paths.clear()

    async def __aenter__(self) -> NbdServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Connection(asyncio.BufferedProtocol):
    """One client: handshake, then requests (see the module comment)."""

    def __init__(self, server: NbdServer, *, tls: bool = False) -> None:
        self.server = server
        self.dev = server.device
        self.id = next(_conn_ids)
        self.hs = ServerHandshake(server.export, tls=tls)
        self.upgrading: asyncio.Task[None] | None = None  # the TLS handshake after NBD_OPT_STARTTLS
        self.framer = Framer(max_payload=server.export.max_payload)
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.buffered = 0  # bytes of WRITE payload and READ data held by in-flight requests
        self.draining = False  # close once idle (NBD_CMD_DISC, EOF, shutdown, a violation)
        self.accepting = True  # run new requests (not after NBD_CMD_DISC or during shutdown)
        self.write_paused = False
        self.read_paused = False
        self.lost = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._dispatch: dict[int, Callable[[Request, bytearray | None], Awaitable[list[Any]]]] = {
            Cmd.READ: self._read, Cmd.WRITE: self._write, Cmd.FLUSH: self._flush, Cmd.TRIM: self._trim,
            Cmd.WRITE_ZEROES: self._write_zeroes, Cmd.BLOCK_STATUS: self._block_status,
        }

    def __repr__(self) -> str:
        return f"<NBD client #{self.id} of {self.server.export.name!r}>"

    # --- asyncio protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.server.accepting:
            log.info("%r refused: the export takes no new clients now (its host is in maintenance mode)", self)
            self.lost = True
            self.closed.set_result(None)
            transport.abort()
            return
        self.server.connections.add(self)
        if self.server.on_change is not None:
            self.server.on_change()
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.debug("%r connected from %s", self, transport.get_extra_info("peername") or "unix socket")
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.server.handshake_timeout, self._handshake_expired)
        transport.write(self.hs.greeting())

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.framer.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.framer.buffer_updated(nbytes)
        self._process()

    def eof_received(self) -> bool:
        self.draining = True
        self._process()  # whole requests already received still run
        self._close_if_idle()
        return True  # keep the write side open for the replies still due

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.draining = True
        self.accepting = False
        self.hs.disconnect()
        if self._timer is not None:
            self._timer.cancel()
        if self.tasks:
            log.info("%r went away with %d requests in flight; they finish, their replies are dropped",
                     self, len(self.tasks))
        self._settle()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._flow()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._flow()
        self._process()

    # --- lifecycle -----------------------------------------------------------------------------------

    def _settle(self) -> None:
        """Resolve ``closed`` once the transport is gone and no request is running."""
        if self.lost and not self.tasks and not self.closed.done():
            self.server.connections.discard(self)
            self.closed.set_result(None)
            if self.server.on_change is not None:
                self.server.on_change()

    def _handshake_expired(self) -> None:
        log.warning("%r did not finish the NBD handshake in %.0f s; closing", self, self.server.handshake_timeout)
        self.hard_close()

    def hard_close(self) -> None:
        """Close now (pending writes still flush); in-flight requests finish with replies dropped."""
        self.draining = True
        self.accepting = False
        self.hs.disconnect()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Server shutdown: requests still buffered get ESHUTDOWN, the in-flight ones finish and reply,
        then the connection closes."""
        self.draining = True
        self.accepting = False
        self._flow()
        if self.hs.stage is not Stage.TRANSMISSION:
            self.hard_close()
        self._process()
        self._close_if_idle()

    def abort(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.transport is not None:
            self.transport.abort()

    def _close_if_idle(self) -> None:
        if self.draining and not self.tasks and self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _flow(self) -> None:
        """Pause reading while too much is outstanding (see the module comment)."""
        if self.transport is None or self.transport.is_closing():
            return
        want = self._busy() or self.write_paused or not self.accepting
        if want and not self.read_paused:
            self.transport.pause_reading()
            self.read_paused = True
        elif not want and self.read_paused:
            self.transport.resume_reading()
            self.read_paused = False

    def _busy(self) -> bool:
        return self.in_flight >= self.server.max_in_flight or self.buffered >= self.server.max_buffered

    # --- events --------------------------------------------------------------------------------------

    def _process(self) -> None:
        """Pull and handle every whole message buffered, unless too much is outstanding."""
        if self.lost:
            return
        try:
            while not self._busy() and not self.write_paused and self.hs.stage is not Stage.CLOSED \
                    and self.upgrading is None:
                event = self.framer.next_event()
                if event is None:
                    break
                self._handle(event)
        except RemoteProtocolError as e:
            log.warning("%r broke the NBD protocol: %s", self, e)
            self.hard_close()
        self._flow()

    def _handle(self, event: object) -> None:
        assert self.transport is not None
        if isinstance(event, RequestReceived):
            self._start(event.request, event.payload)
        elif isinstance(event, WriteTooLarge):
            req = event.request
            self._reply_error(req, self.hs.oversize_error(),
                              f"WRITE of {req.length} bytes exceeds the maximum {self.server.export.max_payload}")
        elif isinstance(event, ClientFlagsReceived):
            self.hs.receive_client_flags(event.data)
        elif isinstance(event, OptionReceived | OptionTooLarge):
            if isinstance(event, OptionReceived):
                result = self.hs.receive_option(event.option, event.data)
            else:
                result = self.hs.option_too_large(event.option, event.length)
            self.transport.writelines(result.replies)
            if result.next is Next.TRANSMIT:
                self.framer.enter_transmission()
                if self._timer is not None:
                    self._timer.cancel()
                log.debug("%r entered transmission (structured replies: %s)", self, self.hs.structured)
            elif result.next is Next.CLOSE:
                self.hard_close()
            elif result.next is Next.STARTTLS:
                self.upgrading = asyncio.get_running_loop().create_task(self._start_tls())

    async def _start_tls(self) -> None:
        """The TLS handshake on this connection; the option haggling then goes on inside it."""
        assert self.transport is not None and self.server.tls is not None
        try:
            upgraded = await asyncio.get_running_loop().start_tls(
                self.transport, self, self.server.tls, server_side=True,
                ssl_handshake_timeout=self.server.handshake_timeout)
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as e:
            log.warning("%r: the TLS handshake failed: %s", self, e)
            self.hard_close()
            return
        finally:
            self.upgrading = None
        if upgraded is None:  # the connection went away meanwhile
            return
        self.transport = upgraded
        log.debug("%r: TLS is on (%s)", self, upgraded.get_extra_info("cipher"))
        self._process()

    def _start(self, req: Request, payload: bytearray | None) -> None:
        if req.type == Cmd.DISC:
            log.debug("%r sent NBD_CMD_DISC", self)
            self.hs.disconnect()
            self.draining = True
            self.accepting = False
            self._close_if_idle()
            return
        if not self.accepting:
            self._reply_error(req, Errno.ESHUTDOWN, "the server is shutting down")
            return
        cost = req.length if req.type in (Cmd.READ, Cmd.WRITE) else 0
        self.in_flight += 1
        self.buffered += cost
        task = asyncio.get_running_loop().create_task(self._run(req, payload, cost))
        self.tasks.add(task)

    async def _run(self, req: Request, payload: bytearray | None, cost: int) -> None:
        try:
            refusal = self.hs.check_request(req)
            if refusal is not None:
                self._reply_error(req, refusal.error, refusal.message)
                return
            try:
                parts = await self._dispatch[req.type](req, payload)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                value = error_value(e)
                if value == Errno.EIO and not isinstance(e, IscsiError | OSError):
                    log.exception("%r: %s failed", self, Cmd(req.type).name)
                else:
                    log.info("%r: %s %d+%d failed: %s", self, Cmd(req.type).name, req.offset, req.length, e)
                self._reply_error(req, value, f"{Cmd(req.type).name} at {req.offset}: {e}")
                return
            self._send(parts)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self.tasks.discard(task)
            self.in_flight -= 1
            self.buffered -= cost
            self._process()
            self._close_if_idle()
            self._settle()

    def _send(self, parts: list[Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if len(parts) == 1:
                self.transport.write(parts[0])
            else:
                self.transport.writelines(parts)

    def _reply_error(self, req: Request, value: int, message: str) -> None:
        if self.hs.structured:
            self._send([codec.error_chunk(req.cookie, value, message)])
        else:
            self._send([codec.simple_reply(req.cookie, value)])

    def _ok(self, req: Request) -> list[Any]:
        # a simple reply is allowed for every command but READ, even with structured replies
        return [codec.simple_reply(req.cookie)]

    # --- commands ------------------------------------------------------------------------------------

    async def _read(self, req: Request, payload: bytearray | None) -> list[Any]:
        if self.hs.structured:
            if not req.length:
                return [codec.none_chunk(req.cookie)]
            buf = bytearray(OFFSET_DATA_HEADER_LENGTH + req.length)
            await self.dev.read_into(req.offset, memoryview(buf)[OFFSET_DATA_HEADER_LENGTH:])
            codec.pack_offset_data_header(buf, req.cookie, req.offset, req.length)
            return [buf]
        buf = bytearray(SIMPLE_REPLY_LENGTH + req.length)
        await self.dev.read_into(req.offset, memoryview(buf)[SIMPLE_REPLY_LENGTH:])
        SIMPLE_REPLY.pack_into(buf, 0, SIMPLE_REPLY_MAGIC, 0, req.cookie)
        return [buf]

    async def _write(self, req: Request, payload: bytearray | None) -> list[Any]:
        assert payload is not None
        await self.dev.write(req.offset, payload, fua=bool(req.flags & CmdFlag.FUA))
        return self._ok(req)

    async def _flush(self, req: Request, payload: bytearray | None) -> list[Any]:
        await self.dev.flush()
        return self._ok(req)

    async def _trim(self, req: Request, payload: bytearray | None) -> list[Any]:
        await self.dev.trim(req.offset, req.length, fua=bool(req.flags & CmdFlag.FUA))
        return self._ok(req)

    async def _write_zeroes(self, req: Request, payload: bytearray | None) -> list[Any]:
        await self.dev.write_zeroes(req.offset, req.length, fua=bool(req.flags & CmdFlag.FUA),
                                    may_unmap=not req.flags & CmdFlag.NO_HOLE)
        return self._ok(req)

    async def _block_status(self, req: Request, payload: bytearray | None) -> list[Any]:
        assert self.hs.meta_context is not None
        limit = 1 if req.flags & CmdFlag.REQ_ONE else _MAX_EXTENTS
        extents = await self.dev.extents(req.offset, req.length, limit=limit)
        hole = int(State.HOLE | State.ZERO)
        descriptors = [(n, 0 if mapped else hole) for n, mapped in extents[:limit]]
        return [codec.block_status_chunk(req.cookie, self.hs.meta_context, descriptors)]
