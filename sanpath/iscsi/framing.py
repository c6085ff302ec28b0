"""PDU framing on a byte stream: cutting whole PDUs out of received bytes, checking digests, and laying
PDUs out for sending (RFC 7143 §11.2: BHS, AHS, header digest, data segment, padding, data digest).

``PduReader`` is sans-IO: feed it bytes (``receive_data``) or let an asyncio ``BufferedProtocol`` read
straight into it (``get_buffer``/``buffer_updated``), then take ``Frame``s out with ``next_frame``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import LocalProtocolError, RemoteProtocolError
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
    """One received PDU, not yet decoded: BHS+AHS bytes and the unpadded data segment. ``placed``: the
    data segment went into the buffer the placement hook gave for it, and ``data`` is empty."""

    header: bytes
    data: bytes
    placed: bool = False


Placement = Callable[[bytes, int], "memoryview | None"]
"""``place(header, data_len)``: where the data segment of the PDU with this BHS+AHS must land (a buffer
of exactly ``data_len`` bytes), or None to deliver it in the ``Frame`` as usual."""


class PduReader:
    """Cuts PDUs out of a byte stream.

    ``max_data`` is the largest data segment accepted (our MaxRecvDataSegmentLength; login PDUs are
    held to 8192 by the caller setting it). A larger DataSegmentLength raises ``OversizedDataSegment``
    before any of the segment is buffered, so a hostile peer cannot make us hold more than
    ``max_data`` + 1 KiB per connection.

    ``place``, when given, is asked where each data segment goes (the initiator puts Data-In payloads in
    the buffers their commands read into). The payload is then copied once, from the receive buffer into
    place; and when most of a large payload has not arrived yet, ``get_buffer`` hands out the destination
    itself, so the rest of it is received there with no copy at all.
    """

    # Hot path: one receive buffer per connection, filled in place by BufferedProtocol; PDUs are sliced
    # out of it and the unread tail is moved to the front only when the buffer runs out of room.
    _ROOM = 65536  # the least free space offered to a receive
    DIRECT_MIN = 16384  # below this, waiting for the whole payload in the receive buffer is cheaper

    def __init__(self, *, max_data: int = 8192, header_digest: bool = False, data_digest: bool = False,
                 place: Placement | None = None, size: int = 1 << 18) -> None:
        self.max_data = max_data
        self.header_digest = header_digest
        self.data_digest = data_digest
        self.place = place
        self._buf = bytearray(max(size, self._ROOM))
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        # a payload being received straight into its destination: what is still to come, the whole
        # destination, the PDU's header, and the padding + data digest that follow it
        self._direct: memoryview | None = None
        self._placed: tuple[bytes, memoryview, int] | None = None

    # --- feeding ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        data = memoryview(data).cast("B")
        while data:
            view = self.get_buffer(len(data))
            n = min(len(view), len(data))
            view[:n] = data[:n]
            self.buffer_updated(n)
            data = data[n:]

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        if self._direct is not None:
            return self._direct
        want = max(sizehint, self._ROOM)
        if len(self._buf) - self._end < want:
            pending = self._end - self._start
            if pending + want > len(self._buf):  # a new, larger buffer (views of the old one may live on)
                grown = bytearray(pending + want)
                grown[:pending] = self._view[self._start : self._end]
                self._buf, self._view = grown, memoryview(grown)
            else:
                self._buf[:pending] = self._buf[self._start : self._end]
            self._start, self._end = 0, pending
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        direct = self._direct
        if direct is None:
            self._end += nbytes
        else:
            self._direct = direct[nbytes:] if nbytes < len(direct) else None

    @property
    def buffered(self) -> int:
        return self._end - self._start

    @property
    def receiving_in_place(self) -> bool:
        """Whether the next bytes go straight into a placed payload's destination."""
        return self._direct is not None

    # --- taking frames out -----------------------------------------------------------------------

    def next_frame(self) -> Frame | None:
        """The next whole PDU, or None if more bytes are needed. Raises on digest or length errors."""
        if self._placed is not None:
            return self._finish_placed()
        avail = self._end - self._start
        if avail < BHS_LENGTH:
            return None
        s = self._start
        buf, view = self._buf, self._view
        _, ahs_len, data_len = parse_bhs(view[s : s + BHS_LENGTH])
        hlen = BHS_LENGTH + ahs_len
        if data_len > self.max_data:  # refuse before waiting for (or buffering) any of it
            raise OversizedDataSegment(
                f"DataSegmentLength {data_len} exceeds our MaxRecvDataSegmentLength {self.max_data} "
                "(RFC 7143 13.12)", bytes(buf[s : s + min(hlen, avail)]))
        hd = DIGEST_LENGTH if self.header_digest else 0
        if avail < hlen + hd:
            return None
        if hd:
            expect = digest_bytes(view[s : s + hlen])
            if buf[s + hlen : s + hlen + hd] != expect:
                raise DigestError("header digest mismatch (RFC 7143 11.2.3); the connection cannot be trusted",
                                  bytes(buf[s : s + hlen]), data_digest=False)
        padded = data_len + (-data_len % 4)
        dd = DIGEST_LENGTH if (self.data_digest and data_len) else 0
        total = hlen + hd + padded + dd
        d0 = s + hlen + hd
        header: bytes | None = None
        if data_len and self.place is not None and (avail >= total or data_len >= self.DIRECT_MIN):
            header = bytes(buf[s : s + hlen])
            dest = self.place(header, data_len)
            if dest is not None:
                if len(dest) != data_len:
                    raise LocalProtocolError(f"placement gave {len(dest)} bytes for a {data_len}-byte segment")
                have = avail - hlen - hd
                if have < data_len and data_len >= self.DIRECT_MIN:
                    # the rest of the payload is received in place; the padding and digest come after it
                    dest[:have] = view[d0 : d0 + have]
                    self._start = self._end = 0
                    self._direct = dest[have:]
                    self._placed = (header, dest, padded - data_len + dd)
                    return None
                if avail < total:
                    return None
                dest[:] = view[d0 : d0 + data_len]
                if dd:
                    self._check_data_digest(header, d0, padded, total)
                self._consume(total)
                return Frame(header, b"", True)
        if avail < total:
            return None
        if header is None:  # not already taken for the placement hook
            header = bytes(buf[s : s + hlen])
        data = bytes(buf[d0 : d0 + data_len])
        if dd:
            self._check_data_digest(header, d0, padded, total)
        self._consume(total)
        return Frame(header, data)

    def _check_data_digest(self, header: bytes, d0: int, padded: int, total: int) -> None:
        """The data digest after the padded segment at ``d0``; on a mismatch the PDU (``total`` bytes from
        the start) is consumed, so that the stream stays in step, and ``DigestError`` raised."""
        end = d0 + padded
        if self._buf[end : end + DIGEST_LENGTH] != digest_bytes(self._view[d0:end]):
            self._consume(total)
            raise DigestError("data digest mismatch (RFC 7143 11.2.3)", header, data_digest=True)

    def _finish_placed(self) -> Frame | None:
        """The PDU whose payload went straight into place, once that and its trailer have arrived."""
        assert self._placed is not None
        header, dest, trailer = self._placed
        if self._direct is not None or self._end - self._start < trailer:
            return None
        self._placed = None
        s = self._start
        self._consume(trailer)
        if self.data_digest:
            pad = self._buf[s : s + trailer - DIGEST_LENGTH]
            if self._buf[s + trailer - DIGEST_LENGTH : s + trailer] != digest_bytes(dest, pad):
                raise DigestError("data digest mismatch (RFC 7143 11.2.3)", header, data_digest=True)
        return Frame(header, b"", True)

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
