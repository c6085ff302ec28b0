"""LogicalUnit SPC-4 commands: INQUIRY and VPD pages, MODE SENSE, REPORT SUPPORTED OPERATION
CODES, REPORT TARGET PORT GROUPS, REQUEST SENSE, unit attentions and the ALUA gate."""

from __future__ import annotations

import struct

import pytest

from sanpath.scsi import cdb
from sanpath.scsi.constants import AluaState, DesignatorType, SenseKey, Status
from sanpath.scsi.parse import (
    parse_block_limits,
    parse_device_identification,
    parse_logical_block_provisioning,
    parse_report_luns,
    parse_report_target_port_groups,
    parse_standard_inquiry,
    parse_supported_vpd_pages,
    parse_unit_serial_number,
    scsi_id,
)
from sanpath.scsi.sense import FieldPointer, parse_sense
from sanpath.target.backstore import MemoryBackstore
from sanpath.target.lu import LogicalUnit, Nexus, PortGroupInfo, ResetReason, ScsiResult, report_luns_data

NAA = bytes.fromhex("6001405abcdef0123456789abcdef012")
N1 = Nexus("iqn.2026-01.org.example:host1,i,0x400001370000", "iqn.2026-01.org.example:array,t,0x0001", 1, 1)
N2 = Nexus("iqn.2026-01.org.example:host2,i,0x400001370000", "iqn.2026-01.org.example:array,t,0x0002", 2, 2)


def make_lu(**kw: object) -> LogicalUnit:
    return LogicalUnit(MemoryBackstore(8 << 20), naa=NAA, serial="SP0001", **kw)  # type: ignore[arg-type]


def sense_of(result: ScsiResult) -> tuple[int, int, int]:
    assert result.status == Status.CHECK_CONDITION
    s = parse_sense(result.sense)
    return s.key, s.asc, s.ascq


async def test_standard_inquiry_layout() -> None:
    lu = make_lu()
    res = await lu.execute(N1, cdb.inquiry(alloc=260))
    assert res.status == Status.GOOD and len(res.data) == 74
    data = bytes(res.data)
    assert data[4] == len(data) - 5  # ADDITIONAL LENGTH matches (iscsi-test-cu Inquiry.Standard)
    inq = parse_standard_inquiry(data)
    assert (inq.peripheral_qualifier, inq.peripheral_device_type, inq.version, inq.response_data_format) == (
        0,
        0,
        6,
        2,
    )
    assert inq.tpgs == 1 and inq.hisup and inq.cmdque and inq.multip
    assert inq.vendor == "SANPATH" and inq.revision == "0001"
    assert 0x04C0 in inq.version_descriptors and 0x0460 in inq.version_descriptors
    assert not data[3] & 0xC0  # AERC / TRMTSK clear


@pytest.mark.parametrize("alloc", [0, 1, 5, 36, 255, 256])
async def test_inquiry_allocation_length_truncates(alloc: int) -> None:
    res = await make_lu().execute(N1, cdb.inquiry(alloc=alloc))
    assert res.status == Status.GOOD and len(res.data) == min(alloc, 74)


async def test_inquiry_page_without_evpd_is_invalid_field() -> None:
    res = await make_lu().execute(N1, bytes((0x12, 0, 0x80, 0, 0xFF, 0)))
    assert sense_of(res) == (SenseKey.ILLEGAL_REQUEST, 0x24, 0)
    assert parse_sense(res.sense).field_pointer == FieldPointer(2)
    res = await make_lu().execute(N1, cdb.inquiry(evpd=True, page=0xC7))
    assert sense_of(res) == (SenseKey.ILLEGAL_REQUEST, 0x24, 0)


async def test_every_supported_vpd_page_is_readable() -> None:
    lu = make_lu()
    pages = parse_supported_vpd_pages((await lu.execute(N1, cdb.inquiry(evpd=True, page=0))).data)
    assert pages == (0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2)
    for page in pages:
        res = await lu.execute(N1, cdb.inquiry(evpd=True, page=page, alloc=255))
        data = bytes(res.data)
        assert res.status == Status.GOOD and data[1] == page
        assert len(data) == 4 + int.from_bytes(data[2:4], "big")


async def test_serial_and_device_identification() -> None:
    lu = make_lu()
    serial = parse_unit_serial_number((await lu.execute(N1, cdb.inquiry(evpd=True, page=0x80))).data)
    assert serial == "SP0001"
    ids = parse_device_identification(
        (await lu.execute(N2, cdb.inquiry(evpd=True, page=0x83, alloc=512))).data
    )
    by = {(d.association, d.designator_type): d for d in ids}
    assert by[(0, DesignatorType.NAA)].value == NAA
    port = by[(1, DesignatorType.SCSI_NAME_STRING)]
    assert (
        port.text == "iqn.2026-01.org.example:array,t,0x0002" and port.piv and port.protocol_identifier == 5
    )
    assert len(port.value) % 4 == 0
    assert by[(1, DesignatorType.RELATIVE_TARGET_PORT)].value == b"\0\0\0\x02"
    assert by[(1, DesignatorType.TARGET_PORT_GROUP)].value == b"\0\0\0\x02"
    assert by[(2, DesignatorType.SCSI_NAME_STRING)].text == "iqn.2026-01.org.example:array"
    assert scsi_id(ids) == "3" + NAA.hex()


async def test_block_limits_and_provisioning_pages() -> None:
    lu = make_lu()
    raw = bytes((await lu.execute(N1, cdb.inquiry(evpd=True, page=0xB0, alloc=64))).data)
    assert raw[3] == 0x3C and len(raw) == 64
    bl = parse_block_limits(raw)
    assert 0 < bl.max_unmap_lba_count <= 1 << 20 and 0 < bl.max_unmap_block_descriptor_count <= 1 << 20
    assert bl.max_write_same_length >= 256 and not bl.wsnz and bl.max_compare_and_write_length == 255
    lbp = parse_logical_block_provisioning((await lu.execute(N1, cdb.inquiry(evpd=True, page=0xB2))).data)
    assert lbp.lbpu and lbp.lbpws and lbp.lbpws10 and lbp.lbprz and not lbp.anc_sup
    bdc = bytes((await lu.execute(N1, cdb.inquiry(evpd=True, page=0xB1))).data)
    assert bdc[4:6] == b"\x00\x01"  # non-rotating medium
    thick = make_lu(thin=False)
    bl = parse_block_limits((await thick.execute(N1, cdb.inquiry(evpd=True, page=0xB0, alloc=64))).data)
    assert bl.max_unmap_lba_count == 0 and bl.max_unmap_block_descriptor_count == 0
    assert not parse_logical_block_provisioning(
        (await thick.execute(N1, cdb.inquiry(evpd=True, page=0xB2))).data
    ).lbpu


async def test_mode_sense_6_all_pages() -> None:
    lu = make_lu()
    data = bytes((await lu.execute(N1, cdb.mode_sense_6(0x3F, alloc=255))).data)
    assert data[0] == len(data) - 1
    assert data[2] == 0x10  # DPOFUA, not write protected
    assert data[3] == 8 and struct.unpack_from(">I", data, 4)[0] == lu.num_blocks
    assert int.from_bytes(data[9:12], "big") == 512
    pages = data[12:]
    assert pages[0] == 0x08 and pages[1] == 18 and pages[2] & 0x04  # caching, WCE
    assert pages[20] == 0x0A and pages[21] == 10 and not pages[22] & 0x04  # control, D_SENSE=0
    short = await lu.execute(N1, cdb.mode_sense_6(0x3F, alloc=4))
    assert len(short.data) == 4 and short.data[0] == len(data) - 1  # length not altered by truncation


async def test_mode_sense_variants() -> None:
    lu = make_lu(read_only=True)
    data = bytes((await lu.execute(N1, cdb.mode_sense_6(0x0A, dbd=True))).data)
    assert data[2] & 0x80 and data[3] == 0 and data[4] == 0x0A and len(data) == 4 + 12
    changeable = bytes((await lu.execute(N1, cdb.mode_sense_6(0x0A, pc=1, dbd=True))).data)
    assert changeable[4:] == bytes((0x0A, 10)) + bytes(10)  # nothing changeable (SWP included)
    ms10 = bytes((await lu.execute(N1, cdb.mode_sense_10(0x08, llbaa=True))).data)
    assert int.from_bytes(ms10[0:2], "big") == len(ms10) - 2 and ms10[4] & 1 and ms10[7] == 16
    assert int.from_bytes(ms10[8:16], "big") == lu.num_blocks and ms10[24] == 0x08
    assert sense_of(await lu.execute(N1, cdb.mode_sense_6(0x08, pc=3))) == (SenseKey.ILLEGAL_REQUEST, 0x39, 0)
    assert sense_of(await lu.execute(N1, cdb.mode_sense_6(0x19))) == (SenseKey.ILLEGAL_REQUEST, 0x24, 0)
    assert sense_of(await lu.execute(N1, cdb.mode_sense_6(0x08, subpage=1))) == (
        SenseKey.ILLEGAL_REQUEST,
        0x24,
        0,
    )


async def test_unsupported_opcode_is_invalid_command_operation_code() -> None:
    lu = make_lu()
    for cdb_bytes in (bytes((0x04,)) + bytes(5), bytes((0x1B,)) + bytes(5), bytes((0x3C,)) + bytes(9)):
        assert sense_of(await lu.execute(N1, cdb_bytes)) == (SenseKey.ILLEGAL_REQUEST, 0x20, 0)
    # known opcode, unknown service action: INVALID FIELD IN CDB pointing at byte 1
    res = await lu.execute(N1, bytes((0x9E, 0x13)) + bytes(14))
    assert sense_of(res) == (SenseKey.ILLEGAL_REQUEST, 0x24, 0)
    assert parse_sense(res.sense).field_pointer == FieldPointer(1, 4)


async def test_report_supported_operation_codes() -> None:
    lu = make_lu()
    rsoc_all = bytes((0xA3, 0x0C, 0x00, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0))
    data = bytes((await lu.execute(N1, rsoc_all)).data)
    length = int.from_bytes(data[:4], "big")
    assert length == len(data) - 4 and length % 8 == 0
    entries = {
        (data[i], int.from_bytes(data[i + 2 : i + 4], "big")): data[i + 5] for i in range(4, len(data), 8)
    }
    assert (0x28, 0) in entries and entries[(0x9E, 0x10)] & 1 and entries[(0x5F, 0x06)] & 1
    one = bytes((await lu.execute(N1, bytes((0xA3, 0x0C, 0x01, 0x28, 0, 0, 0, 0, 1, 0, 0, 0)))).data)
    assert one[1] & 0x07 == 3 and int.from_bytes(one[2:4], "big") == 10
    assert one[4] == 0x28 and one[5] & 0x18 == 0x18  # DPO/FUA usage bits (DPOFUA=1)
    bad = await lu.execute(N1, bytes((0xA3, 0x0C, 0x01, 0x9E, 0, 0x10, 0, 0, 1, 0, 0, 0)))
    assert sense_of(bad) == (SenseKey.ILLEGAL_REQUEST, 0x24, 0)  # 0x9E has service actions
    sa = bytes((await lu.execute(N1, bytes((0xA3, 0x0C, 0x82, 0x9E, 0, 0x10, 0, 0, 1, 0, 0, 0)))).data)
    assert sa[1] == 0x83 and sa[4:6] == bytes((0x9E, 0x1F)) and len(sa) == 4 + 16 + 12  # with RCTD
    missing = bytes((await lu.execute(N1, bytes((0xA3, 0x0C, 0x01, 0x1B, 0, 0, 0, 0, 1, 0, 0, 0)))).data)
    assert missing[1] & 0x07 == 1


async def test_report_target_port_groups() -> None:
    groups = [
        PortGroupInfo(1, AluaState.ACTIVE_OPTIMIZED, (1,), preferred=True),
        PortGroupInfo(2, AluaState.STANDBY, (2, 3)),
    ]
    lu = make_lu(port_groups=lambda: groups, implicit_transition_time=10)
    plain = parse_report_target_port_groups((await lu.execute(N1, cdb.report_target_port_groups())).data)
    assert [(g.tpg_id, g.alua_state, g.preferred, g.relative_port_ids) for g in plain.groups] == [
        (1, 0, True, (1,)),
        (2, 2, False, (2, 3)),
    ]
    ext_res = await lu.execute(N2, cdb.report_target_port_groups(extended=True))  # allowed in standby
    ext = parse_report_target_port_groups(ext_res.data)
    assert ext.extended and ext.implicit_transition_time == 10 and ext.groups == plain.groups
    short = await lu.execute(N1, cdb.report_target_port_groups(alloc=4))
    assert int.from_bytes(short.data, "big") == (8 + 4) + (8 + 8)


async def test_alua_standby_gate() -> None:
    state = {"tpg2": AluaState.STANDBY}
    lu = make_lu(port_groups=lambda: [PortGroupInfo(1, 0, (1,)), PortGroupInfo(2, state["tpg2"], (2,))])
    assert (await lu.execute(N1, cdb.read_10(0, 1))).status == Status.GOOD
    assert sense_of(await lu.execute(N2, cdb.read_10(0, 1))) == (SenseKey.NOT_READY, 0x04, 0x0B)
    assert sense_of(await lu.execute(N2, cdb.test_unit_ready())) == (SenseKey.NOT_READY, 0x04, 0x0B)
    assert (await lu.execute(N2, cdb.inquiry())).status == Status.GOOD
    assert (await lu.execute(N2, cdb.mode_sense_6(0x08))).status == Status.GOOD
    state["tpg2"] = AluaState.UNAVAILABLE
    assert sense_of(await lu.execute(N2, cdb.mode_sense_6(0x08))) == (SenseKey.NOT_READY, 0x04, 0x0C)
    state["tpg2"] = AluaState.TRANSITIONING
    assert sense_of(await lu.execute(N2, cdb.read_16(0, 1))) == (SenseKey.NOT_READY, 0x04, 0x0A)
    assert (await lu.execute(N2, cdb.report_target_port_groups())).status == Status.GOOD
    state["tpg2"] = AluaState.ACTIVE_NON_OPTIMIZED
    assert (await lu.execute(N2, cdb.read_16(0, 1))).status == Status.GOOD


async def test_unit_attention_on_new_nexus_and_reset() -> None:
    lu = make_lu()
    lu.nexus_new(N1)
    assert (await lu.execute(N1, cdb.inquiry())).status == Status.GOOD  # INQUIRY does not consume it
    assert sense_of(await lu.execute(N1, cdb.test_unit_ready())) == (SenseKey.UNIT_ATTENTION, 0x29, 0x00)
    assert (await lu.execute(N1, cdb.test_unit_ready())).status == Status.GOOD
    await lu.execute(N2, cdb.test_unit_ready())  # N2 becomes known
    lu.reset("lun")
    for nexus in (N1, N2):
        assert sense_of(await lu.execute(nexus, cdb.read_10(0, 1))) == (SenseKey.UNIT_ATTENTION, 0x29, 0x03)
        assert (await lu.execute(nexus, cdb.read_10(0, 1))).status == Status.GOOD
    lu.reset(ResetReason.TARGET_COLD_RESET)
    assert sense_of(await lu.execute(N1, cdb.test_unit_ready())) == (SenseKey.UNIT_ATTENTION, 0x29, 0x01)
    with pytest.raises(ValueError):
        lu.reset("bogus")


async def test_request_sense_returns_and_clears_ua() -> None:
    lu = make_lu()
    await lu.execute(N1, cdb.test_unit_ready())
    lu.nexus_lost(N1)
    res = await lu.execute(N1, bytes((0x03, 0, 0, 0, 252, 0)))
    assert res.status == Status.GOOD
    assert parse_sense(res.data).key == SenseKey.UNIT_ATTENTION and (res.data[12], res.data[13]) == (
        0x29,
        0x07,
    )
    res = await lu.execute(N1, bytes((0x03, 0, 0, 0, 252, 0)))
    assert parse_sense(res.data).key == SenseKey.NO_SENSE
    assert sense_of(await lu.execute(N1, bytes((0x03, 1, 0, 0, 252, 0)))) == (
        SenseKey.ILLEGAL_REQUEST,
        0x24,
        0,
    )


async def test_alua_state_change_ua() -> None:
    lu = make_lu()
    await lu.execute(N1, cdb.test_unit_ready())
    await lu.execute(N2, cdb.test_unit_ready())
    lu.alua_state_changed(except_nexus=N2)
    assert sense_of(await lu.execute(N1, cdb.test_unit_ready())) == (SenseKey.UNIT_ATTENTION, 0x2A, 0x06)
    assert (await lu.execute(N2, cdb.test_unit_ready())).status == Status.GOOD


async def test_report_luns() -> None:
    assert parse_report_luns(report_luns_data([300, 0, 5])) == (0, 5, 300)
    data = report_luns_data([0, 256])
    assert data[:4] == (16).to_bytes(4, "big") and data[16] == 0x41
    lu = make_lu(luns=lambda: [0, 1])
    assert parse_report_luns((await lu.execute(N1, cdb.report_luns())).data) == (0, 1)


def test_config_errors() -> None:
    from sanpath.errors import ConfigError

    with pytest.raises(ConfigError, match=r"lu\.naa"):
        LogicalUnit(MemoryBackstore(4096), naa=b"\x60" * 8, serial="x")
    with pytest.raises(ConfigError, match=r"lu\.serial"):
        LogicalUnit(MemoryBackstore(4096), naa=NAA, serial="")
    LogicalUnit(
        MemoryBackstore(4096), naa=bytes.fromhex("3812345678abcdef"), serial="naa3"
    )  # locally assigned
