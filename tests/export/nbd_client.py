"""A small raw NBD client for the server tests, built on the codec: it can do what real clients do
and also what they never would (bad magic, oversized requests, vanishing mid-request)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from dataclasses import dataclass, field

from sanpath.export.nbd import codec
from sanpath.export.nbd.codec import Request
from sanpath.export.nbd.constants import (
    REPLY_FLAG_DONE,
    SIMPLE_REPLY_MAGIC,
    STRUCTURED_REPLY_MAGIC,
    ClientFlag,
    Cmd,
    Info,
    Option,
    Rep,
    ReplyType,
)


@dataclass
class Reply:
    cookie: int
    error: int = 0
    data: bytearray = field(default_factory=bytearray)
    message: str = ""
    structured: bool = False
    extents: list[tuple[int, int]] = field(default_factory=list)


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.size = 0
        self.flags = 0
        self.block_sizes: tuple[int, int, int] | None = None
        self.structured = False
        self.pending: dict[int, Request] = {}
        self._partial: dict[int, Reply] = {}
        self._cookie = 0

    @classmethod
    async def connect(cls, address: str | os.PathLike[str] | tuple[str, int]) -> RawClient:
        if isinstance(address, tuple):
            reader, writer = await asyncio.open_connection(*address)
        else:
            reader, writer = await asyncio.open_unix_connection(os.fspath(address))
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await self.writer.wait_closed()

    # --- handshake ----------------------------------------------------------------------------------

    async def greet(self, flags: int = ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES) -> int:
        handshake = codec.parse_server_greeting(await self.reader.readexactly(codec.GREETING_LENGTH))
        self.writer.write(codec.CLIENT_FLAGS.pack(flags))
        return handshake

    async def option(self, option: int, data: bytes = b"") -> list[tuple[int, bytes]]:
        """Send one option; return its replies up to and including ACK or an error."""
        self.writer.write(codec.encode_option(option, data))
        replies = []
        while True:
            opt, rep, length = codec.parse_option_reply(await self.reader.readexactly(codec.OPTION_REPLY.size))
            assert opt == option
            payload = await self.reader.readexactly(length)
            replies.append((rep, payload))
            if rep == Rep.ACK or rep & (1 << 31):
                return replies

    async def go(self, name: str, *, structured: bool = True, meta: bool = False,
                 info: tuple[int, ...] = (Info.BLOCK_SIZE,)) -> None:
        await self.greet()
        if structured:
            [(rep, _)] = await self.option(Option.STRUCTURED_REPLY)
            assert rep == Rep.ACK
            self.structured = True
        if meta:
            replies = await self.option(Option.SET_META_CONTEXT,
                                        codec.encode_meta_context_request(name, ["base:allocation"]))
            assert replies[-1][0] == Rep.ACK, replies
        replies = await self.option(Option.GO, codec.encode_info_request(name, info))
        assert replies[-1][0] == Rep.ACK, replies
        for rep, payload in replies[:-1]:
            assert rep == Rep.INFO
            (kind,) = struct.unpack_from(">H", payload)
            if kind == Info.EXPORT:
                _, self.size, self.flags = struct.unpack(">HQH", payload)
            elif kind == Info.BLOCK_SIZE:
                self.block_sizes = struct.unpack(">HIII", payload)[1:]

    async def export_name(self, name: str) -> None:
        """The old way in: NBD_OPT_EXPORT_NAME, no block sizes, simple replies."""
        await self.greet()
        self.writer.write(codec.encode_option(Option.EXPORT_NAME, name.encode()))
        self.size, self.flags = struct.unpack(">QH", await self.reader.readexactly(10))

    # --- transmission -------------------------------------------------------------------------------

    def send(self, type_: int, offset: int = 0, length: int = 0, payload: bytes = b"", flags: int = 0) -> int:
        self._cookie += 1
        req = Request(flags, type_, self._cookie, offset, length)
        self.pending[req.cookie] = req
        self.writer.write(codec.encode_request(req) + payload)
        return req.cookie

    async def reply(self) -> Reply:
        """The next complete reply (any cookie)."""
        while True:
            (magic,) = struct.unpack(">I", await self.reader.readexactly(4))
            if magic == SIMPLE_REPLY_MAGIC:
                error, cookie = struct.unpack(">IQ", await self.reader.readexactly(12))
                req = self.pending.pop(cookie)
                r = Reply(cookie, error)
                if req.type == Cmd.READ and not error:
                    r.data = bytearray(await self.reader.readexactly(req.length))
                return r
            assert magic == STRUCTURED_REPLY_MAGIC, hex(magic)
            flags, type_, cookie, length = struct.unpack(">HHQI", await self.reader.readexactly(16))
            payload = await self.reader.readexactly(length)
            req = self.pending[cookie]
            r = self._partial.setdefault(cookie, Reply(cookie, structured=True,
                                                       data=bytearray(req.length if req.type == Cmd.READ else 0)))
            if type_ == ReplyType.OFFSET_DATA:
                (off,) = struct.unpack_from(">Q", payload)
                r.data[off - req.offset : off - req.offset + length - 8] = payload[8:]
            elif type_ == ReplyType.BLOCK_STATUS:
                r.extents += codec.parse_block_status_payload(payload)[1]
            elif type_ & 0x8000:
                r.error, r.message = codec.parse_error_payload(payload)
            if flags & REPLY_FLAG_DONE:
                del self._partial[cookie]
                del self.pending[cookie]
                return r

    async def call(self, type_: int, offset: int = 0, length: int = 0, payload: bytes = b"", flags: int = 0) -> Reply:
        cookie = self.send(type_, offset, length, payload, flags)
        r = await self.reply()
        assert r.cookie == cookie
        return r

    async def write(self, offset: int, data: bytes, flags: int = 0) -> Reply:
        return await self.call(Cmd.WRITE, offset, len(data), data, flags)

    async def read(self, offset: int, length: int) -> bytes:
        r = await self.call(Cmd.READ, offset, length)
        assert r.error == 0, r
        return bytes(r.data)

    async def disconnect(self) -> None:
        self.send(Cmd.DISC)
        self.pending.clear()
        await self.close()
