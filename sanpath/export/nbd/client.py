"""A small NBD client with many requests in flight (fixed newstyle, NBD_OPT_GO, simple replies), shaped
like a BlockDevice (size, block_size, read_into, write, flush), so that ``sanpath demo`` and the load
engine can drive a LUN the way real NBD consumers do: through the export."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from ...errors import RemoteProtocolError, SanpathError
from . import codec
from .codec import Request
from .constants import SIMPLE_REPLY_MAGIC, ClientFlag, Cmd, Info, Option, Rep


class NbdError(SanpathError):
    """The server answered a request with an error number."""


class NbdClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.size = 0
        self.block_size = 512
        self._cookie = 0
        self._pending: dict[int, tuple[Request, asyncio.Future[None], memoryview | None]] = {}
        self._receiver: asyncio.Task[None] | None = None
        self._ended: str | None = None  # why replies stopped: every later request fails at once with it

    @classmethod
    async def connect_unix(cls, path: str, name: str) -> NbdClient:
        reader, writer = await asyncio.open_unix_connection(path)
        client = cls(reader, writer)
        await client._go(name)
        client._receiver = asyncio.get_running_loop().create_task(client._receive())
        return client

    async def _go(self, name: str) -> None:
        codec.parse_server_greeting(await self.reader.readexactly(codec.GREETING_LENGTH))
        self.writer.write(codec.CLIENT_FLAGS.pack(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES))
        self.writer.write(codec.encode_option(Option.GO, codec.encode_info_request(name, (Info.BLOCK_SIZE,))))
        while True:
            _, rep, length = codec.parse_option_reply(await self.reader.readexactly(codec.OPTION_REPLY.size))
            payload = await self.reader.readexactly(length)
            if rep == Rep.ACK:
                return
            if rep & (1 << 31):
                raise NbdError(f"export {name!r} refused: {payload.decode(errors='replace') or hex(rep)}")
            (kind,) = struct.unpack_from(">H", payload)
            if kind == Info.EXPORT:
                _, self.size, _ = struct.unpack(">HQH", payload)
            elif kind == Info.BLOCK_SIZE:
                _, minimum, _, _ = struct.unpack(">HIII", payload)
                self.block_size = minimum

    async def _receive(self) -> None:
        error: BaseException = NbdError("the NBD server closed the connection")
        try:
            while True:
                header = await self.reader.readexactly(16)
                magic, errno, cookie = struct.unpack(">IIQ", header)
                if magic != SIMPLE_REPLY_MAGIC or cookie not in self._pending:
                    raise RemoteProtocolError(f"unexpected NBD reply (magic 0x{magic:08x}, cookie {cookie})")
                req, fut, buf = self._pending.pop(cookie)
                if req.type == Cmd.READ and not errno and buf is not None:
                    buf[:] = await self.reader.readexactly(req.length)
                if not fut.done():
                    fut.set_exception(NbdError(f"NBD error {errno}")) if errno else fut.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError, RemoteProtocolError) as e:
            error = e if isinstance(e, RemoteProtocolError) else error
        finally:
            if self._ended is None:
                self._ended = str(error)
            for _, fut, _ in self._pending.values():
                if not fut.done():
                    fut.set_exception(error)
            self._pending.clear()

    async def _call(self, cmd: int, offset: int, length: int, payload: bytes | memoryview = b"",
                    into: memoryview | None = None, flags: int = 0) -> None:
        if self._ended is not None:  # nothing would ever answer it
            raise NbdError(f"no request can be sent: {self._ended}")
        self._cookie += 1
        req = Request(flags, cmd, self._cookie, offset, length)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[req.cookie] = (req, fut, into)
        self.writer.write(codec.encode_request(req))
        if payload:
            self.writer.write(payload)
        await fut

    async def read_into(self, offset: int, buffer: bytearray | memoryview) -> None:
        view = memoryview(buffer).cast("B")
        await self._call(Cmd.READ, offset, len(view), into=view)

    async def write(self, offset: int, data: bytes | bytearray | memoryview, *, fua: bool = False) -> None:
        await self._call(Cmd.WRITE, offset, len(data), bytes(data), flags=1 if fua else 0)

    async def flush(self) -> None:
        await self._call(Cmd.FLUSH, 0, 0)

    async def close(self) -> None:
        self._ended = "this client closed the connection"
        with contextlib.suppress(ConnectionError):
            self.writer.write(codec.encode_request(Request(0, Cmd.DISC, 0, 0, 0)))
        self.writer.close()
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._receiver
