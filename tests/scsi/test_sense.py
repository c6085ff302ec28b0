"""Fixed-format sense building and fixed/descriptor parsing (SPC-4 4.5)."""

from __future__ import annotations

import pytest

from sanpath.errors import RemoteProtocolError
from sanpath.scsi.constants import SenseKey
from sanpath.scsi.sense import FieldPointer, Sense, build_fixed_sense, parse_sense


def test_fixed_sense_layout() -> None:
    raw = build_fixed_sense(SenseKey.ILLEGAL_REQUEST, 0x24, 0x00)
    assert len(raw) == 18
    assert raw[0] == 0x70  # current, VALID clear
    assert raw[2] == 0x05
    assert raw[7] == 10  # additional sense length
    assert (raw[12], raw[13]) == (0x24, 0x00)
    assert raw[15:18] == bytes(3)  # SKSV clear


def test_information_field_sets_valid() -> None:
    raw = build_fixed_sense(SenseKey.MISCOMPARE, 0x1D, 0x00, information=0x1234)
    assert raw[0] == 0xF0
    assert raw[3:7] == bytes.fromhex("00001234")
    sense = parse_sense(raw)
    assert sense == Sense(SenseKey.MISCOMPARE, 0x1D, 0x00, information=0x1234)


def test_field_pointer_bytes() -> None:
    raw = build_fixed_sense(SenseKey.ILLEGAL_REQUEST, 0x24, 0, field_pointer=FieldPointer(byte=2, bit=5))
    assert raw[15:18] == bytes((0x80 | 0x40 | 0x08 | 5, 0, 2))
    param = build_fixed_sense(
        SenseKey.ILLEGAL_REQUEST, 0x26, 0, field_pointer=FieldPointer(byte=300, cdb=False)
    )
    assert param[15:18] == bytes((0x80, 0x01, 0x2C))
    assert parse_sense(raw).field_pointer == FieldPointer(2, 5)
    assert parse_sense(param).field_pointer == FieldPointer(300, None, cdb=False)


def test_deferred_and_str() -> None:
    sense = parse_sense(build_fixed_sense(SenseKey.UNIT_ATTENTION, 0x29, 0x03, deferred=True))
    assert sense.deferred and not sense.descriptor_format
    assert str(sense) == "UNIT_ATTENTION ASC/ASCQ 29h/03h"


def test_descriptor_format() -> None:
    info = bytes((0x00, 0x0A, 0x80, 0x00)) + (0x1122334455667788).to_bytes(8, "big")
    sks = bytes((0x02, 0x06, 0, 0, 0xC0, 0x00, 0x07, 0))
    body = info + sks
    raw = bytes((0x72, 0x05, 0x24, 0x00, 0, 0, 0, len(body))) + body
    sense = parse_sense(raw)
    assert sense.descriptor_format
    assert (sense.key, sense.asc, sense.ascq) == (5, 0x24, 0)
    assert sense.information == 0x1122334455667788
    assert sense.field_pointer == FieldPointer(7)


def test_short_fixed_sense_is_padded() -> None:
    sense = parse_sense(bytes((0x70, 0, 0x06, 0, 0, 0, 0, 0)))
    assert sense.key == SenseKey.UNIT_ATTENTION and sense.asc == 0


@pytest.mark.parametrize("raw", [b"", b"\x70", bytes((0x7F, 0, 0, 0)), bytes((0x72, 0, 0))])
def test_bad_sense_raises(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_sense(raw)


def test_copy_aborted_segment_pointer_and_segment_number() -> None:
    pointer = FieldPointer(20, cdb=False, segment=True)
    assert pointer.encode() == bytes((0xA0, 0x00, 20))  # SKSV, SD; no C/D for a segment pointer
    raw = build_fixed_sense(SenseKey.COPY_ABORTED, 0x0D, 0x02, field_pointer=pointer, command_specific=3)
    assert raw[8:12] == bytes((0, 0, 0, 3))  # no sense data offsets; SEGMENT NUMBER 3
    sense = parse_sense(raw)
    assert (sense.key, sense.command_specific, sense.field_pointer) == (SenseKey.COPY_ABORTED, 3, pointer)
    whole_list = parse_sense(build_fixed_sense(SenseKey.COPY_ABORTED, 0, 0, field_pointer=FieldPointer(52, cdb=False)))
    assert whole_list.field_pointer == FieldPointer(52, cdb=False, segment=False)
