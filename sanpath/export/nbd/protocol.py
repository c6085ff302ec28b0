"""What NBD allows when, on the server side: the handshake and option haggling as a state table, and
the rules every transmission request must pass before it reaches the device. Sans-IO: methods take
parsed input and return the bytes to send plus what to do next.

Stages (the table ``_NEXT``): FLAGS (greeting sent, waiting for the client flags) -> OPTIONS (option
haggling) -> TRANSMISSION (after NBD_OPT_GO or NBD_OPT_EXPORT_NAME) -> CLOSED (NBD_OPT_ABORT,
NBD_CMD_DISC, or a violation). A (stage, input) pair not in the table is our own bug.

TLS ("TLS support" in the protocol document): a server with TLS requires it (FORCEDTLS). Before
NBD_OPT_STARTTLS every option but NBD_OPT_ABORT is answered NBD_REP_ERR_TLS_REQD (NBD_OPT_EXPORT_NAME,
which cannot be refused with a reply, closes the connection); STARTTLS is acknowledged and the haggling
goes on over TLS once the I/O side has made the handshake. A server without TLS refuses STARTTLS with
NBD_REP_ERR_POLICY.

Replies follow the NBD protocol document: "Option types", "Option reply types", the INFO extension
(NBD_INFO_EXPORT is always sent, other information only when asked for), "Metadata querying"
(``base:allocation`` is offered when the device reports allocation), "Error values".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sanpath.errors import LocalProtocolError, RemoteProtocolError

from . import codec
from .codec import OptionInvalid, Request
from .constants import (
    BASE_ALLOCATION,
    DEFAULT_MAX_PAYLOAD,
    PREFERRED_BLOCK,
    ClientFlag,
    Cmd,
    CmdFlag,
    Errno,
    HandshakeFlag,
    Info,
    Option,
    Rep,
    TransmissionFlag,
)

META_CONTEXT_ID = 1  # our id for base:allocation (the server picks; any value is valid)


@dataclass(frozen=True, slots=True)
class ExportInfo:
    """What the server tells clients about its one export."""

    name: str
    size: int
    block_size: int  # the minimum block size: the device's logical block
    description: str = ""
    read_only: bool = False
    max_payload: int = DEFAULT_MAX_PAYLOAD
    allocation: bool = False  # the device reports allocation: offer base:allocation

    @property
    def preferred_block(self) -> int:
        return max(self.block_size, PREFERRED_BLOCK)

    def matches(self, name: str) -> bool:
        """The export's own name, or the empty name ("the default export")."""
        return name in ("", self.name)


class Stage(Enum):
    FLAGS = "waiting for client flags"
    OPTIONS = "option haggling"
    TRANSMISSION = "transmission"
    CLOSED = "closed"


class Next(Enum):
    """What the server does after sending an option's replies."""

    CONTINUE = "read the next option"
    STARTTLS = "make the TLS handshake, then read the next option"
    TRANSMIT = "enter the transmission phase"
    CLOSE = "close the connection"


_NEXT: dict[tuple[Stage, Next], Stage] = {
    (Stage.OPTIONS, Next.CONTINUE): Stage.OPTIONS,
    (Stage.OPTIONS, Next.STARTTLS): Stage.OPTIONS,
    (Stage.OPTIONS, Next.TRANSMIT): Stage.TRANSMISSION,
    (Stage.OPTIONS, Next.CLOSE): Stage.CLOSED,
    (Stage.TRANSMISSION, Next.CLOSE): Stage.CLOSED,
}


@dataclass(frozen=True, slots=True)
class OptionResult:
    replies: list[bytes]
    next: Next


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before it reached the device: the error value and a message for the user."""

    error: Errno
    message: str


class ServerHandshake:
    """One client's handshake and negotiated state, server side."""

    OFFERED = HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES

    def __init__(self, export: ExportInfo, *, tls: bool = False) -> None:
        self.export = export
        self.tls = tls  # the server has TLS, and so requires it
        self.tls_started = False
        self.stage = Stage.FLAGS
        self.client_flags = ClientFlag(0)
        self.structured = False
        self.meta_context: int | None = None  # the selected base:allocation id, if any

    def _advance(self, step: Next) -> None:
        try:
            self.stage = _NEXT[(self.stage, step)]
        except KeyError:
            raise LocalProtocolError(f"NBD server cannot {step.value} while in {self.stage.value}") from None

    def greeting(self) -> bytes:
        return codec.server_greeting(self.OFFERED)

    def receive_client_flags(self, raw: bytes) -> None:
        """Raises ``RemoteProtocolError`` (close the connection) on a flag we do not know."""
        if self.stage is not Stage.FLAGS:
            raise LocalProtocolError(f"client flags arrive only once, not in {self.stage.value}")
        self.client_flags = codec.parse_client_flags(raw, self.OFFERED)
        self.stage = Stage.OPTIONS

    @property
    def transmission_flags(self) -> int:
        f = TransmissionFlag.HAS_FLAGS | TransmissionFlag.SEND_FLUSH | TransmissionFlag.SEND_FUA
        # no cache of our own: FLUSH and FUA on one connection cover writes from every other one
        f |= TransmissionFlag.CAN_MULTI_CONN
        if self.export.read_only:
            f |= TransmissionFlag.READ_ONLY
        else:
            f |= TransmissionFlag.SEND_TRIM | TransmissionFlag.SEND_WRITE_ZEROES
        if self.structured:
            f |= TransmissionFlag.SEND_DF  # a read is always answered with one data chunk
        return int(f)

    # --- option haggling ------------------------------------------------------------------------------

    def receive_option(self, option: int, data: bytes) -> OptionResult:
        if self.stage is not Stage.OPTIONS:
            raise LocalProtocolError(f"an option arrived in {self.stage.value}")
        handler = _HANDLERS.get(option)
        if self.tls and not self.tls_started and option not in (Option.STARTTLS, Option.ABORT):
            if option == Option.EXPORT_NAME:
                result = OptionResult([], Next.CLOSE)
            else:
                result = self._error(option, Rep.ERR_TLS_REQD, "this export requires TLS: send NBD_OPT_STARTTLS "
                                     "first (qemu: tls-creds; nbdinfo: nbds://)")
        elif handler is None:
            name = Option(option).name if option in Option._value2member_map_ else f"{option}"
            result = self._error(option, Rep.ERR_UNSUP, f"option NBD_OPT_{name} is not supported by this server")
        else:
            try:
                result = handler(self, option, data)
            except OptionInvalid as e:
                if option == Option.EXPORT_NAME:  # it cannot fail with a reply
                    result = OptionResult([], Next.CLOSE)
                else:
                    result = self._error(option, Rep.ERR_INVALID, str(e))
        self._advance(result.next)
        return result

    def option_too_large(self, option: int, length: int) -> OptionResult:
        """The option's data (already dropped) was longer than any option we accept."""
        if self.stage is not Stage.OPTIONS:
            raise LocalProtocolError(f"an option arrived in {self.stage.value}")
        if option == Option.EXPORT_NAME:
            result = OptionResult([], Next.CLOSE)
        else:
            result = self._error(option, Rep.ERR_TOO_BIG, f"option data of {length} bytes is too large")
        self._advance(result.next)
        return result

    def _error(self, option: int, rep: Rep, message: str) -> OptionResult:
        return OptionResult([codec.option_error(option, rep, message)], Next.CONTINUE)

    def _unknown_export(self, option: int, name: str) -> OptionResult:
        return self._error(option, Rep.ERR_UNKNOWN,
                           f"no export named {name!r}; this server exports {self.export.name!r}")

    def _export_name(self, option: int, data: bytes) -> OptionResult:
        name = codec.decode_string(data, "export name")
        if not self.export.matches(name):
            return OptionResult([], Next.CLOSE)  # "the server MUST terminate the session"
        no_zeroes = bool(self.client_flags & ClientFlag.C_NO_ZEROES)
        reply = codec.export_name_reply(self.export.size, self.transmission_flags, no_zeroes=no_zeroes)
        return OptionResult([reply], Next.TRANSMIT)

    def _abort(self, option: int, data: bytes) -> OptionResult:
        return OptionResult([codec.option_reply(option, Rep.ACK)], Next.CLOSE)

    def _list(self, option: int, data: bytes) -> OptionResult:
        if data:
            raise OptionInvalid(f"NBD_OPT_LIST carries no data, {len(data)} bytes were sent")
        e = self.export
        return OptionResult([codec.rep_server(option, e.name, e.description), codec.option_reply(option, Rep.ACK)],
                            Next.CONTINUE)

    def _starttls(self, option: int, data: bytes) -> OptionResult:
        if not self.tls:
            return self._error(option, Rep.ERR_POLICY, "TLS is not offered on this export (a unix socket or "
                               "loopback); connect without it")
        if data:
            raise OptionInvalid(f"NBD_OPT_STARTTLS carries no data, {len(data)} bytes were sent")
        if self.tls_started:
            raise OptionInvalid("TLS is on already")
        self.tls_started = True
        return OptionResult([codec.option_reply(option, Rep.ACK)], Next.STARTTLS)

    def _info(self, option: int, data: bytes) -> OptionResult:
        req = codec.parse_info_request(data)
        if not self.export.matches(req.name):
            return self._unknown_export(option, req.name)
        e = self.export
        replies = [codec.rep_info_export(option, e.size, self.transmission_flags)]
        for info in dict.fromkeys(req.info):  # each asked-for type once, in the client's order
            if info == Info.NAME:
                replies.append(codec.rep_info_name(option, e.name))
            elif info == Info.DESCRIPTION and e.description:
                replies.append(codec.rep_info_description(option, e.description))
            elif info == Info.BLOCK_SIZE:
                replies.append(codec.rep_info_block_size(option, e.block_size, e.preferred_block, e.max_payload))
        replies.append(codec.option_reply(option, Rep.ACK))
        return OptionResult(replies, Next.TRANSMIT if option == Option.GO else Next.CONTINUE)

    def _structured_reply(self, option: int, data: bytes) -> OptionResult:
        if data:
            raise OptionInvalid(f"NBD_OPT_STRUCTURED_REPLY carries no data, {len(data)} bytes were sent")
        self.structured = True
        return OptionResult([codec.option_reply(option, Rep.ACK)], Next.CONTINUE)

    def _meta_context(self, option: int, data: bytes) -> OptionResult:
        if not self.structured:
            raise OptionInvalid("metadata contexts need structured replies: send NBD_OPT_STRUCTURED_REPLY first")
        req = codec.parse_meta_context_request(data)
        if not self.export.matches(req.name):
            return self._unknown_export(option, req.name)
        available = [BASE_ALLOCATION] if self.export.allocation else []
        if option == Option.LIST_META_CONTEXT:
            chosen = [c for c in available
                      if not req.queries or any(q in (c, c.split(":")[0] + ":") for q in req.queries)]
            ids = [0] * len(chosen)  # "the context ID in these replies is reserved and SHOULD be zero"
        else:
            chosen = [c for c in available if c in req.queries]
            ids = [META_CONTEXT_ID] * len(chosen)
            self.meta_context = META_CONTEXT_ID if chosen else None
        replies = [codec.rep_meta_context(option, i, c) for i, c in zip(ids, chosen, strict=True)]
        return OptionResult([*replies, codec.option_reply(option, Rep.ACK)], Next.CONTINUE)

    # --- transmission ---------------------------------------------------------------------------------

    def disconnect(self) -> None:
        """NBD_CMD_DISC, or the connection ending for any reason."""
        self.stage = Stage.CLOSED

    def oversize_error(self) -> Errno:
        """EOVERFLOW tells a client that negotiated structured replies its request was too large;
        older clients know only EINVAL."""
        return Errno.EOVERFLOW if self.structured else Errno.EINVAL

    def check_request(self, req: Request) -> Refusal | None:
        """The rules a request must pass before it reaches the device ("Request types", "Error
        values"); None when it may go ahead."""
        e = self.export
        allowed = _FLAGS.get(req.type)
        if allowed is None:
            return Refusal(Errno.EINVAL, f"unknown or unsupported command type {req.type}")
        if req.type == Cmd.READ and self.structured:
            allowed |= CmdFlag.DF
        if req.flags & ~int(allowed):
            return Refusal(Errno.EINVAL, f"command flags {req.flags:#x} are not valid for {Cmd(req.type).name}")
        kind = Cmd(req.type)
        if kind in _MUTATING and e.read_only:
            return Refusal(Errno.EPERM, f"{kind.name} on read-only export {e.name!r}")
        if kind == Cmd.FLUSH:
            return None  # offset and length are reserved; nothing to check
        if kind == Cmd.BLOCK_STATUS:
            if self.meta_context is None:
                return Refusal(Errno.EINVAL, "BLOCK_STATUS without a metadata context (NBD_OPT_SET_META_CONTEXT)")
            if req.length == 0:
                return Refusal(Errno.EINVAL, "BLOCK_STATUS of zero length")
        if kind == Cmd.READ and req.length > e.max_payload:
            return Refusal(self.oversize_error(), f"READ of {req.length} bytes exceeds the maximum {e.max_payload}")
        if req.offset + req.length > e.size:
            err = Errno.ENOSPC if kind in _MUTATING else Errno.EINVAL
            return Refusal(err, f"{kind.name} {req.offset}+{req.length} is past the end of export {e.name!r} "
                                f"({e.size} bytes)")
        return None


_HANDLERS: dict[int, Callable[[ServerHandshake, int, bytes], OptionResult]] = {
    Option.EXPORT_NAME: ServerHandshake._export_name,
    Option.ABORT: ServerHandshake._abort,
    Option.LIST: ServerHandshake._list,
    Option.STARTTLS: ServerHandshake._starttls,
    Option.INFO: ServerHandshake._info,
    Option.GO: ServerHandshake._info,
    Option.STRUCTURED_REPLY: ServerHandshake._structured_reply,
    Option.LIST_META_CONTEXT: ServerHandshake._meta_context,
    Option.SET_META_CONTEXT: ServerHandshake._meta_context,
}

# Command flags each command may carry ("Command flags"); FUA is accepted on every command, as the
# protocol requires once NBD_FLAG_SEND_FUA is advertised.
_FLAGS: dict[int, CmdFlag] = {
    Cmd.READ: CmdFlag.FUA,
    Cmd.WRITE: CmdFlag.FUA,
    Cmd.FLUSH: CmdFlag.FUA,
    Cmd.TRIM: CmdFlag.FUA,
    Cmd.WRITE_ZEROES: CmdFlag.FUA | CmdFlag.NO_HOLE,
    Cmd.BLOCK_STATUS: CmdFlag.FUA | CmdFlag.REQ_ONE,
}
_MUTATING = frozenset({Cmd.WRITE, Cmd.TRIM, Cmd.WRITE_ZEROES})

__all__ = ["ExportInfo", "Next", "OptionResult", "Refusal", "RemoteProtocolError", "ServerHandshake", "Stage"]
