"""Response parsers and the SCSIid rule."""

from __future__ import annotations

import struct

import pytest

from sanpath.errors import RemoteProtocolError
from sanpath.scsi.constants import Association, CodeSet, DesignatorType
from sanpath.scsi.parse import (
    Designator,
    decode_lun,
    encode_lun,
    parse_block_limits,
    parse_copy_operating_parameters,
    parse_copy_status,
    parse_device_identification,
    parse_logical_block_provisioning,
    parse_read_capacity_10,
    parse_read_capacity_16,
    parse_report_luns,
    parse_report_target_port_groups,
    parse_standard_inquiry,
    parse_supported_vpd_pages,
    parse_unit_serial_number,
    scsi_id,
)

NAA6 = bytes.fromhex("6001405abcdef0123456789abcdef012")


def _desc(code_set: int, assoc: int, dtype: int, value: bytes, piv: bool = False) -> bytes:
    return (
        bytes(((0x50 if piv else 0) | code_set, (0x80 if piv else 0) | assoc << 4 | dtype, 0, len(value)))
        + value
    )


def _vpd(page: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0, page, len(body)) + body


def test_standard_inquiry() -> None:
    raw = bytearray(74)
    raw[0], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7] = 0x00, 6, 0x12, 69, 0x10, 0x10, 0x02
    raw[8:16] = b"SANPATH "
    raw[16:32] = b"VIRTUAL-DISK    "
    raw[32:36] = b"0001"
    struct.pack_into(">HH", raw, 58, 0x0460, 0x04C0)
    inq = parse_standard_inquiry(bytes(raw))
    assert (inq.peripheral_qualifier, inq.peripheral_device_type, inq.version) == (0, 0, 6)
    assert inq.tpgs == 1 and inq.hisup and inq.multip and inq.cmdque and not inq.protect
    assert (inq.vendor, inq.product, inq.revision) == ("SANPATH", "VIRTUAL-DISK", "0001")
    assert inq.version_descriptors == (0x0460, 0x04C0)
    with pytest.raises(RemoteProtocolError):
        parse_standard_inquiry(bytes(20))


def test_supported_and_serial_pages() -> None:
    assert parse_supported_vpd_pages(_vpd(0x00, bytes((0, 0x80, 0x83)))) == (0, 0x80, 0x83)
    assert parse_unit_serial_number(_vpd(0x80, b"SN123  ")) == "SN123"
    with pytest.raises(RemoteProtocolError):
        parse_unit_serial_number(_vpd(0x83, b"x"))


def test_device_identification() -> None:
    body = (
        _desc(1, 0, 3, NAA6)
        + _desc(3, 1, 8, b"iqn.t,t,0x0001\0\0", piv=True)
        + _desc(1, 1, 4, b"\0\0\0\2", True)
    )
    ds = parse_device_identification(_vpd(0x83, body))
    assert ds[0] == Designator(0, CodeSet.BINARY, False, Association.LOGICAL_UNIT, DesignatorType.NAA, NAA6)
    assert ds[1].text == "iqn.t,t,0x0001" and ds[1].piv and ds[1].protocol_identifier == 5
    assert ds[2].designator_type == DesignatorType.RELATIVE_TARGET_PORT and ds[2].value == b"\0\0\0\2"


def test_block_limits_and_provisioning() -> None:
    body = struct.pack(">BBHIIIIIIIQ", 0, 255, 1, 65536, 2048, 0, 1 << 20, 256, 8, 0x80000000 | 4, 1 << 20)
    bl = parse_block_limits(_vpd(0xB0, body.ljust(0x3C, b"\0")))
    assert bl.max_compare_and_write_length == 255 and bl.max_transfer_length == 65536
    assert bl.max_unmap_lba_count == 1 << 20 and bl.max_unmap_block_descriptor_count == 256
    assert bl.optimal_unmap_granularity == 8 and bl.unmap_granularity_alignment_valid
    assert bl.unmap_granularity_alignment == 4 and bl.max_write_same_length == 1 << 20
    lbp = parse_logical_block_provisioning(_vpd(0xB2, bytes((0, 0xE4, 0x02, 0))))
    assert lbp.lbpu and lbp.lbpws and lbp.lbpws10 and lbp.lbprz and not lbp.anc_sup
    assert lbp.provisioning_type == 2


def test_read_capacity() -> None:
    rc10 = parse_read_capacity_10(struct.pack(">II", 2047, 512))
    assert rc10.blocks == 2048 and rc10.size == 1 << 20
    rc16 = parse_read_capacity_16(struct.pack(">QIBBBB", (1 << 33) - 1, 4096, 0, 3, 0xC0, 0) + bytes(16))
    assert rc16.blocks == 1 << 33 and rc16.lbppbe == 3 and rc16.lbpme and rc16.lbprz
    assert not rc16.prot_en


@pytest.mark.parametrize("lun", [0, 1, 255, 256, 1000, 16383])
def test_lun_round_trip(lun: int) -> None:
    entry = encode_lun(lun)
    assert len(entry) == 8 and decode_lun(entry) == lun
    assert (entry[0] >> 6) == (0 if lun < 256 else 1)


def test_report_luns_and_bad_address_method() -> None:
    data = struct.pack(">I4x", 24) + encode_lun(0) + encode_lun(7) + encode_lun(300)
    assert parse_report_luns(data) == (0, 7, 300)
    with pytest.raises(RemoteProtocolError):
        decode_lun(bytes((0x80, 1)) + bytes(6))
    with pytest.raises(ValueError):
        encode_lun(1 << 14)


def test_report_target_port_groups_both_formats() -> None:
    groups = (
        struct.pack(">BBHxBxB", 0x80, 0x8F, 1, 0, 1)
        + struct.pack(">xxH", 1)
        + struct.pack(">BBHxBxB", 0x02, 0x8F, 2, 2, 2)
        + struct.pack(">xxHxxH", 2, 3)
    )
    plain = parse_report_target_port_groups(struct.pack(">I", len(groups)) + groups)
    assert not plain.extended
    assert [(g.tpg_id, g.alua_state, g.preferred, g.relative_port_ids) for g in plain.groups] == [
        (1, 0, True, (1,)),
        (2, 2, False, (2, 3)),
    ]
    ext = parse_report_target_port_groups(struct.pack(">IBBxx", len(groups) + 4, 0x10, 7) + groups)
    assert ext.extended and ext.implicit_transition_time == 7 and ext.groups == plain.groups


def test_scsi_id_prefers_naa_then_eui_then_t10() -> None:
    naa = Designator(0, CodeSet.BINARY, False, 0, DesignatorType.NAA, NAA6)
    naa5 = Designator(0, CodeSet.BINARY, False, 0, DesignatorType.NAA, bytes.fromhex("5000c50012345678"))
    eui = Designator(0, CodeSet.BINARY, False, 0, DesignatorType.EUI64, bytes.fromhex("0011223344556677"))
    t10 = Designator(0, CodeSet.ASCII, False, 0, DesignatorType.T10_VENDOR_ID, b"VENDOR  PRODUCT 42")
    port = Designator(5, CodeSet.BINARY, True, Association.TARGET_PORT, DesignatorType.NAA, bytes(16))
    assert scsi_id([t10, eui, naa5, naa, port]) == "3" + NAA6.hex()
    assert scsi_id([t10, eui, port]) == "20011223344556677"
    assert scsi_id([t10]) == "1VENDOR  PRODUCT 42"
    assert scsi_id([port], "SERIAL1") == "SSERIAL1"  # a target-port NAA does not name the LU
    assert scsi_id([], _vpd(0x80, b"ABC"), vendor="SANPATH", product="DISK") == "SSANPATH DISK            ABC"
    assert scsi_id(None) == ""


def test_scsi_id_from_raw_page() -> None:
    page = _vpd(0x83, _desc(1, 0, 3, NAA6))
    assert scsi_id(page) == "36001405abcdef0123456789abcdef012"


def test_receive_copy_results_data() -> None:
    status = parse_copy_status(bytes.fromhex("00000008 81 0002 01 00000400"))
    assert (status.copy_manager_status, status.held_data_discarded, status.segments_processed) == (1, True, 2)
    assert status.bytes_transferred == 1024 << 10
    body = bytes(4) + bytes.fromhex("0008 0040 00001000 10000000 00000000 00000000 00000000 0000 ffff ff 09 00 00")
    body += bytes(3) + bytes((2, 0x02, 0xE4))
    op = parse_copy_operating_parameters(len(body).to_bytes(4, "big") + body)
    assert (op.max_cscd_descriptors, op.max_segment_descriptors, op.max_descriptor_list_length) == (8, 64, 4096)
    assert (op.max_segment_length, op.data_segment_granularity, op.implemented_descriptors) == (1 << 28, 9, (2, 0xE4))
    with pytest.raises(RemoteProtocolError):
        parse_copy_status(bytes(8))
