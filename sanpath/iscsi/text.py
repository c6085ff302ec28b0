"""iSCSI text data segments: ``key=value`` pairs, Continue-bit reassembly, and splitting for sending.

This module owns the bytes of a logical text data segment (LTDS, RFC 7143 §6.1) and nothing about
what the keys mean (that is ``keys.py``). It keeps no protocol state except the reassembly buffer of
:class:`TextReassembler`, which is fed by the login and text state machines.

Rules applied here (RFC 7143 §6.1):

* every ``key=value`` pair, the last one included, is followed by exactly one NUL (0x00);
* the key is whatever precedes the first ``=``; a key is a *standard-label* (a capital letter, then
  letters, digits, ``.``, ``-``, ``+``, ``@`` or ``_``) of at most 63 bytes, or an extension key
  ``X-...`` / ``X#...`` (§13.22) of the same length;
* text is UTF-8;
* an individual value is at most 255 bytes, except the *large-binary-value* keys (CHAP_C, CHAP_R and
  the SRP / Kerberos items of §12.1), whose binary form may be 1024 bytes; the hex form of that is
  ``0x`` plus 2048 digits. A list-of-values is checked element by element;
* pairs may span PDU boundaries; PDUs whose C bit is 1 continue into the next PDU, and the PDU with
  C = 0 ends the LTDS. An implementation must accept at least 8192 bytes of key=value data in one
  negotiation sequence, 64 KiB when an authentication method with long items is in use, which is
  why the reassembly cap defaults to 64 KiB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from sanpath.errors import LocalProtocolError, RemoteProtocolError

MAX_KEY_BYTES = 63
"""§6.1: a standard-label must not exceed 63 characters."""

MAX_VALUE_BYTES = 255
"""§6.1: the maximum length of an individual value."""

MAX_LARGE_BINARY_BYTES = 1024
"""§6.1 / §12.1.3: the binary length of a large-binary-value (CHAP_C, CHAP_R) must not exceed 1024."""

MAX_LARGE_BINARY_TEXT = 2 + 2 * MAX_LARGE_BINARY_BYTES
"""The longest string form of a large-binary-value: ``0x`` and two hex digits per byte."""

MIN_NEGOTIATION_BYTES = 8192
"""§6.1: every implementation must accept at least this much key=value data in one sequence."""

DEFAULT_REASSEMBLY_CAP = 64 * 1024
"""§6.1: 64 KiB must be accepted when an authentication method with long items is negotiated."""

LARGE_BINARY_KEYS = frozenset(
    {
        "CHAP_C",
        "CHAP_R",
        "SRP_s",
        "SRP_A",
        "SRP_B",
        "SRP_M",
        "SRP_HM",
        "KRB_AP_REQ",
        "KRB_AP_REP",
    }
)
"""Keys whose values are large-binary-values (§12.1.1-§12.1.3) and so may exceed 255 bytes."""

_KEY_RE = re.compile(r"(?:[A-Z][A-Za-z0-9.\-+@_]*|X[-#][A-Za-z0-9.\-+@_]+)\Z")

Pair = tuple[str, str]
Pairs = Iterable[Pair] | Mapping[str, str]


def valid_key(key: str) -> bool:
    """True if ``key`` is a well-formed key name (standard-label or X-/X# extension, §6.1, §13.22)."""
    return len(key.encode("utf-8")) <= MAX_KEY_BYTES and _KEY_RE.match(key) is not None


def value_limit(key: str) -> int:
    """The longest string (in bytes) one element of ``key``'s value may be (§6.1)."""
    return MAX_LARGE_BINARY_TEXT if key in LARGE_BINARY_KEYS else MAX_VALUE_BYTES


def _value_problem(key: str, value: str) -> str | None:
    """Describe what is wrong with ``value`` for ``key``, or return None if it is acceptable."""
    if "\x00" in value:
        return "contains a NUL byte"
    limit = value_limit(key)
    for element in value.split(","):
        size = len(element.encode("utf-8"))
        if size > limit:
            return f"has an element of {size} bytes, longer than the {limit} allowed"
    return None


def _iter_pairs(pairs: Pairs) -> Iterator[Pair]:
    if isinstance(pairs, Mapping):
        yield from pairs.items()
    else:
        yield from pairs


def encode(pairs: Pairs) -> bytes:
    """Encode ``key=value`` pairs, in the given order, each followed by a NUL (RFC 7143 §6.1).

    Duplicated keys are allowed here because a SendTargets response legitimately repeats
    TargetName and TargetAddress (§13.3); negotiation code never offers a key twice.
    Raises :class:`LocalProtocolError` for a malformed key or value.
    """
    out = bytearray()
    for key, value in _iter_pairs(pairs):
        if not valid_key(key):
            raise LocalProtocolError(
                f"cannot send key {key!r}: a key must be a standard-label of at most {MAX_KEY_BYTES} bytes "
                "starting with a capital letter, or an X-/X# extension key (RFC 7143 §6.1, §13.22)"
            )
        problem = _value_problem(key, value)
        if problem is not None:
            raise LocalProtocolError(f"cannot send {key}: the value {problem} (RFC 7143 §6.1)")
        out += key.encode("utf-8")
        out += b"="
        out += value.encode("utf-8")
        out += b"\x00"
    return bytes(out)


def decode_pairs(data: bytes | bytearray | memoryview) -> list[Pair]:
    """Decode a complete LTDS into ``(key, value)`` pairs in wire order; duplicates are kept.

    Use this for SendTargets responses (§13.3), where TargetName and TargetAddress repeat; use
    :func:`decode` for negotiation, where a repeated key is an error. Raises
    :class:`RemoteProtocolError` naming the offending pair and citing RFC 7143 §6.1.
    """
    raw = bytes(data)
    if not raw:
        return []
    if raw[-1] != 0:
        tail = raw[raw.rfind(b"\x00") + 1 :][:40]
        raise RemoteProtocolError(
            f"text data ends with {tail!r} and no NUL: every key=value pair, the last one included, "
            "must be followed by one NUL (RFC 7143 §6.1); was the C bit left clear too early?"
        )
    result: list[Pair] = []
    for index, chunk in enumerate(raw[:-1].split(b"\x00")):
        if not chunk:
            raise RemoteProtocolError(
                f"empty key=value pair at position {index}: pairs are separated by exactly one NUL "
                "(RFC 7143 §6.1)"
            )
        key_bytes, eq, value_bytes = chunk.partition(b"=")
        if not eq:
            raise RemoteProtocolError(
                f"text item {chunk[:40]!r} has no '=': every item must be key=value (RFC 7143 §6.1)"
            )
        try:
            key = key_bytes.decode("utf-8")
            value = value_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(
                f"text item {chunk[:40]!r} is not valid UTF-8 (RFC 7143 §6.1)"
            ) from None
        if not valid_key(key):
            raise RemoteProtocolError(
                f"malformed key {key[:70]!r}: a key is a standard-label of at most {MAX_KEY_BYTES} bytes "
                "starting with a capital letter, or an X-/X# extension key (RFC 7143 §6.1, §13.22)"
            )
        problem = _value_problem(key, value)
        if problem is not None:
            raise RemoteProtocolError(f"the value of {key} {problem} (RFC 7143 §6.1)")
        result.append((key, value))
    return result


def decode(data: bytes | bytearray | memoryview) -> dict[str, str]:
    """Decode a complete LTDS into an ordered dict; a key appearing twice is a protocol error.

    RFC 7143 §6.2 / §6.3: a key may be offered or declared once per negotiation; a repeat is a
    renegotiation, which the peer must not attempt.
    """
    result: dict[str, str] = {}
    for key, value in decode_pairs(data):
        if key in result:
            raise RemoteProtocolError(
                f"key {key} appears twice in one text data segment ({result[key]!r}, then {value!r}): "
                "a key may be offered or declared only once (RFC 7143 §6.2, §6.3)"
            )
        result[key] = value
    return result


def split(data: bytes | bytearray | memoryview, max_length: int) -> list[bytes]:
    """Cut an encoded LTDS into pieces of at most ``max_length`` bytes, for PDUs with the C bit.

    Every piece but the last goes out with C = 1, the last with C = 0 (RFC 7143 §6.1). Pieces may
    end in the middle of a key=value pair, which §6.1 allows. ``max_length`` is the peer's
    MaxRecvDataSegmentLength (§13.12; during login at most 8192). Empty data gives one empty piece.
    """
    if max_length < 1:
        raise LocalProtocolError(f"cannot split text into pieces of {max_length} bytes; need at least 1")
    raw = bytes(data)
    if not raw:
        return [b""]
    return [raw[i : i + max_length] for i in range(0, len(raw), max_length)]


class TextReassembler:
    """Accumulates the data segments of Login/Text PDUs until one arrives with the C bit clear.

    RFC 7143 §6.1: the data segments of a run of PDUs with C = 1, ended by a PDU with C = 0, form
    one logical text data segment. The total is capped (default 64 KiB, see the module docstring);
    a peer that sends more raises :class:`RemoteProtocolError`, after which the buffer is empty.
    """

    __slots__ = ("_buffer", "_cap")

    def __init__(self, max_size: int = DEFAULT_REASSEMBLY_CAP) -> None:
        if max_size < MIN_NEGOTIATION_BYTES:
            raise LocalProtocolError(
                f"a text reassembly cap of {max_size} bytes is below the {MIN_NEGOTIATION_BYTES} bytes "
                "every implementation must accept (RFC 7143 §6.1)"
            )
        self._cap = max_size
        self._buffer = bytearray()

    @property
    def max_size(self) -> int:
        """The cap on one LTDS, in bytes."""
        return self._cap

    @property
    def pending(self) -> int:
        """Bytes held from PDUs with C = 1 that are still waiting for their final piece."""
        return len(self._buffer)

    def feed(self, segment: bytes | bytearray | memoryview, continues: bool) -> bytes | None:
        """Add one PDU's data segment; return the whole LTDS when ``continues`` (the C bit) is False."""
        if len(self._buffer) + len(segment) > self._cap:
            total = len(self._buffer) + len(segment)
            self._buffer.clear()
            raise RemoteProtocolError(
                f"text spread over PDUs with the C bit set has reached {total} bytes, more than the "
                f"{self._cap} this side accepts for one negotiation sequence (RFC 7143 §6.1)"
            )
        self._buffer += segment
        if continues:
            return None
        complete = bytes(self._buffer)
        self._buffer.clear()
        return complete

    def reset(self) -> None:
        """Drop any partial text (e.g. when the login is abandoned)."""
        self._buffer.clear()


__all__ = [
    "DEFAULT_REASSEMBLY_CAP",
    "LARGE_BINARY_KEYS",
    "MAX_KEY_BYTES",
    "MAX_LARGE_BINARY_BYTES",
    "MAX_VALUE_BYTES",
    "MIN_NEGOTIATION_BYTES",
    "TextReassembler",
    "decode",
    "decode_pairs",
    "encode",
    "split",
    "valid_key",
    "value_limit",
]
