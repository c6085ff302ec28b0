"""The sans-IO NBD pieces: codec round trips, the framer fed whole, byte by byte and with trailing
data, the handshake's option table and request rules, and hypothesis fuzzing of every parser that
reads client bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanpath.errors import LocalProtocolError, RemoteProtocolError
from sanpath.export.nbd import codec
from sanpath.export.nbd.codec import OptionInvalid, Request
from sanpath.export.nbd.constants import (
    IHAVEOPT,
    NBDMAGIC,
    REPLY_FLAG_DONE,
    ClientFlag,
    Cmd,
    CmdFlag,
    Errno,
    HandshakeFlag,
    Info,
    Option,
    Rep,
    ReplyType,
    TransmissionFlag,
)
from sanpath.export.nbd.framing import (
    ClientFlagsReceived,
    Framer,
    OptionReceived,
    OptionTooLarge,
    Phase,
    RequestReceived,
    WriteTooLarge,
)
from sanpath.export.nbd.protocol import ExportInfo, Next, ServerHandshake, Stage

MiB = 1 << 20
EXPORT = ExportInfo(name="36001405abcdef", size=64 * MiB, block_size=512, description="LUN 0", allocation=True)


# --- codec ----------------------------------------------------------------------------------------------

def test_greeting_layout() -> None:
    g = codec.server_greeting()
    assert g[:8] == b"NBDMAGIC" and g[8:16] == b"IHAVEOPT"
    assert struct.unpack(">QQH", g) == (NBDMAGIC, IHAVEOPT, 3)
    assert codec.parse_server_greeting(g) == HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES


def test_client_flags() -> None:
    offered = HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES
    assert codec.parse_client_flags(b"\0\0\0\3", offered) == ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES
    with pytest.raises(RemoteProtocolError, match="MUST drop"):
        codec.parse_client_flags(b"\0\0\0\4", offered)
    with pytest.raises(RemoteProtocolError):  # NO_ZEROES answered but not offered
        codec.parse_client_flags(b"\0\0\0\2", HandshakeFlag.FIXED_NEWSTYLE)


def test_option_header_round_trip_and_bad_magic() -> None:
    raw = codec.encode_option(Option.GO, b"xyz")
    assert codec.parse_option_header(raw[:16]) == (Option.GO, 3)
    with pytest.raises(RemoteProtocolError, match="IHAVEOPT"):
        codec.parse_option_header(b"\xff" + raw[1:16])


def test_info_request_round_trip() -> None:
    raw = codec.encode_info_request("lun-1", [Info.BLOCK_SIZE, Info.NAME])
    assert codec.parse_info_request(raw) == codec.InfoRequest("lun-1", (Info.BLOCK_SIZE, Info.NAME))
    assert codec.parse_info_request(codec.encode_info_request("")) == codec.InfoRequest("", ())


@pytest.mark.parametrize("raw", [
    b"",
    b"\0\0\0\5abc\0\0",  # name overruns
    b"\0\0\0\0\0\2\0\3",  # 2 requests, 1 present
    b"\0\0\0\0\0\0\0",  # trailing byte
    b"\0\0\0\2\xff\xfe\0\0",  # not UTF-8
    b"\0\0\0\2a\0\0\0",  # NUL in name
    struct.pack(">I", 5000) + b"a" * 5000 + b"\0\0",  # longer than 4096
])
def test_info_request_invalid(raw: bytes) -> None:
    with pytest.raises(OptionInvalid):
        codec.parse_info_request(raw)


def test_meta_context_request_round_trip_and_invalid() -> None:
    raw = codec.encode_meta_context_request("lun", ["base:allocation", "x-foo:bar"])
    assert codec.parse_meta_context_request(raw) == codec.MetaContextRequest("lun", ("base:allocation", "x-foo:bar"))
    for bad in (raw[:-1], raw + b"\0", raw[:7], struct.pack(">II", 0, 1 << 30)):
        with pytest.raises(OptionInvalid):
            codec.parse_meta_context_request(bad)


def test_request_round_trip_and_bad_magic() -> None:
    req = Request(CmdFlag.FUA, Cmd.WRITE, 0x1122334455667788, 4096, 512)
    raw = codec.encode_request(req)
    assert len(raw) == 28 and codec.parse_request(raw) == req
    with pytest.raises(RemoteProtocolError, match="out of step"):
        codec.parse_request(b"\0" + raw[1:])


def test_replies_parse_back() -> None:
    assert codec.parse_simple_reply(codec.simple_reply(7, Errno.EIO)) == (Errno.EIO, 7)
    chunk = codec.error_chunk(9, Errno.ENOSPC, "past the end")
    assert codec.parse_chunk_header(chunk[:20]) == (REPLY_FLAG_DONE, ReplyType.ERROR, 9, len(chunk) - 20)
    assert codec.parse_error_payload(chunk[20:]) == (Errno.ENOSPC, "past the end")
    assert codec.none_chunk(3) == codec.chunk_header(3, ReplyType.NONE, 0)
    bs = codec.block_status_chunk(4, 1, [(4096, 3), (512, 0)])
    assert codec.parse_chunk_header(bs[:20])[1:] == (ReplyType.BLOCK_STATUS, 4, 4 + 16)
    assert codec.parse_block_status_payload(bs[20:]) == (1, [(4096, 3), (512, 0)])
    buf = bytearray(28 + 5)
    buf[28:] = b"hello"
    codec.pack_offset_data_header(buf, 5, 1024, 5)
    assert codec.parse_chunk_header(buf[:20]) == (REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, 5, 13)
    assert struct.unpack_from(">Q", buf, 20) == (1024,)


def test_option_replies() -> None:
    r = codec.rep_info_block_size(Option.GO, 512, 4096, 1 << 25)
    assert codec.parse_option_reply(r[:20]) == (Option.GO, Rep.INFO, 14)
    assert struct.unpack(">HIII", r[20:]) == (Info.BLOCK_SIZE, 512, 4096, 1 << 25)
    assert len(codec.export_name_reply(1, 1, no_zeroes=False)) == 10 + 124
    assert len(codec.export_name_reply(1, 1, no_zeroes=True)) == 10
    assert codec.rep_server(Option.LIST, "n", "d")[20:] == b"\0\0\0\1nd"


# --- framer ---------------------------------------------------------------------------------------------

def _stream() -> tuple[bytes, list[object]]:
    """Client flags, two options, then (after GO) a write, a read and a disconnect."""
    w = Request(0, Cmd.WRITE, 1, 0, 1000)
    r = Request(0, Cmd.READ, 2, 512, 4096)
    d = Request(0, Cmd.DISC, 3, 0, 0)
    go = codec.encode_info_request("x")
    data = (b"\0\0\0\3" + codec.encode_option(Option.STRUCTURED_REPLY) + codec.encode_option(Option.GO, go)
            + codec.encode_request(w) + bytes(range(250)) * 4 + codec.encode_request(r) + codec.encode_request(d))
    events = [ClientFlagsReceived(b"\0\0\0\3"), OptionReceived(Option.STRUCTURED_REPLY, b""),
              OptionReceived(Option.GO, go), RequestReceived(w, bytearray(bytes(range(250)) * 4)),
              RequestReceived(r), RequestReceived(d)]
    return data, events


def _drain(f: Framer) -> list[object]:
    out: list[object] = []
    while (ev := f.next_event()) is not None:
        out.append(ev)
        if isinstance(ev, OptionReceived) and ev.option == Option.GO:
            f.enter_transmission()
    return out


@pytest.mark.parametrize("step", [None, 1, 3, 29, 1000])
def test_framer_whole_and_piecewise(step: int | None) -> None:
    data, expected = _stream()
    f = Framer()
    got: list[object] = []
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for c in chunks:
        f.receive_data(c)
        got += _drain(f)
    assert got == expected
    assert next(e.payload for e in got if isinstance(e, RequestReceived)) == bytearray(bytes(range(250)) * 4)
    assert f.buffered == 0


def test_framer_keeps_trailing_bytes_until_phase_changes() -> None:
    f = Framer()
    req = codec.encode_request(Request(0, Cmd.READ, 1, 0, 512))
    f.receive_data(b"\0\0\0\1" + codec.encode_option(Option.GO, codec.encode_info_request("")) + req + req[:10])
    assert isinstance(f.next_event(), ClientFlagsReceived)
    assert isinstance(f.next_event(), OptionReceived)
    f.enter_transmission()
    assert f.phase is Phase.TRANSMISSION
    assert f.next_event() == RequestReceived(Request(0, Cmd.READ, 1, 0, 512))
    assert f.next_event() is None and f.buffered == 10
    f.receive_data(req[10:])
    assert f.next_event() == RequestReceived(Request(0, Cmd.READ, 1, 0, 512))


def test_framer_drops_oversized_write_and_option() -> None:
    f = Framer(max_payload=4096, max_option=1024)
    f.receive_data(b"\0\0\0\1" + codec.encode_option(Option.LIST, b"z" * 5000) + codec.encode_option(Option.GO))
    assert isinstance(f.next_event(), ClientFlagsReceived)
    assert f.next_event() == OptionTooLarge(Option.LIST, 5000)
    assert f.next_event() == OptionReceived(Option.GO, b"")
    f.enter_transmission()
    big = Request(0, Cmd.WRITE, 7, 0, 10000)
    f.receive_data(codec.encode_request(big) + b"y" * 6000)
    assert f.next_event() is None
    f.receive_data(b"y" * 4000 + codec.encode_request(Request(0, Cmd.FLUSH, 8, 0, 0)))
    assert f.next_event() == WriteTooLarge(big)
    assert f.next_event() == RequestReceived(Request(0, Cmd.FLUSH, 8, 0, 0))


def test_framer_bad_magic() -> None:
    f = Framer()
    f.receive_data(b"\0\0\0\1" + b"NOTMAGIC" + bytes(8))
    assert isinstance(f.next_event(), ClientFlagsReceived)
    with pytest.raises(RemoteProtocolError):
        f.next_event()


def test_framer_payload_lands_in_place() -> None:
    """A large WRITE payload is received straight into its own buffer (get_buffer hands it out)."""
    f = Framer()
    f.receive_data(b"\0\0\0\1" + codec.encode_option(Option.GO))
    _drain(f)
    f.receive_data(codec.encode_request(Request(0, Cmd.WRITE, 1, 0, 1 << 20)))
    assert f.next_event() is None
    view = f.get_buffer(-1)
    assert len(view) == 1 << 20
    view[:] = b"\xab" * (1 << 20)
    f.buffer_updated(1 << 20)
    ev = f.next_event()
    assert isinstance(ev, RequestReceived) and ev.payload == bytearray(b"\xab" * (1 << 20))


@given(st.binary(max_size=300), st.integers(1, 64))
def test_framer_fuzz(data: bytes, step: int) -> None:
    """Any bytes: only events or RemoteProtocolError, never anything else."""
    f = Framer(max_payload=256, max_option=128)
    try:
        for i in range(0, len(data), step):
            f.receive_data(data[i : i + step])
            while (ev := f.next_event()) is not None:
                if isinstance(ev, OptionReceived):
                    f.enter_transmission()
    except RemoteProtocolError:
        pass


@given(st.binary(max_size=200))
def test_option_parsers_fuzz(data: bytes) -> None:
    for parse in (codec.parse_info_request, codec.parse_meta_context_request):
        with contextlib.suppress(OptionInvalid):
            parse(data)


@given(st.binary(min_size=28, max_size=28))
def test_request_parser_fuzz(data: bytes) -> None:
    try:
        req = codec.parse_request(data)
    except RemoteProtocolError:
        return
    assert codec.encode_request(req) == data


# --- handshake and request rules ------------------------------------------------------------------------

def _options_stage(export: ExportInfo = EXPORT) -> ServerHandshake:
    hs = ServerHandshake(export)
    hs.receive_client_flags(b"\0\0\0\3")
    return hs


def _reps(replies: list[bytes]) -> list[int]:
    return [codec.parse_option_reply(r[:20])[1] for r in replies]


@given(st.integers(0, 0xFFFFFFFF), st.binary(max_size=64))
def test_any_option_gets_an_answer(option: int, data: bytes) -> None:
    hs = _options_stage()
    result = hs.receive_option(option, data)
    assert result.replies or result.next is Next.CLOSE
    assert hs.stage is {Next.CONTINUE: Stage.OPTIONS, Next.TRANSMIT: Stage.TRANSMISSION, Next.CLOSE: Stage.CLOSED}[
        result.next]


def test_go_info_and_list() -> None:
    hs = _options_stage()
    info = hs.receive_option(Option.INFO, codec.encode_info_request(EXPORT.name, [Info.BLOCK_SIZE, Info.NAME,
                                                                                   Info.DESCRIPTION]))
    assert info.next is Next.CONTINUE
    assert _reps(info.replies) == [Rep.INFO] * 4 + [Rep.ACK]
    _, size, flags = struct.unpack(">HQH", info.replies[0][20:])
    assert size == EXPORT.size and flags & TransmissionFlag.SEND_WRITE_ZEROES and not flags & TransmissionFlag.READ_ONLY
    lst = hs.receive_option(Option.LIST, b"")
    assert _reps(lst.replies) == [Rep.SERVER, Rep.ACK]
    assert _reps(hs.receive_option(Option.LIST, b"x").replies) == [Rep.ERR_INVALID]
    unknown = hs.receive_option(Option.GO, codec.encode_info_request("nope"))
    assert _reps(unknown.replies) == [Rep.ERR_UNKNOWN] and hs.stage is Stage.OPTIONS
    assert _reps(hs.receive_option(Option.STARTTLS, b"").replies) == [Rep.ERR_POLICY]
    assert _reps(hs.receive_option(Option.EXTENDED_HEADERS, b"").replies) == [Rep.ERR_UNSUP]
    assert _reps(hs.option_too_large(Option.LIST, 1 << 20).replies) == [Rep.ERR_TOO_BIG]
    go = hs.receive_option(Option.GO, codec.encode_info_request(""))  # the default export
    assert go.next is Next.TRANSMIT and _reps(go.replies) == [Rep.INFO, Rep.ACK]
    with pytest.raises(LocalProtocolError):
        hs.receive_option(Option.LIST, b"")


def test_meta_context_needs_structured_replies() -> None:
    hs = _options_stage()
    q = codec.encode_meta_context_request(EXPORT.name, ["base:allocation"])
    assert _reps(hs.receive_option(Option.SET_META_CONTEXT, q).replies) == [Rep.ERR_INVALID]
    hs.receive_option(Option.STRUCTURED_REPLY, b"")
    assert _reps(hs.receive_option(Option.LIST_META_CONTEXT, codec.encode_meta_context_request(EXPORT.name)).replies) \
        == [Rep.META_CONTEXT, Rep.ACK]
    assert _reps(hs.receive_option(Option.SET_META_CONTEXT, q).replies) == [Rep.META_CONTEXT, Rep.ACK]
    assert hs.meta_context is not None
    hs.receive_option(Option.SET_META_CONTEXT, codec.encode_meta_context_request(EXPORT.name, ["x-other:thing"]))
    assert hs.meta_context is None


def test_export_name_and_abort() -> None:
    hs = _options_stage()
    r = hs.receive_option(Option.EXPORT_NAME, EXPORT.name.encode())
    assert r.next is Next.TRANSMIT and len(r.replies[0]) == 10  # the client set NO_ZEROES
    assert _options_stage().receive_option(Option.EXPORT_NAME, b"other").next is Next.CLOSE
    ab = _options_stage().receive_option(Option.ABORT, b"")
    assert ab.next is Next.CLOSE and _reps(ab.replies) == [Rep.ACK]


@pytest.mark.parametrize(("req", "read_only", "expected"), [
    (Request(0, Cmd.READ, 1, 0, 4096), False, None),
    (Request(0, Cmd.READ, 1, 0, (1 << 25) + 512), False, Errno.EOVERFLOW),
    (Request(0, Cmd.READ, 1, 64 * MiB - 512, 1024), False, Errno.EINVAL),
    (Request(0, Cmd.WRITE, 1, 64 * MiB, 512), False, Errno.ENOSPC),
    (Request(0, Cmd.TRIM, 1, 64 * MiB - 512, 1024), False, Errno.ENOSPC),
    (Request(0, Cmd.WRITE, 1, 0, 512), True, Errno.EPERM),
    (Request(0, Cmd.WRITE_ZEROES, 1, 0, 512), True, Errno.EPERM),
    (Request(0, Cmd.FLUSH, 1, 123, 456), True, None),
    (Request(CmdFlag.NO_HOLE, Cmd.WRITE, 1, 0, 512), False, Errno.EINVAL),
    (Request(0x8000, Cmd.READ, 1, 0, 512), False, Errno.EINVAL),  # a bit no flag defines
    (Request(CmdFlag.NO_HOLE | CmdFlag.FUA, Cmd.WRITE_ZEROES, 1, 0, 512), False, None),
    (Request(CmdFlag.DF, Cmd.READ, 1, 0, 512), False, None),
    (Request(0, Cmd.CACHE, 1, 0, 512), False, Errno.EINVAL),
    (Request(0, 99, 1, 0, 512), False, Errno.EINVAL),
    (Request(0, Cmd.BLOCK_STATUS, 1, 0, 512), False, Errno.EINVAL),  # no metadata context selected
])
def test_request_rules(req: Request, read_only: bool, expected: Errno | None) -> None:
    export = ExportInfo(name="x", size=64 * MiB, block_size=512, read_only=read_only)
    hs = _options_stage(export)
    hs.receive_option(Option.STRUCTURED_REPLY, b"")
    hs.receive_option(Option.GO, codec.encode_info_request("x"))
    refusal = hs.check_request(req)
    assert (refusal.error if refusal else None) == expected


def test_oversize_error_without_structured_replies_is_einval() -> None:
    hs = _options_stage()
    hs.receive_option(Option.GO, codec.encode_info_request(""))
    refusal = hs.check_request(Request(0, Cmd.READ, 1, 0, 1 << 26))
    assert refusal is not None and refusal.error == Errno.EINVAL
    assert hs.check_request(Request(CmdFlag.DF, Cmd.READ, 1, 0, 512)) is not None  # DF needs structured replies
