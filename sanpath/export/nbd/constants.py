"""NBD protocol numbers: magics, handshake and transmission flags, options, option replies, info
types, commands, structured reply types and error values.

Names follow the NBD protocol document (NetworkBlockDevice/nbd, doc/proto.md); section names in
comments refer to it ("Newstyle negotiation", "Option types", "Request types", "Error values").
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

# --- magics ("Handshake", "Transmission") -------------------------------------------------------------
NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC": the first 8 bytes the server sends
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT": newstyle server magic, and the magic of every option
OPTION_REPLY_MAGIC = 0x0003E889045565A9  # every option reply starts with it
REQUEST_MAGIC = 0x25609513  # compact (non-extended) request header
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

EXPORT_NAME_ZEROES = 124  # NBD_OPT_EXPORT_NAME reply padding, omitted after NBD_FLAG_C_NO_ZEROES
MAX_STRING = 4096  # "Conventions": names and messages MUST be no longer than 4096 bytes
DEFAULT_MAX_PAYLOAD = 1 << 25  # 32 MiB: what every client is told to stay under ("Block size constraints")
PREFERRED_BLOCK = 1 << 12  # 4 KiB, the protocol's default preferred block size

BASE_ALLOCATION = "base:allocation"  # the one metadata context the standard defines


class HandshakeFlag(IntFlag):
    """16 bits the server sends after IHAVEOPT."""

    FIXED_NEWSTYLE = 1 << 0
    NO_ZEROES = 1 << 1


class ClientFlag(IntFlag):
    """32 bits the client answers with; an unknown bit makes the server drop the connection."""

    C_FIXED_NEWSTYLE = 1 << 0
    C_NO_ZEROES = 1 << 1


class TransmissionFlag(IntFlag):
    """16 bits describing the export, sent in NBD_INFO_EXPORT and the NBD_OPT_EXPORT_NAME reply."""

    HAS_FLAGS = 1 << 0
    READ_ONLY = 1 << 1
    SEND_FLUSH = 1 << 2
    SEND_FUA = 1 << 3
    ROTATIONAL = 1 << 4
    SEND_TRIM = 1 << 5
    SEND_WRITE_ZEROES = 1 << 6
    SEND_DF = 1 << 7
    CAN_MULTI_CONN = 1 << 8
    SEND_RESIZE = 1 << 9
    SEND_CACHE = 1 << 10
    SEND_FAST_ZERO = 1 << 11


class Option(IntEnum):
    """"Option types" of the option haggling phase."""

    EXPORT_NAME = 1
    ABORT = 2
    LIST = 3
    PEEK_EXPORT = 4
    STARTTLS = 5
    INFO = 6
    GO = 7
    STRUCTURED_REPLY = 8
    LIST_META_CONTEXT = 9
    SET_META_CONTEXT = 10
    EXTENDED_HEADERS = 11


_ERR = 1 << 31


class Rep(IntEnum):
    """"Option reply types"; errors have bit 31 set."""

    ACK = 1
    SERVER = 2
    INFO = 3
    META_CONTEXT = 4
    ERR_UNSUP = _ERR + 1
    ERR_POLICY = _ERR + 2
    ERR_INVALID = _ERR + 3
    ERR_PLATFORM = _ERR + 4
    ERR_TLS_REQD = _ERR + 5
    ERR_UNKNOWN = _ERR + 6
    ERR_SHUTDOWN = _ERR + 7
    ERR_BLOCK_SIZE_REQD = _ERR + 8
    ERR_TOO_BIG = _ERR + 9
    ERR_EXT_HEADER_REQD = _ERR + 10


class Info(IntEnum):
    """Information types of NBD_OPT_INFO / NBD_OPT_GO (NBD_REP_INFO payloads)."""

    EXPORT = 0
    NAME = 1
    DESCRIPTION = 2
    BLOCK_SIZE = 3


class Cmd(IntEnum):
    """"Request types" of the transmission phase."""

    READ = 0
    WRITE = 1
    DISC = 2
    FLUSH = 3
    TRIM = 4
    CACHE = 5
    WRITE_ZEROES = 6
    BLOCK_STATUS = 7
    RESIZE = 8


class CmdFlag(IntFlag):
    """"Command flags" of a request."""

    FUA = 1 << 0
    NO_HOLE = 1 << 1
    DF = 1 << 2
    REQ_ONE = 1 << 3
    FAST_ZERO = 1 << 4
    PAYLOAD_LEN = 1 << 5


REPLY_FLAG_DONE = 1 << 0  # "Structured reply flags": the last chunk of a reply


class ReplyType(IntEnum):
    """"Structured reply types"; error chunks have bit 15 set."""

    NONE = 0
    OFFSET_DATA = 1
    OFFSET_HOLE = 2
    BLOCK_STATUS = 5
    ERROR = (1 << 15) + 1
    ERROR_OFFSET = (1 << 15) + 2


class Errno(IntEnum):
    """"Error values": the only errors a reply may carry (Linux errno numbers, fixed by the protocol)."""

    EPERM = 1
    EIO = 5
    ENOMEM = 12
    EINVAL = 22
    ENOSPC = 28
    EOVERFLOW = 75
    ENOTSUP = 95
    ESHUTDOWN = 108


class State(IntFlag):
    """base:allocation status flags of a block status descriptor."""

    HOLE = 1 << 0
    ZERO = 1 << 1
