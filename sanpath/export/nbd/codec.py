"""What NBD bytes look like: parsers and builders for the handshake, option haggling, requests and
(simple and structured) replies. Pure functions over bytes; no state, no I/O, no rules about *when*
something is allowed (that is ``protocol``), no stream cutting (that is ``framing``).

Layouts are from the NBD protocol document: "Newstyle negotiation", "Option haggling", "Request
message", "Simple reply message", "Structured reply chunk message". Every integer is big-endian.
A parser that reads bytes a client sent raises ``RemoteProtocolError`` (or its subclass
``OptionInvalid``) naming the rule broken; it never raises anything else on any input.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from sanpath.errors import RemoteProtocolError

from .constants import (
    EXPORT_NAME_ZEROES,
    IHAVEOPT,
    MAX_STRING,
    NBDMAGIC,
    OPTION_REPLY_MAGIC,
    REPLY_FLAG_DONE,
    REQUEST_MAGIC,
    SIMPLE_REPLY_MAGIC,
    STRUCTURED_REPLY_MAGIC,
    ClientFlag,
    HandshakeFlag,
    Info,
    Rep,
    ReplyType,
)

GREETING = struct.Struct(">QQH")  # NBDMAGIC, IHAVEOPT, handshake flags
CLIENT_FLAGS = struct.Struct(">I")
OPTION_HEADER = struct.Struct(">QII")  # IHAVEOPT, option, length
OPTION_REPLY = struct.Struct(">QIII")  # magic, option, reply type, length
REQUEST = struct.Struct(">IHHQQI")  # magic, command flags, type, cookie, offset, length
SIMPLE_REPLY = struct.Struct(">IIQ")  # magic, error, cookie
CHUNK = struct.Struct(">IHHQI")  # magic, flags, type, cookie, payload length
_EXPORT_NAME_REPLY = struct.Struct(">QH")  # size, transmission flags
_INFO_EXPORT = struct.Struct(">HQH")  # NBD_INFO_EXPORT, size, transmission flags
_INFO_BLOCK_SIZE = struct.Struct(">HIII")  # NBD_INFO_BLOCK_SIZE, minimum, preferred, maximum
_OFFSET = struct.Struct(">Q")
_ERROR = struct.Struct(">IH")  # error, message length
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_DESCRIPTOR = struct.Struct(">II")  # extent length, status flags

GREETING_LENGTH = GREETING.size  # 18
OPTION_HEADER_LENGTH = OPTION_HEADER.size  # 16
REQUEST_LENGTH = REQUEST.size  # 28
SIMPLE_REPLY_LENGTH = SIMPLE_REPLY.size  # 16
CHUNK_HEADER_LENGTH = CHUNK.size  # 20


class OptionInvalid(RemoteProtocolError):
    """An option's data does not have the layout its type requires; answered with NBD_REP_ERR_INVALID
    (the session goes on)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One transmission-phase request header ("Request message"). ``cookie`` is the protocol's
    64-bit handle, echoed in every reply chunk."""

    flags: int
    type: int
    cookie: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class InfoRequest:
    """The data of NBD_OPT_INFO / NBD_OPT_GO: an export name and the information types asked for."""

    name: str
    info: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MetaContextRequest:
    """The data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT."""

    name: str
    queries: tuple[str, ...]


def decode_string(raw: bytes | memoryview, what: str) -> str:
    if len(raw) > MAX_STRING:
        raise OptionInvalid(f"{what} is {len(raw)} bytes; strings MUST be no longer than {MAX_STRING} (Conventions)")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise OptionInvalid(f"{what} is not UTF-8 ({e.reason}); strings are UTF-8 (Conventions)") from None
    if "\0" in text:
        raise OptionInvalid(f"{what} contains NUL; strings MUST NOT (Conventions)")
    return text


# --- handshake ------------------------------------------------------------------------------------------

def server_greeting(flags: int = HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES) -> bytes:
    """The newstyle server greeting: NBDMAGIC, IHAVEOPT, 16 bits of handshake flags."""
    return GREETING.pack(NBDMAGIC, IHAVEOPT, flags)


def parse_server_greeting(data: bytes | bytearray | memoryview) -> int:
    nbdmagic, ihaveopt, flags = GREETING.unpack(data)
    if nbdmagic != NBDMAGIC or ihaveopt != IHAVEOPT:
        raise RemoteProtocolError("not a newstyle NBD server greeting (NBDMAGIC IHAVEOPT expected)")
    return int(flags)


def parse_client_flags(data: bytes | bytearray | memoryview, offered: int) -> ClientFlag:
    """The client's 32 flag bits. An unknown bit, or one answering a flag we did not offer, means the
    server MUST drop the connection ("Client flags")."""
    (flags,) = CLIENT_FLAGS.unpack(data)
    known = int(ClientFlag.C_FIXED_NEWSTYLE | (ClientFlag.C_NO_ZEROES if offered & HandshakeFlag.NO_ZEROES else 0))
    if flags & ~known:  # plain ints: ~ on an IntFlag keeps only the defined bits
        raise RemoteProtocolError(f"client flags {flags:#x} set bits we do not know or did not offer "
                                  f"(known {known:#x}); the server MUST drop the connection (Client flags)")
    return ClientFlag(flags)


# --- option haggling -----------------------------------------------------------------------------------

def encode_option(option: int, data: bytes = b"") -> bytes:
    return OPTION_HEADER.pack(IHAVEOPT, option, len(data)) + data


def parse_option_header(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(option, length of its data) from a 16-byte option header; the magic must be IHAVEOPT."""
    magic, option, length = OPTION_HEADER.unpack(data)
    if magic != IHAVEOPT:
        raise RemoteProtocolError(f"option magic {magic:#018x} is not IHAVEOPT (Option haggling)")
    return int(option), int(length)


def encode_info_request(name: str, info: Sequence[int] = ()) -> bytes:
    raw = name.encode()
    return _U32.pack(len(raw)) + raw + _U16.pack(len(info)) + b"".join(_U16.pack(i) for i in info)


def parse_info_request(data: bytes | bytearray | memoryview) -> InfoRequest:
    """NBD_OPT_INFO / NBD_OPT_GO data: 32-bit name length, name, 16-bit count, count 16-bit types."""
    view = memoryview(data)
    if len(view) < 6:
        raise OptionInvalid(f"NBD_OPT_GO/INFO data is {len(view)} bytes; at least 6 are required")
    (name_len,) = _U32.unpack_from(view, 0)
    if name_len > len(view) - 6:
        raise OptionInvalid(f"export name length {name_len} overruns the option data ({len(view)} bytes)")
    name = decode_string(view[4 : 4 + name_len], "export name")
    pos = 4 + name_len
    (count,) = _U16.unpack_from(view, pos)
    pos += 2
    if len(view) - pos != 2 * count:
        raise OptionInvalid(f"{count} information requests need {2 * count} bytes, {len(view) - pos} follow")
    info = tuple(_U16.unpack_from(view, pos + 2 * i)[0] for i in range(count))
    return InfoRequest(name, info)


def encode_meta_context_request(name: str, queries: Sequence[str] = ()) -> bytes:
    raw = name.encode()
    out = [_U32.pack(len(raw)), raw, _U32.pack(len(queries))]
    for q in queries:
        qraw = q.encode()
        out += [_U32.pack(len(qraw)), qraw]
    return b"".join(out)


def parse_meta_context_request(data: bytes | bytearray | memoryview) -> MetaContextRequest:
    """NBD_OPT_LIST/SET_META_CONTEXT data: 32-bit name length, name, 32-bit query count, then each
    query as 32-bit length and string."""
    view = memoryview(data)

    def take(pos: int, what: str) -> tuple[str, int]:
        if len(view) - pos < 4:
            raise OptionInvalid(f"meta context data ends inside the length of the {what}")
        (n,) = _U32.unpack_from(view, pos)
        if n > len(view) - pos - 4:
            raise OptionInvalid(f"{what} length {n} overruns the option data ({len(view)} bytes)")
        return decode_string(view[pos + 4 : pos + 4 + n], what), pos + 4 + n

    name, pos = take(0, "export name")
    if len(view) - pos < 4:
        raise OptionInvalid("meta context data ends before the number of queries")
    (count,) = _U32.unpack_from(view, pos)
    pos += 4
    if count > (len(view) - pos) // 4:
        raise OptionInvalid(f"{count} queries cannot fit in {len(view) - pos} bytes")
    queries = []
    for _ in range(count):
        q, pos = take(pos, "query")
        queries.append(q)
    if pos != len(view):
        raise OptionInvalid(f"{len(view) - pos} bytes follow the last query")
    return MetaContextRequest(name, tuple(queries))


def option_reply(option: int, rep: int, data: bytes = b"") -> bytes:
    return OPTION_REPLY.pack(OPTION_REPLY_MAGIC, option, rep, len(data)) + data


def option_error(option: int, rep: Rep, message: str) -> bytes:
    """An error reply (bit 31 set) with a message for the user of the client."""
    return option_reply(option, rep, message.encode()[:MAX_STRING])


def parse_option_reply(data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(option, reply type, length) from a 20-byte option reply header (the client side; tests)."""
    magic, option, rep, length = OPTION_REPLY.unpack(data)
    if magic != OPTION_REPLY_MAGIC:
        raise RemoteProtocolError(f"option reply magic {magic:#x} is wrong")
    return int(option), int(rep), int(length)


def rep_server(option: int, name: str, description: str = "") -> bytes:
    raw = name.encode()
    return option_reply(option, Rep.SERVER, _U32.pack(len(raw)) + raw + description.encode())


def rep_info_export(option: int, size: int, flags: int) -> bytes:
    return option_reply(option, Rep.INFO, _INFO_EXPORT.pack(Info.EXPORT, size, flags))


def rep_info_name(option: int, name: str) -> bytes:
    return option_reply(option, Rep.INFO, _U16.pack(Info.NAME) + name.encode())


def rep_info_description(option: int, description: str) -> bytes:
    return option_reply(option, Rep.INFO, _U16.pack(Info.DESCRIPTION) + description.encode())


def rep_info_block_size(option: int, minimum: int, preferred: int, maximum: int) -> bytes:
    return option_reply(option, Rep.INFO, _INFO_BLOCK_SIZE.pack(Info.BLOCK_SIZE, minimum, preferred, maximum))


def rep_meta_context(option: int, context_id: int, name: str) -> bytes:
    return option_reply(option, Rep.META_CONTEXT, _U32.pack(context_id) + name.encode())


def export_name_reply(size: int, flags: int, *, no_zeroes: bool) -> bytes:
    """The reply to NBD_OPT_EXPORT_NAME, which ends option haggling: size, transmission flags and
    (unless the client set NBD_FLAG_C_NO_ZEROES) 124 zero bytes."""
    return _EXPORT_NAME_REPLY.pack(size, flags) + (b"" if no_zeroes else bytes(EXPORT_NAME_ZEROES))


# --- transmission ---------------------------------------------------------------------------------------

def encode_request(request: Request) -> bytes:
    return REQUEST.pack(REQUEST_MAGIC, request.flags, request.type, request.cookie, request.offset, request.length)


def parse_request(data: bytes | bytearray | memoryview) -> Request:
    """A 28-byte request header. A wrong magic means the stream is out of step: the server cannot find
    the next request, so it MUST hard-disconnect."""
    magic, flags, type_, cookie, offset, length = REQUEST.unpack(data)
    if magic != REQUEST_MAGIC:
        raise RemoteProtocolError(f"request magic {magic:#010x} is not {REQUEST_MAGIC:#010x} (Request message); "
                                  "the stream is out of step and the connection is closed")
    return Request(flags, type_, cookie, offset, length)


def simple_reply(cookie: int, error: int = 0) -> bytes:
    """A simple reply header; a successful read's data follows it."""
    return SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, cookie)


def parse_simple_reply(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(error, cookie) from a simple reply header (the client side; tests)."""
    magic, error, cookie = SIMPLE_REPLY.unpack(data)
    if magic != SIMPLE_REPLY_MAGIC:
        raise RemoteProtocolError(f"simple reply magic {magic:#x} is wrong")
    return int(error), int(cookie)


def chunk_header(cookie: int, type_: int, length: int, *, done: bool = True) -> bytes:
    return CHUNK.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE if done else 0, type_, cookie, length)


def parse_chunk_header(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int]:
    """(flags, type, cookie, payload length) from a structured reply chunk header (client side; tests)."""
    magic, flags, type_, cookie, length = CHUNK.unpack(data)
    if magic != STRUCTURED_REPLY_MAGIC:
        raise RemoteProtocolError(f"structured reply magic {magic:#x} is wrong")
    return int(flags), int(type_), int(cookie), int(length)


def pack_offset_data_header(buffer: bytearray | memoryview, cookie: int, offset: int, data_length: int,
                            *, done: bool = True) -> None:
    """Write the 28 bytes in front of NBD_REPLY_TYPE_OFFSET_DATA data into ``buffer`` (so the reply
    header and the data read from the device go out in one buffer, with no copy)."""
    CHUNK.pack_into(buffer, 0, STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE if done else 0, ReplyType.OFFSET_DATA,
                    cookie, 8 + data_length)
    _OFFSET.pack_into(buffer, CHUNK.size, offset)


OFFSET_DATA_HEADER_LENGTH = CHUNK.size + _OFFSET.size  # 28


def none_chunk(cookie: int) -> bytes:
    """NBD_REPLY_TYPE_NONE with NBD_REPLY_FLAG_DONE: success, nothing more."""
    return chunk_header(cookie, ReplyType.NONE, 0)


def error_chunk(cookie: int, error: int, message: str = "", *, done: bool = True) -> bytes:
    """NBD_REPLY_TYPE_ERROR: a nonzero error value and a message for the user."""
    raw = message.encode()[:MAX_STRING]
    return chunk_header(cookie, ReplyType.ERROR, _ERROR.size + len(raw), done=done) + _ERROR.pack(error, len(raw)) + raw


def parse_error_payload(data: bytes | bytearray | memoryview) -> tuple[int, str]:
    """(error, message) from the payload of an error chunk (client side; tests)."""
    error, n = _ERROR.unpack_from(data)
    return int(error), bytes(data[_ERROR.size : _ERROR.size + n]).decode(errors="replace")


def block_status_chunk(cookie: int, context_id: int, extents: Sequence[tuple[int, int]], *,
                       done: bool = True) -> bytes:
    """NBD_REPLY_TYPE_BLOCK_STATUS for one metadata context: (length, status flags) descriptors."""
    payload = _U32.pack(context_id) + b"".join(_DESCRIPTOR.pack(n, flags) for n, flags in extents)
    return chunk_header(cookie, ReplyType.BLOCK_STATUS, len(payload), done=done) + payload


def parse_block_status_payload(data: bytes | bytearray | memoryview) -> tuple[int, list[tuple[int, int]]]:
    """(context id, [(length, flags)]) from a block status chunk payload (client side; tests)."""
    (context_id,) = _U32.unpack_from(data)
    return int(context_id), [_DESCRIPTOR.unpack_from(data, 4 + 8 * i) for i in range((len(data) - 4) // 8)]
