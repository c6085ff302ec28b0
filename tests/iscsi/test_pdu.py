"""PDU codec: every PDU round-trips, whole, byte by byte through the framing, and with trailing data."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanpath.errors import LocalProtocolError, RemoteProtocolError
from sanpath.iscsi import pdu as P
from sanpath.iscsi.constants import BHS_LENGTH, Opcode
from sanpath.iscsi.framing import DigestError, Frame, OversizedDataSegment, PduReader, frame_pdu

SAMPLES: list[P.Pdu] = [
    P.NopOut(immediate=True, data=b"ping", lun=P.lun_to_field(1), itt=7, ttt=0xFFFFFFFF, cmdsn=5, expstatsn=9),
    P.ScsiCommand(read=True, attr=2, lun=P.lun_to_field(300), itt=0x11, edtl=4096, cmdsn=0xFFFFFFFF,
                  expstatsn=3, cdb=bytes(range(16))),
    P.ScsiCommand(write=True, itt=2, edtl=512, cdb=bytes(range(32)), data=b"x" * 512, bidi_read_length=77),
    P.TaskMgmtRequest(immediate=True, function=1, lun=P.lun_to_field(2), itt=3, rtt=4, cmdsn=5, expstatsn=6,
                      refcmdsn=7, expdatasn=8),
    P.LoginRequest(data=b"InitiatorName=iqn.x\0", transit=True, csg=1, nsg=3, version_max=0, version_min=0,
                   isid=b"\x80\x01\x02\x03\x04\x05", tsih=0, itt=9, cid=1, cmdsn=10, expstatsn=11),
    P.TextRequest(data=b"SendTargets=All\0", final=True, cont=False, itt=12, cmdsn=13, expstatsn=14),
    P.DataOut(data=b"d" * 100, final=True, lun=P.lun_to_field(0), itt=15, ttt=16, expstatsn=17, datasn=18,
              offset=8192),
    P.LogoutRequest(immediate=True, reason=0, itt=19, cid=1, cmdsn=20, expstatsn=21),
    P.Snack(type=1, itt=22, ttt=23, expstatsn=24, begrun=25, runlength=26),
    P.NopIn(data=b"pong", itt=27, ttt=28, statsn=29, expcmdsn=30, maxcmdsn=31),
    P.ScsiResponse(data=b"\x00\x12" + bytes(18), status=2, underflow=True, itt=32, statsn=33, expcmdsn=34,
                   maxcmdsn=35, expdatasn=36, residual=37),
    P.TaskMgmtResponse(response=1, itt=38, statsn=39, expcmdsn=40, maxcmdsn=41),
    P.LoginResponse(data=b"TargetPortalGroupTag=1\0", transit=True, csg=1, nsg=3, isid=b"\x40" * 6, tsih=42,
                    itt=43, statsn=44, expcmdsn=45, maxcmdsn=46, status_class=2, status_detail=1),
    P.TextResponse(data=b"TargetName=iqn.y\0", cont=True, final=False, itt=47, ttt=48, statsn=49),
    P.DataIn(data=b"r" * 4096, final=True, has_status=True, status=0, overflow=True, residual=50, itt=51,
             statsn=52, expcmdsn=53, maxcmdsn=54, datasn=55, offset=56),
    P.LogoutResponse(response=0, itt=57, statsn=58, expcmdsn=59, maxcmdsn=60, time2wait=2, time2retain=20),
    P.R2T(itt=61, ttt=62, statsn=63, expcmdsn=64, maxcmdsn=65, r2tsn=66, offset=67, length=68),
    P.AsyncMessage(data=b"\x00\x00", event=1, vcode=0, parameter1=1, parameter2=2, parameter3=3, statsn=69),
    P.Reject(data=bytes(48), reason=4, statsn=70, expcmdsn=71, maxcmdsn=72),
]


def test_every_opcode_has_a_sample() -> None:
    assert {type(p).OPCODE for p in SAMPLES} == set(Opcode)


@pytest.mark.parametrize("pdu", SAMPLES, ids=lambda p: type(p).__name__)
def test_round_trip_whole(pdu: P.Pdu) -> None:
    header = pdu.encode_header()
    assert len(header) % 4 == 0 and len(header) >= BHS_LENGTH
    cls, ahs_len, data_len = P.parse_bhs(header)
    assert cls is type(pdu) and ahs_len == len(header) - BHS_LENGTH and data_len == len(pdu.data)
    assert P.decode(header, pdu.data) == pdu
    wire = P.encode(pdu)
    assert len(wire) % 4 == 0


@pytest.mark.parametrize("digests", [(False, False), (True, True), (True, False), (False, True)])
def test_byte_by_byte_with_trailing_data(digests: tuple[bool, bool]) -> None:
    hd, dd = digests
    wire = b"".join(bytes(x) for p in SAMPLES for x in frame_pdu(p, header_digest=hd, data_digest=dd))
    trailing = frame_pdu(SAMPLES[0], header_digest=hd, data_digest=dd)
    partial = b"".join(bytes(x) for x in trailing)[:30]
    reader = PduReader(max_data=1 << 16, header_digest=hd, data_digest=dd)
    got: list[P.Pdu] = []
    for i in range(len(wire)):
        reader.receive_data(wire[i : i + 1])
        while (frame := reader.next_frame()) is not None:
            got.append(P.decode(frame.header, frame.data))
    reader.receive_data(partial)
    assert reader.next_frame() is None
    assert reader.buffered == 30
    assert got == SAMPLES


def test_whole_stream_in_one_piece() -> None:
    reader = PduReader(max_data=1 << 16)
    reader.receive_data(b"".join(P.encode(p) for p in SAMPLES))
    frames: list[Frame] = []
    while (f := reader.next_frame()) is not None:
        frames.append(f)
    assert [P.decode(f.header, f.data) for f in frames] == SAMPLES
    assert reader.buffered == 0


def test_header_digest_error_detected() -> None:
    wire = bytearray(b"".join(bytes(x) for x in frame_pdu(SAMPLES[0], header_digest=True)))
    wire[20] ^= 1
    reader = PduReader(header_digest=True)
    reader.receive_data(wire)
    with pytest.raises(DigestError) as exc:
        reader.next_frame()
    assert not exc.value.data_digest


def test_data_digest_error_consumes_pdu() -> None:
    wire = bytearray(b"".join(bytes(x) for x in frame_pdu(SAMPLES[0], data_digest=True)))
    wire[49] ^= 0xFF
    reader = PduReader(data_digest=True)
    reader.receive_data(bytes(wire) + P.encode(SAMPLES[1]))
    with pytest.raises(DigestError) as exc:
        reader.next_frame()
    assert exc.value.data_digest
    # a PDU without a data segment carries no data digest; the next PDU is intact
    frame = reader.next_frame()
    assert frame is not None and P.decode(frame.header, frame.data) == SAMPLES[1]


def test_oversized_data_segment_refused_before_buffering() -> None:
    header = P.DataOut(data=b"x" * 9000).encode_header()
    reader = PduReader(max_data=8192)
    reader.receive_data(header)
    with pytest.raises(OversizedDataSegment):
        reader.next_frame()


def test_unknown_opcode() -> None:
    header = bytearray(SAMPLES[0].encode_header())
    header[0] = 0x1C
    cls, _, _ = P.parse_bhs(header)
    assert cls is None
    with pytest.raises(RemoteProtocolError, match="unknown opcode"):
        P.decode(bytes(header), b"ping")


def test_length_mismatch() -> None:
    with pytest.raises(RemoteProtocolError, match="DataSegmentLength"):
        P.decode(SAMPLES[0].encode_header(), b"pin")


def test_truncated_ahs() -> None:
    header = bytearray(P.ScsiCommand(cdb=bytes(32)).encode_header())
    header[48:50] = (200).to_bytes(2, "big")
    with pytest.raises(RemoteProtocolError, match="AHS"):
        P.decode(bytes(header), b"")


@pytest.mark.parametrize("lun", [0, 1, 255, 256, 16383])
def test_lun_addressing(lun: int) -> None:
    assert P.field_to_lun(P.lun_to_field(lun)) == lun


def test_lun_out_of_range() -> None:
    with pytest.raises(LocalProtocolError):
        P.lun_to_field(16384)
    assert P.field_to_lun(0x8000 << 48) == -1


@given(st.sampled_from(SAMPLES), st.binary(max_size=300), st.integers(0, 0xFFFFFFFF))
def test_round_trip_any_data_and_tag(pdu: P.Pdu, data: bytes, tag: int) -> None:
    fields = {f.name for f in dataclasses.fields(pdu)}
    changes: dict[str, object] = {"data": data}
    for name in ("itt", "statsn", "cmdsn"):
        if name in fields:
            changes[name] = tag
    p = dataclasses.replace(pdu, **changes)  # type: ignore[arg-type]
    reader = PduReader(max_data=1024, header_digest=True, data_digest=True)
    reader.receive_data(b"".join(bytes(x) for x in frame_pdu(p, header_digest=True, data_digest=True)))
    frame = reader.next_frame()
    assert frame is not None and P.decode(frame.header, frame.data) == p


@given(st.binary(min_size=48, max_size=400))
def test_decoding_garbage_never_crashes(blob: bytes) -> None:
    reader = PduReader(max_data=256)
    reader.receive_data(blob)
    try:
        while (frame := reader.next_frame()) is not None:
            P.decode(frame.header, frame.data)
    except RemoteProtocolError:
        pass


def _placing_reader(buffers: dict[int, bytearray], **kw: bool) -> PduReader:
    """A reader that places Data-In payloads in ``buffers[itt]`` at the PDU's offset, as the initiator does."""

    def place(header: bytes, data_len: int) -> memoryview | None:
        pdu = P.decode(header, bytes(data_len)) if header[0] & 0x3F == Opcode.DATA_IN else None
        if not isinstance(pdu, P.DataIn) or pdu.itt not in buffers:
            return None
        return memoryview(buffers[pdu.itt])[pdu.offset : pdu.offset + data_len]

    return PduReader(max_data=1 << 17, place=place, **kw)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 1 << 17), min_size=1, max_size=6), st.integers(37, 70000), st.booleans())
def test_placed_payloads_land_in_place_whatever_the_cut(sizes: list[int], step: int, digests: bool) -> None:
    payloads = {itt: bytes([itt]) * n for itt, n in enumerate(sizes, 1)}
    pdus: list[P.Pdu] = []
    for itt, payload in payloads.items():
        pdus.append(P.DataIn(data=payload, final=True, has_status=True, itt=itt, datasn=0, offset=0))
        pdus.append(P.NopIn(data=b"between", itt=100 + itt))  # not placed: its data comes in the frame
    wire = b"".join(bytes(x) for p in pdus for x in frame_pdu(p, header_digest=digests, data_digest=digests))
    buffers = {itt: bytearray(len(p)) for itt, p in payloads.items()}
    reader = _placing_reader(buffers, header_digest=digests, data_digest=digests)
    frames: list[Frame] = []
    for i in range(0, len(wire), step):
        reader.receive_data(wire[i : i + step])
        while (frame := reader.next_frame()) is not None:
            frames.append(frame)
    assert [f.placed for f in frames] == [True, False] * len(payloads)
    assert [P.decode(f.header, f.data if not f.placed else bytes(P.parse_bhs(f.header)[2])).itt
            for f in frames] == [p.itt for p in pdus]
    assert {itt: bytes(b) for itt, b in buffers.items()} == payloads
    assert reader.buffered == 0 and not reader.receiving_in_place


def test_a_corrupt_payload_placed_in_place_fails_its_data_digest() -> None:
    pdu = P.DataIn(data=b"z" * 65536, final=True, itt=1, datasn=0, offset=0)
    wire = bytearray(b"".join(bytes(x) for x in frame_pdu(pdu, data_digest=True)))
    wire[BHS_LENGTH + 30000] ^= 1
    reader = _placing_reader({1: bytearray(65536)}, data_digest=True)
    reader.receive_data(wire[:100])
    assert reader.next_frame() is None and reader.receiving_in_place
    reader.receive_data(wire[100:])
    with pytest.raises(DigestError) as exc:
        reader.next_frame()
    assert exc.value.data_digest and reader.buffered == 0
