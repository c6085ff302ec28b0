"""CDB builders produce the SPC-4 / SBC-3 field layouts."""

from __future__ import annotations

import pytest

from sanpath.errors import LocalProtocolError
from sanpath.scsi import cdb
from sanpath.scsi.constants import PrInAction, PrOutAction, PrType


def test_test_unit_ready() -> None:
    assert cdb.test_unit_ready() == bytes(6)


def test_inquiry() -> None:
    assert cdb.inquiry() == bytes.fromhex("12 00 00 00 ff 00")
    assert cdb.inquiry(evpd=True, page=0x83, alloc=0x1234) == bytes.fromhex("12 01 83 12 34 00")
    with pytest.raises(LocalProtocolError):
        cdb.inquiry(page=0x80)
    with pytest.raises(LocalProtocolError):
        cdb.inquiry(alloc=70000)


def test_read_capacity() -> None:
    assert cdb.read_capacity_10() == bytes((0x25,)) + bytes(9)
    rc16 = cdb.read_capacity_16(32)
    assert len(rc16) == 16 and rc16[:2] == bytes((0x9E, 0x10)) and rc16[10:14] == (32).to_bytes(4, "big")


def test_report_luns() -> None:
    assert cdb.report_luns(alloc=256) == bytes.fromhex("a0 00 00 000000 00000100 00 00")


def test_read_write_10_16() -> None:
    assert cdb.read_10(0x01020304, 8) == bytes.fromhex("28 00 01020304 00 0008 00")
    assert cdb.write_10(5, 1, fua=True) == bytes.fromhex("2a 08 00000005 00 0001 00")
    r16 = cdb.read_16(1 << 40, 0x10000, dpo=True)
    assert r16 == bytes.fromhex("88 10 0000010000000000 00010000 00 00")
    assert cdb.write_16(7, 2, fua=True)[:2] == bytes((0x8A, 0x08))
    with pytest.raises(LocalProtocolError):
        cdb.read_10(1 << 32, 1)


def test_synchronize_cache() -> None:
    assert cdb.synchronize_cache_10(immed=True) == bytes.fromhex("35 02 00000000 00 0000 00")
    assert cdb.synchronize_cache_16(3, 4)[0] == 0x91


def test_unmap_and_parameter_list() -> None:
    params = cdb.unmap_parameter_list([(1, 2), (0x100, 8)])
    assert len(params) == 8 + 32
    assert params[:4] == bytes.fromhex("0026 0020")
    assert params[8:24] == bytes.fromhex("0000000000000001 00000002 00000000")
    assert cdb.unmap(len(params), anchor=True) == bytes.fromhex("42 01 00000000 00 0028 00")


def test_write_same_16() -> None:
    assert cdb.write_same_16(9, 3, unmap=True)[:2] == bytes((0x93, 0x08))
    assert cdb.write_same_16(0, 0, ndob=True, anchor=True)[1] == 0x11


def test_rtpg_and_mode_sense() -> None:
    assert cdb.report_target_port_groups(1024, extended=True) == bytes.fromhex(
        "a3 2a 00000000 00000400 00 00"
    )
    assert cdb.mode_sense_6(0x3F, pc=2, dbd=True, alloc=192) == bytes.fromhex("1a 08 bf 00 c0 00")
    assert cdb.mode_sense_10(0x08, llbaa=True, alloc=512) == bytes.fromhex("5a 10 08 00 000000 0200 00")


def test_persistent_reserve() -> None:
    assert cdb.persistent_reserve_in(PrInAction.READ_FULL_STATUS, 8192) == bytes.fromhex(
        "5e 03 0000000000 2000 00"
    )
    out = cdb.persistent_reserve_out(PrOutAction.RESERVE, pr_type=PrType.EXCLUSIVE_ACCESS)
    assert out == bytes.fromhex("5f 01 03 0000 00000018 00")
    params = cdb.prout_parameter_list(key=1, sa_key=2, aptpl=True)
    assert len(params) == 24 and params[7] == 1 and params[15] == 2 and params[20] == 1


def test_extended_copy_and_receive_copy_results() -> None:
    assert cdb.extended_copy(0x1234) == bytes.fromhex("83 00 0000000000000000 00001234 00 00")
    assert cdb.receive_copy_results(3, list_id=7, alloc=512) == bytes.fromhex("84 03 07 00000000000000 00000200 00 00")
    with pytest.raises(LocalProtocolError):
        cdb.receive_copy_results(3, list_id=256)


def test_xcopy_parameter_list_layout() -> None:
    naa = bytes.fromhex("3a00000000000001")
    cscd = cdb.cscd_identification(naa, 4096)
    assert len(cscd) == 32 and cscd[:4] == bytes((0xE4, 0, 0, 0))
    assert cscd[4:8] == bytes((0x01, 0x03, 0x00, 8)) and cscd[8:16] == naa and cscd[16:28] == bytes(12)
    assert cscd[28:] == bytes((0, 0, 0x10, 0))  # PAD 0, DISK BLOCK LENGTH 4096
    seg = cdb.b2b_segment(0, 1, 0x800, 5, 1 << 33, dc=True)
    assert seg == bytes.fromhex("02 02 0018 0000 0001 0000 0800 0000000000000005 0000000200000000")
    plist = cdb.xcopy_parameter_list([cscd, cscd], [seg], list_id=9, list_id_usage=0b10)
    assert plist[:16] == bytes.fromhex("09 10 0040 00000000 0000001c 00000000") and len(plist) == 16 + 64 + 28
    with pytest.raises(LocalProtocolError):
        cdb.cscd_identification(bytes(21), 512)
