"""Text data segments: encode/decode, Continue-bit reassembly, splitting (RFC 7143 §6.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanpath.errors import LocalProtocolError, RemoteProtocolError
from sanpath.iscsi import text

KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-+@_"
keys = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWYZ"),
    st.text(KEY_CHARS, max_size=62),
)
values = st.text(
    st.characters(blacklist_characters="\x00,", blacklist_categories=["Cs"]), max_size=60
).filter(lambda v: len(v.encode()) <= 255)
pair_lists = st.lists(st.tuples(keys, values), max_size=12, unique_by=lambda p: p[0])


def test_encode_layout() -> None:
    assert text.encode([("HeaderDigest", "CRC32C,None"), ("InitialR2T", "No")]) == (
        b"HeaderDigest=CRC32C,None\x00InitialR2T=No\x00"
    )
    assert text.encode({}) == b""


def test_decode_keeps_order_and_first_equals_sign() -> None:
    data = b"TargetName=iqn.2001-04.com.example:disk\x00X-com.example.k=a=b\x00"
    assert text.decode(data) == {"TargetName": "iqn.2001-04.com.example:disk", "X-com.example.k": "a=b"}
    assert list(text.decode(data)) == ["TargetName", "X-com.example.k"]


def test_empty_value_and_empty_segment() -> None:
    assert text.decode(b"SendTargets=\x00") == {"SendTargets": ""}
    assert text.decode(b"") == {}


def test_duplicate_key_is_protocol_error_naming_key() -> None:
    with pytest.raises(RemoteProtocolError, match=r"MaxBurstLength appears twice.*§6\.2"):
        text.decode(b"MaxBurstLength=512\x00InitialR2T=No\x00MaxBurstLength=1024\x00")


def test_decode_pairs_keeps_duplicates_for_sendtargets() -> None:
    data = text.encode(
        [("TargetName", "iqn.a"), ("TargetAddress", "192.0.2.1:3260,1"), ("TargetAddress", "192.0.2.2:3260,2")]
    )
    assert [k for k, _ in text.decode_pairs(data)] == ["TargetName", "TargetAddress", "TargetAddress"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"InitialR2T=No", "no NUL"),
        (b"InitialR2T=No\x00\x00", "empty key=value"),
        (b"InitialR2T\x00", "has no '='"),
        (b"=No\x00", "malformed key"),
        (b"initialR2T=No\x00", "malformed key"),
        (b"K" * 64 + b"=1\x00", "malformed key"),
        (b"TargetAlias=\xff\xfe\x00", "UTF-8"),
        (b"TargetAlias=" + b"a" * 256 + b"\x00", "longer than the 255"),
    ],
)
def test_malformed_text(data: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        text.decode(data)


def test_key_length_limit_is_63_bytes() -> None:
    assert text.decode(b"K" * 63 + b"=1\x00") == {"K" * 63: "1"}


def test_large_binary_values_may_exceed_255() -> None:
    challenge = "0x" + "ab" * 1024
    assert text.decode(text.encode({"CHAP_C": challenge})) == {"CHAP_C": challenge}
    with pytest.raises(RemoteProtocolError):
        text.decode(b"CHAP_C=0x" + b"ab" * 1025 + b"\x00")


def test_list_values_are_limited_per_element() -> None:
    value = ",".join(["a" * 200] * 3)
    assert text.decode(text.encode({"X-com.example.list": value}))["X-com.example.list"] == value


def test_extension_keys_are_valid() -> None:
    assert text.valid_key("X-com.example.feature")
    assert text.valid_key("X#NodeArchitecture")
    assert not text.valid_key("X#")
    assert not text.valid_key("lowercase")


def test_encode_refuses_bad_local_input() -> None:
    with pytest.raises(LocalProtocolError, match="cannot send key"):
        text.encode({"bad key": "x"})
    with pytest.raises(LocalProtocolError, match="NUL"):
        text.encode({"TargetAlias": "a\x00b"})
    with pytest.raises(LocalProtocolError, match="255"):
        text.encode({"TargetAlias": "a" * 256})


@given(pair_lists)
def test_round_trip(pairs: list[tuple[str, str]]) -> None:
    data = text.encode(pairs)
    assert list(text.decode(data).items()) == pairs
    assert text.decode_pairs(data) == pairs


@given(pair_lists, st.integers(min_value=1, max_value=64))
def test_split_and_reassemble(pairs: list[tuple[str, str]], piece: int) -> None:
    data = text.encode(pairs)
    pieces = text.split(data, piece)
    assert all(len(p) <= piece for p in pieces)
    assert b"".join(pieces) == data
    reassembler = text.TextReassembler()
    results = [reassembler.feed(p, continues=i < len(pieces) - 1) for i, p in enumerate(pieces)]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] == data
    assert reassembler.pending == 0


@given(pair_lists)
def test_byte_by_byte_reassembly(pairs: list[tuple[str, str]]) -> None:
    data = text.encode(pairs)
    reassembler = text.TextReassembler()
    for i in range(len(data)):
        assert reassembler.feed(data[i : i + 1], continues=True) is None
    complete = reassembler.feed(b"", continues=False)
    assert complete is not None
    assert list(text.decode(complete).items()) == pairs


@given(pair_lists, pair_lists, st.integers(min_value=1, max_value=17))
def test_consecutive_sequences_with_trailing_data(
    first: list[tuple[str, str]], second: list[tuple[str, str]], piece: int
) -> None:
    """Two LTDSs back to back: the second's pieces never leak into the first."""
    reassembler = text.TextReassembler()
    outputs = []
    for pairs in (first, second):
        pieces = text.split(text.encode(pairs), piece)
        for i, p in enumerate(pieces):
            done = reassembler.feed(p, continues=i < len(pieces) - 1)
            if done is not None:
                outputs.append(text.decode(done))
    assert [list(o.items()) for o in outputs] == [first, second]


def test_trailing_partial_pair_is_rejected() -> None:
    data = text.encode({"InitialR2T": "No"}) + b"ImmediateData=Ye"
    with pytest.raises(RemoteProtocolError, match="C bit"):
        text.decode(data)


def test_split_mid_pair_and_empty() -> None:
    data = text.encode({"MaxBurstLength": "262144"})
    assert text.split(data, 5)[0] == b"MaxBu"
    assert text.split(b"", 512) == [b""]
    with pytest.raises(LocalProtocolError):
        text.split(data, 0)


def test_reassembly_cap() -> None:
    reassembler = text.TextReassembler(max_size=8192)
    assert reassembler.feed(b"a" * 8000, continues=True) is None
    with pytest.raises(RemoteProtocolError, match=r"8192.*§6\.1"):
        reassembler.feed(b"a" * 193, continues=True)
    assert reassembler.pending == 0
    assert reassembler.feed(b"X-a=b\x00", continues=False) == b"X-a=b\x00"


def test_reassembly_cap_default_and_minimum() -> None:
    assert text.TextReassembler().max_size == 64 * 1024
    with pytest.raises(LocalProtocolError, match="8192"):
        text.TextReassembler(max_size=4096)


def test_reset_drops_partial_text() -> None:
    reassembler = text.TextReassembler()
    reassembler.feed(b"Initial", continues=True)
    reassembler.reset()
    assert reassembler.feed(b"X-a=b\x00", continues=False) == b"X-a=b\x00"
