"""PDU framing on a byte stream: cutting whole PDUs out of received bytes, checking digests, and laying
PDUs out for sending (RFC 7143 §11.2: BHS, AHS, header digest, data segment, padding, data digest).

``PduReader`` is sans-IO: feed it bytes (``receive_data``) or let an asyncio ``BufferedProtocol`` read
straight into it (``get_buffer``/``buffer_updated``), then take ``Frame``s out with ``next_frame``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RemoteProtocolError
from .constants import BHS_LENGTH, DIGEST_LENGTH
from .digest import digest_bytes
from .pdu import Pdu, parse_bhs


class DigestError(RemoteProtocolError):
    """A header or data digest did not match (RFC 7143 §7.8)."""

    def __init__(self, message: str, header: bytes, *, data_digest: bool) -> None:
        super().__init__(message)
        self.header = header
        self.data_digest = data_digest


class OversizedDataSegment(RemoteProtocolError):
    """DataSegmentLength exceeds what we declared in MaxRecvDataSegmentLength (RFC 7143 §13.12)."""

    def __init__(self, message: str, header: bytes) -> None:
        super().__init__(message)
        self.header = header


@dataclass(frozen=True, slots=True)
class Frame:
    """One received PDU, not yet decoded: BHS+AHS bytes and the unpadded data segment."""

    header: bytes
    data: bytes


class PduReader:
    """Cuts PDUs out of a byte stream.

    ``max_data`` is the largest data segment accepted (our MaxRecvDataSegmentLength; login PDUs are
    held to 8192 by the caller setting it). A larger DataSegmentLength raises ``OversizedDataSegment``
    before any of the segment is buffered, so a hostile peer cannot make us hold more than
    ``max_data`` + 1 KiB per connection.
    """

    # Hot path: one receive buffer per connection, filled in place by BufferedProtocol; PDUs are sliced
    # out of it and the unread tail is moved to the front only when the buffer runs out of room.
    _INITIAL = 1 << 18

    def __init__(self, *, max_data: int = 8192, header_digest: bool = False, data_digest: bool = False) -> None:
        self.max_data = max_data
        self.header_digest = header_digest
        self.data_digest = data_digest
        self._buf = bytearray(self._INITIAL)
        self._start = 0
        self._end = 0

    # --- feeding ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        view = self.get_buffer(n)
        view[:n] = data
        self.buffer_updated(n)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        want = max(sizehint, 65536)
        if len(self._buf) - self._end < want:
            pending = self._end - self._start
            if self._start:
                self._buf[:pending] = self._buf[self._start : self._end]
                self._start, self._end = 0, pending
            if len(self._buf) - self._end < want:
                self._buf.extend(bytes(want - (len(self._buf) - self._end)))
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes

    @property
    def buffered(self) -> int:
        return self._end - self._start

    # --- taking frames out -----------------------------------------------------------------------

    def next_frame(self) -> Frame | None:
        """The next whole PDU, or None if more bytes are needed. Raises on digest or length errors."""
        avail = self._end - self._start
        if avail < BHS_LENGTH:
            return None
        s = self._start
        buf = self._buf
        _, ahs_len, data_len = parse_bhs(memoryview(buf)[s : s + BHS_LENGTH])
        hlen = BHS_LENGTH + ahs_len
        if data_len > self.max_data:  # refuse before waiting for (or buffering) any of it
            raise OversizedDataSegment(
                f"DataSegmentLength {data_len} exceeds our MaxRecvDataSegmentLength {self.max_data} "
                "(RFC 7143 13.12)", bytes(buf[s : s + min(hlen, avail)]))
        hd = DIGEST_LENGTH if self.header_digest else 0
        if avail < hlen + hd:
            return None
        if hd:
            expect = digest_bytes(memoryview(buf)[s : s + hlen])
            if buf[s + hlen : s + hlen + hd] != expect:
                raise DigestError("header digest mismatch (RFC 7143 11.2.3); the connection cannot be trusted",
                                  bytes(buf[s : s + hlen]), data_digest=False)
        padded = data_len + (-data_len % 4)
        dd = DIGEST_LENGTH if (self.data_digest and data_len) else 0
        total = hlen + hd + padded + dd
        if avail < total:
            return None
        header = bytes(buf[s : s + hlen])
        d0 = s + hlen + hd
        data = bytes(buf[d0 : d0 + data_len])
        if dd:
            expect = digest_bytes(memoryview(buf)[d0 : d0 + padded])
            if buf[d0 + padded : d0 + padded + dd] != expect:
                self._consume(total)
                raise DigestError("data digest mismatch (RFC 7143 11.2.3)", header, data_digest=True)
        self._consume(total)
        return Frame(header, data)

    def _consume(self, n: int) -> None:
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0


def frame_pdu(pdu: Pdu, *, header_digest: bool = False, data_digest: bool = False) -> list[bytes | memoryview]:
    """The pieces to write for ``pdu`` (for ``transport.writelines``), with padding and digests."""
    header = pdu.encode_header()
    out: list[bytes | memoryview] = [header]
    if header_digest:
        out.append(digest_bytes(header))
    data = pdu.data
    if data:
        out.append(data if isinstance(data, bytes | memoryview) else bytes(data))
        pad = b"\0" * (-len(data) % 4)
        if pad:
            out.append(pad)
        if data_digest:
            out.append(digest_bytes(data, pad))
    return out
