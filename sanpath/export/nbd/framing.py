"""Cutting NBD messages out of the byte stream a client sends: the client flags, options (header and
data) and requests (header and, for NBD_CMD_WRITE, the payload). Sans-IO: feed bytes with
``receive_data`` or let an asyncio ``BufferedProtocol`` read straight into ``get_buffer``, then pull
events with ``next_event``.

Events are pulled, not pushed, so the consumer decides when the stream changes phase: after a
successful NBD_OPT_GO it calls ``enter_transmission`` before asking for the next event, and bytes
already buffered behind the option are then read as requests.

Hot path: headers are sliced out of one receive buffer; a WRITE payload is read straight into its own
``bytearray`` (``get_buffer`` hands out the unfilled part of it), which then goes to the device with no
further copy. Oversized data is never buffered: an over-long option or WRITE payload is counted off
and dropped, then reported, so a hostile client costs at most one receive buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .codec import (
    CLIENT_FLAGS,
    OPTION_HEADER_LENGTH,
    REQUEST_LENGTH,
    Request,
    parse_option_header,
    parse_request,
)
from .constants import DEFAULT_MAX_PAYLOAD, Cmd


@dataclass(frozen=True, slots=True)
class ClientFlagsReceived:
    data: bytes  # the 4 raw bytes; ``codec.parse_client_flags`` judges them


@dataclass(frozen=True, slots=True)
class OptionReceived:
    option: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OptionTooLarge:
    """An option whose data exceeded the limit; the data was read and dropped."""

    option: int
    length: int


@dataclass(frozen=True, slots=True)
class RequestReceived:
    request: Request
    payload: bytearray | None = field(default=None, repr=False)  # the data of a WRITE


@dataclass(frozen=True, slots=True)
class WriteTooLarge:
    """A WRITE whose payload exceeded the maximum payload size; the payload was read and dropped."""

    request: Request


Event = ClientFlagsReceived | OptionReceived | OptionTooLarge | RequestReceived | WriteTooLarge


class Phase(Enum):
    CLIENT_FLAGS = "client flags"
    OPTIONS = "option haggling"
    TRANSMISSION = "transmission"


class Framer:
    """Cuts one client's stream into events. ``max_payload`` bounds a WRITE payload, ``max_option``
    the data of one option (names are at most 4096 bytes; 64 KiB leaves room for any real option)."""

    _SPACE = 1 << 16  # free room offered to each receive
    _BUFFER = 1 << 18

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD, max_option: int = 1 << 16) -> None:
        if max_option + OPTION_HEADER_LENGTH > self._BUFFER - self._SPACE:
            raise ValueError(f"max_option {max_option} does not fit the receive buffer")
        self.max_payload = max_payload
        self.max_option = max_option
        self.phase = Phase.CLIENT_FLAGS
        self._buf = bytearray(self._BUFFER)
        self._start = 0
        self._end = 0
        self._payload: bytearray | None = None  # a WRITE payload being filled
        self._filled = 0
        self._request: Request | None = None  # whose payload is being filled
        self._discard = 0  # bytes still to drop
        self._dropped: OptionTooLarge | WriteTooLarge | None = None  # reported once they are dropped
        self._into_payload = False

    def enter_transmission(self) -> None:
        self.phase = Phase.TRANSMISSION

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in an event."""
        return self._end - self._start + (self._filled if self._payload is not None else 0)

    # --- feeding ------------------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            buf = self.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        if self._payload is not None and self._filled < len(self._payload):
            self._into_payload = True
            return memoryview(self._payload)[self._filled :]
        self._into_payload = False
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._buf) - self._end < self._SPACE:
            pending = self._end - self._start
            self._buf[:pending] = self._buf[self._start : self._end]
            self._start, self._end = 0, pending
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._into_payload:
            self._filled += nbytes
        else:
            self._end += nbytes

    # --- taking events out --------------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next whole message, or None when more bytes are needed. Raises ``RemoteProtocolError``
        on a wrong magic: the stream is then out of step for good."""
        while True:
            if self._payload is not None:
                if self._filled < len(self._payload):
                    return None
                assert self._request is not None
                event = RequestReceived(self._request, self._payload)
                self._payload, self._request, self._filled = None, None, 0
                return event
            if self._dropped is not None:
                take = min(self._discard, self._end - self._start)
                self._start += take
                self._discard -= take
                if self._discard:
                    return None
                dropped, self._dropped = self._dropped, None
                return dropped
            avail = self._end - self._start
            s = self._start
            if self.phase is Phase.CLIENT_FLAGS:
                if avail < CLIENT_FLAGS.size:
                    return None
                self._start += CLIENT_FLAGS.size
                self.phase = Phase.OPTIONS
                return ClientFlagsReceived(bytes(self._buf[s : s + CLIENT_FLAGS.size]))
            if self.phase is Phase.OPTIONS:
                if avail < OPTION_HEADER_LENGTH:
                    return None
                option, length = parse_option_header(memoryview(self._buf)[s : s + OPTION_HEADER_LENGTH])
                if length > self.max_option:
                    self._start += OPTION_HEADER_LENGTH
                    self._discard, self._dropped = length, OptionTooLarge(option, length)
                    continue
                if avail < OPTION_HEADER_LENGTH + length:
                    return None
                self._start += OPTION_HEADER_LENGTH + length
                return OptionReceived(option, bytes(self._buf[s + OPTION_HEADER_LENGTH : self._start]))
            if avail < REQUEST_LENGTH:
                return None
            request = parse_request(memoryview(self._buf)[s : s + REQUEST_LENGTH])
            self._start += REQUEST_LENGTH
            if request.type != Cmd.WRITE:
                return RequestReceived(request)
            if request.length > self.max_payload:
                self._discard, self._dropped = request.length, WriteTooLarge(request)
                continue
            payload = bytearray(request.length)
            n = min(request.length, self._end - self._start)
            payload[:n] = memoryview(self._buf)[self._start : self._start + n]
            self._start += n
            self._payload, self._request, self._filled = payload, request, n
