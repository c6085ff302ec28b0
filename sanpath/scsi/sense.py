"""Sense data: build fixed-format sense (SPC-4 4.5.3) and parse fixed or descriptor format (4.5.2).

A device server answers CHECK CONDITION with sense data; sanpath's target builds the fixed format
(response code 70h), the format every initiator understands.  The parser accepts both formats and
returns one frozen :class:`Sense` so callers never look at raw bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sanpath.errors import RemoteProtocolError
from sanpath.scsi.constants import SenseKey

FIXED_CURRENT = 0x70
FIXED_DEFERRED = 0x71
DESCRIPTOR_CURRENT = 0x72
DESCRIPTOR_DEFERRED = 0x73

FIXED_SENSE_LENGTH = 18
"""Fixed format with ADDITIONAL SENSE LENGTH 10: every field up to the sense-key-specific bytes."""

_INFO = struct.Struct(">I")
_DESC_INFORMATION = 0x00
_DESC_SENSE_KEY_SPECIFIC = 0x02


@dataclass(frozen=True, slots=True)
class FieldPointer:
    """Sense-key-specific FIELD POINTER (SPC-4 4.5.2.4.2): which CDB (``cdb=True``) or parameter
    list byte, and optionally which bit, was invalid.  With the COPY ABORTED sense key the same
    bytes are a SEGMENT POINTER (SPC-4 4.5.2.4.5): ``segment=True`` (the SD bit) makes the byte
    relative to the segment descriptor the COMMAND-SPECIFIC INFORMATION names, else to the
    parameter list (``cdb`` must then be False)."""

    byte: int
    bit: int | None = None
    cdb: bool = True
    segment: bool = False

    def encode(self) -> bytes:
        b0 = 0x80 | (0x40 if self.cdb else 0) | (0x20 if self.segment else 0)
        if self.bit is not None:
            b0 |= 0x08 | (self.bit & 0x7)
        return bytes((b0,)) + self.byte.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class Sense:
    """Decoded sense data; ``information`` is None when the VALID bit (or descriptor) is absent."""

    key: int
    asc: int
    ascq: int
    information: int | None = None
    response_code: int = FIXED_CURRENT
    field_pointer: FieldPointer | None = None
    sense_key_specific: bytes = b""
    command_specific: int = 0

    @property
    def descriptor_format(self) -> bool:
        return self.response_code in (DESCRIPTOR_CURRENT, DESCRIPTOR_DEFERRED)

    @property
    def deferred(self) -> bool:
        return self.response_code in (FIXED_DEFERRED, DESCRIPTOR_DEFERRED)

    def __str__(self) -> str:
        try:
            name = SenseKey(self.key).name
        except ValueError:
            name = f"0x{self.key:x}"
        text = f"{name} ASC/ASCQ {self.asc:02x}h/{self.ascq:02x}h"
        if self.information is not None:
            text += f" information={self.information}"
        return text


def build_fixed_sense(
    key: int,
    asc: int,
    ascq: int,
    *,
    information: int | None = None,
    field_pointer: FieldPointer | None = None,
    deferred: bool = False,
    command_specific: int = 0,
) -> bytes:
    """Fixed-format sense data (SPC-4 4.5.3, table 50), 18 bytes.

    ``information`` sets the VALID bit and the 4-byte INFORMATION field (e.g. the miscompare offset
    of VERIFY / COMPARE AND WRITE, SBC-3 5.3); ``command_specific`` is the COMMAND-SPECIFIC
    INFORMATION field (for EXTENDED COPY, the number of the segment that failed, SPC-4 6.4);
    ``field_pointer`` fills the sense-key-specific bytes 15-17 with SKSV set.
    """
    buf = bytearray(FIXED_SENSE_LENGTH)
    buf[0] = FIXED_DEFERRED if deferred else FIXED_CURRENT
    buf[2] = key & 0x0F
    if information is not None:
        buf[0] |= 0x80
        _INFO.pack_into(buf, 3, information & 0xFFFFFFFF)
    buf[7] = FIXED_SENSE_LENGTH - 8
    _INFO.pack_into(buf, 8, command_specific & 0xFFFFFFFF)
    buf[12] = asc
    buf[13] = ascq
    if field_pointer is not None:
        buf[15:18] = field_pointer.encode()
    return bytes(buf)


def _decode_field_pointer(sks: bytes, key: int) -> FieldPointer | None:
    if len(sks) < 3 or not sks[0] & 0x80 or key not in (SenseKey.ILLEGAL_REQUEST, SenseKey.COPY_ABORTED):
        return None
    bit = sks[0] & 0x7 if sks[0] & 0x08 else None
    byte = int.from_bytes(sks[1:3], "big")
    if key == SenseKey.COPY_ABORTED:  # a segment pointer (SPC-4 4.5.2.4.5)
        return FieldPointer(byte=byte, bit=bit, cdb=False, segment=bool(sks[0] & 0x20))
    return FieldPointer(byte=byte, bit=bit, cdb=bool(sks[0] & 0x40))


def parse_sense(data: bytes | memoryview) -> Sense:
    """Decode fixed (70h/71h) or descriptor (72h/73h) sense data.

    Raises :class:`RemoteProtocolError` when the buffer is too short or the response code is not one
    of the four SPC-4 4.5.1 defines.
    """
    raw = bytes(data)
    information: int | None = None
    if len(raw) < 2:
        raise RemoteProtocolError(f"sense data of {len(raw)} bytes is too short (SPC-4 4.5.1)")
    code = raw[0] & 0x7F
    if code in (FIXED_CURRENT, FIXED_DEFERRED):
        if len(raw) < 14:
            raw = raw.ljust(14, b"\0")
        key = raw[2] & 0x0F
        if raw[0] & 0x80:
            information = _INFO.unpack_from(raw, 3)[0]
        additional = raw[7]
        command_specific = _INFO.unpack_from(raw, 8)[0]
        sks = raw[15:18] if additional >= 10 and len(raw) >= 18 else b""
        return Sense(
            key=key,
            asc=raw[12],
            ascq=raw[13],
            information=information,
            response_code=code,
            field_pointer=_decode_field_pointer(sks, key),
            sense_key_specific=sks if sks and sks[0] & 0x80 else b"",
            command_specific=command_specific,
        )
    if code in (DESCRIPTOR_CURRENT, DESCRIPTOR_DEFERRED):
        if len(raw) < 8:
            raise RemoteProtocolError("descriptor sense shorter than its 8-byte header (SPC-4 4.5.2)")
        key = raw[1] & 0x0F
        end = min(len(raw), 8 + raw[7])
        sks = b""
        pos = 8
        while pos + 2 <= end:
            dtype, dlen = raw[pos], raw[pos + 1]
            body = raw[pos + 2 : pos + 2 + dlen]
            if dtype == _DESC_INFORMATION and len(body) >= 10 and body[0] & 0x80:
                information = int.from_bytes(body[2:10], "big")
            elif dtype == _DESC_SENSE_KEY_SPECIFIC and len(body) >= 5:
                sks = body[2:5]
            pos += 2 + dlen
        return Sense(
            key=key,
            asc=raw[2],
            ascq=raw[3],
            information=information,
            response_code=code,
            field_pointer=_decode_field_pointer(sks, key),
            sense_key_specific=sks if sks and sks[0] & 0x80 else b"",
        )
    raise RemoteProtocolError(f"unknown sense response code 0x{code:02x} (SPC-4 4.5.1 defines 70h-73h)")
