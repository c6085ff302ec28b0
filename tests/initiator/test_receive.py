"""The connection's receive path, cut at random points: whatever sizes the byte stream arrives in, every
PDU reaches the session once, in order, and every Data-In payload lands in its command's buffer, whether
it went through the receive buffer or was read straight into place (the rest of a large payload)."""

from __future__ import annotations

import asyncio
import os
import random
import socket

import pytest

from sanpath.initiator.connection import IscsiProtocol
from sanpath.iscsi import pdu as P
from sanpath.iscsi.constants import BHS_LENGTH, RESERVED_TAG
from sanpath.iscsi.framing import Frame, PduReader, frame_pdu

KiB = 1024
SIZES = [512, 4 * KiB, 16 * KiB - 4, 16 * KiB, 64 * KiB + 2, 128 * KiB, 256 * KiB]  # some unaligned: padding


class Sink:
    """Buffers by ITT, as the session's tasks have them; what arrives, in order."""

    def __init__(self) -> None:
        self.buffers: dict[int, bytearray] = {}
        self.got: list[P.Pdu] = []
        self.lost: list[str] = []

    def place_data_in(self, header: bytes, data_len: int) -> memoryview | None:
        pdu = P.decode(header, bytes(data_len))
        buf = self.buffers.get(pdu.itt) if isinstance(pdu, P.DataIn) else None
        return memoryview(buf)[pdu.offset : pdu.offset + data_len] if buf is not None else None

    def pdu_received(self, pdu: P.Pdu) -> None:
        self.got.append(pdu)

    def connection_lost(self, conn: IscsiProtocol, cause: str) -> None:
        self.lost.append(cause)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of a TCP connection on loopback: ours (for the protocol) and the target's (non-blocking)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        theirs = socket.create_connection(server.getsockname())
        ours, _ = server.accept()
    theirs.setblocking(False)
    return ours, theirs


async def connect(sink: Sink, *, digests: bool, max_data: int) -> tuple[IscsiProtocol, socket.socket]:
    ours, theirs = tcp_pair()
    _, conn = await asyncio.get_running_loop().connect_accepted_socket(lambda: IscsiProtocol(sink, "test"), ours)
    conn.negotiated(header_digest=digests, data_digest=digests, max_recv_data_segment_length=max_data)
    return conn, theirs


def stream(rng: random.Random, sink: Sink, count: int) -> tuple[list[P.Pdu], dict[int, bytes]]:
    """``count`` target PDUs: mostly Data-In of every size (some in two PDUs), some responses and pings."""
    pdus: list[P.Pdu] = []
    expect: dict[int, bytes] = {}
    statsn = 0
    for itt in range(1, count + 1):
        kind = rng.random()
        if kind < 0.1:
            pdus.append(P.NopIn(itt=RESERVED_TAG, ttt=RESERVED_TAG, statsn=statsn, expcmdsn=itt, maxcmdsn=itt + 32))
            continue
        if kind < 0.2:
            pdus.append(P.ScsiResponse(itt=itt, status=0, statsn=statsn, expcmdsn=itt, maxcmdsn=itt + 32))
            statsn += 1
            continue
        size = rng.choice(SIZES)
        payload = rng.randbytes(size)
        sink.buffers[itt] = bytearray(size)
        expect[itt] = payload
        cut = rng.choice([size, size // 2 // 4 * 4 or size])  # one PDU, or two (offsets multiple of 4)
        for datasn, (start, end) in enumerate([(0, cut), (cut, size)] if cut < size else [(0, size)]):
            last = end == size
            pdus.append(P.DataIn(data=payload[start:end], final=last, has_status=last, status=0, itt=itt,
                                 statsn=statsn, expcmdsn=itt, maxcmdsn=itt + 32, datasn=datasn, offset=start))
        statsn += 1
    return pdus, expect


@pytest.mark.parametrize("digests", [False, True], ids=["no-digests", "digests"])
@pytest.mark.parametrize("seed", range(4))
async def test_any_split_of_the_stream_delivers_every_pdu_and_payload(
        seed: int, digests: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    sink = Sink()
    pdus, expect = stream(rng, sink, 120)
    wire = b"".join(bytes(piece) for pdu in pdus
                    for piece in frame_pdu(pdu, header_digest=digests, data_digest=digests))

    in_place: list[int] = []  # ITT of each payload whose rest was read straight into its buffer
    finish = PduReader._finish_placed

    def counting_finish(self: PduReader) -> Frame | None:
        frame = finish(self)
        if frame is not None:
            in_place.append(P.DataIn.decode(frame.header, b"").itt)
        return frame

    monkeypatch.setattr(PduReader, "_finish_placed", counting_finish)
    loop = asyncio.get_running_loop()
    conn, theirs = await connect(sink, digests=digests, max_data=max(SIZES))
    try:
        pos = 0
        while pos < len(wire):  # pieces from 1 byte to 300 KiB, with loop turns in between
            n = rng.choice([1, 47, 48, 49, rng.randrange(1, 4 * KiB), rng.randrange(1, 300 * KiB)])
            await loop.sock_sendall(theirs, wire[pos : pos + n])
            pos += n
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
        async with asyncio.timeout(30):
            while len(sink.got) < len(pdus) and not sink.lost:
                await asyncio.sleep(0.01)
    finally:
        conn.abort("test over")
        theirs.close()
        await conn.closed

    assert sink.lost == ["test over"]
    assert [(type(p), getattr(p, "itt", None), getattr(p, "datasn", None)) for p in sink.got] == \
           [(type(p), getattr(p, "itt", None), getattr(p, "datasn", None)) for p in pdus]
    for itt, payload in expect.items():
        assert sink.buffers[itt] == payload, f"ITT {itt}: {len(payload)} bytes"
    # both ways ran: payloads copied from the receive buffer, and payloads read into place
    assert 0 < len(set(in_place)) < len(expect)


async def test_a_corrupt_payload_read_in_place_fails_the_data_digest() -> None:
    sink = Sink()
    sink.buffers[7] = bytearray(128 * KiB)
    pdu = P.DataIn(data=os.urandom(128 * KiB), final=True, has_status=True, itt=7, datasn=0, offset=0)
    wire = bytearray(b"".join(bytes(p) for p in frame_pdu(pdu, header_digest=True, data_digest=True)))
    wire[BHS_LENGTH + 4 + 1000] ^= 1  # one bit of the payload, after the header and its digest
    loop = asyncio.get_running_loop()
    conn, theirs = await connect(sink, digests=True, max_data=256 * KiB)
    try:
        async with asyncio.timeout(30):
            await loop.sock_sendall(theirs, wire[:100])  # the header first: the rest is then read in place
            while not conn.reader.receiving_in_place:
                await asyncio.sleep(0.001)
            await loop.sock_sendall(theirs, wire[100:])
            await conn.closed
    finally:
        theirs.close()
    assert sink.got == []
    assert len(sink.lost) == 1 and "data digest mismatch" in sink.lost[0]
