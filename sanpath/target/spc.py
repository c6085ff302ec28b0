"""SPC-4 primary commands: TEST UNIT READY, REQUEST SENSE, INQUIRY (standard data and VPD pages
00h/80h/83h/B0h/B1h/B2h), MODE SENSE (6)/(10), REPORT LUNS, REPORT TARGET PORT GROUPS and
REPORT SUPPORTED OPERATION CODES.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sanpath.scsi import constants as c
from sanpath.scsi.constants import Association, CodeSet, DesignatorType, ModePage, PageControl, VpdPage
from sanpath.scsi.parse import encode_lun
from sanpath.scsi.sense import build_fixed_sense
from sanpath.target.common import (
    GOOD,
    CheckCondition,
    Command,
    ScsiResult,
    alloc_trim,
    invalid_field,
)
from sanpath.target.sbc import atomic_limits

if TYPE_CHECKING:
    from sanpath.target.lu import CommandInfo, LogicalUnit


async def test_unit_ready(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """TEST UNIT READY (SPC-4 6.47): the medium is always present."""
    return ScsiResult(GOOD)


async def request_sense(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """REQUEST SENSE (SPC-4 6.39): a pending unit attention (consumed) or NO SENSE; fixed format."""
    if cmd.cdb[1] & 0x01:  # DESC=1: descriptor format sense is not supported
        raise invalid_field(1, 0)
    pending = lu.pop_ua(cmd.nexus.key)
    key, pair = (
        (c.SenseKey.UNIT_ATTENTION, pending) if pending else (c.SenseKey.NO_SENSE, c.NO_ADDITIONAL_SENSE)
    )
    return ScsiResult(GOOD, alloc_trim(build_fixed_sense(key, *pair), cmd.cdb[4]))


# --- INQUIRY (SPC-4 6.6) ---------------------------------------------------------------------
def _ascii_field(text: str, width: int) -> bytes:
    raw = text.encode("ascii", "replace")[:width]
    return raw.ljust(width, b" ")


def standard_inquiry(lu: LogicalUnit) -> bytes:
    """Standard INQUIRY data (SPC-4 6.6.2), 74 bytes: SPC-4 (VERSION 06h), HISUP, response data
    format 2, TPGS from the LU's profile (01b by default: implicit ALUA only; 11b for the alua
    profile with SET TARGET PORT GROUPS; 00b for rdac), 3PC=1 (EXTENDED COPY, sanpath.target.xcopy),
    MULTIP=1, CMDQUE=1, and version descriptors SAM-5, iSCSI, SPC-4, SBC-3 (SBC-3 tells
    iscsi-test-cu to run its SBC-3 checks)."""
    data = bytearray(74)
    data[0] = c.PeripheralDeviceType.DIRECT_ACCESS
    data[2] = 0x06
    data[3] = 0x10 | 0x02
    data[4] = len(data) - 5
    data[5] = lu.profile.tpgs << 4 | 0x08  # TPGS, 3PC
    data[6] = 0x10
    data[7] = 0x02
    data[8:16] = _ascii_field(lu.vendor, 8)
    data[16:32] = _ascii_field(lu.product, 16)
    data[32:36] = _ascii_field(lu.revision, 4)
    for i, v in enumerate(
        (
            c.VersionDescriptor.SAM_5,
            c.VersionDescriptor.ISCSI,
            c.VersionDescriptor.SPC_4,
            c.VersionDescriptor.SBC_3,
        )
    ):
        struct.pack_into(">H", data, 58 + 2 * i, v)
    return bytes(data)


def no_lu_inquiry() -> bytes:
    """Standard INQUIRY data for a LUN with no logical unit behind it (SPC-4 4.6.4, 6.6.2): peripheral
    qualifier 011b with device type 1Fh, VERSION 06h (SPC-4), response data format 2; 36 bytes."""
    data = bytearray(36)
    data[0] = c.PeripheralQualifier.NOT_CAPABLE << 5 | c.PeripheralDeviceType.UNKNOWN
    data[2] = 0x06
    data[3] = 0x02
    data[4] = len(data) - 5
    return bytes(data)


def _vpd(page: int, body: bytes) -> bytes:
    return struct.pack(">BBH", c.PeripheralDeviceType.DIRECT_ACCESS, page, len(body)) + body


def designator(code_set: int, association: int, dtype: int, value: bytes, *, piv: bool = False) -> bytes:
    """One designation descriptor (SPC-4 7.8.6.1); PIV=1 makes the protocol identifier (iSCSI) valid."""
    b0 = (c.PROTOCOL_ID_ISCSI << 4 if piv else 0) | code_set
    b1 = (0x80 if piv else 0) | (association << 4) | dtype
    return struct.pack(">BBxB", b0, b1, len(value)) + value


def _scsi_name(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return raw + bytes(-len(raw) % 4)  # SCSI name string: NUL-terminated, padded to 4 (SPC-4 7.8.6.11)


def _vpd_supported(lu: LogicalUnit, cmd: Command) -> bytes:
    return bytes(sorted({*_VPD_BUILDERS, *lu.profile.vpd_pages}))


def _vpd_serial(lu: LogicalUnit, cmd: Command) -> bytes:
    return lu.serial.encode("ascii", "replace")


def _vpd_device_identification(lu: LogicalUnit, cmd: Command) -> bytes:
    """Device identification (SPC-4 7.8.6): LU NAA, target port name, relative target port,
    target port group, and the target device name."""
    n = cmd.nexus
    return b"".join(
        (
            designator(CodeSet.BINARY, Association.LOGICAL_UNIT, DesignatorType.NAA, lu.naa),
            designator(
                CodeSet.UTF8,
                Association.TARGET_PORT,
                DesignatorType.SCSI_NAME_STRING,
                _scsi_name(n.target_port),
                piv=True,
            ),
            designator(
                CodeSet.BINARY,
                Association.TARGET_PORT,
                DesignatorType.RELATIVE_TARGET_PORT,
                struct.pack(">xxH", n.relative_port_id),
                piv=True,
            ),
            designator(
                CodeSet.BINARY,
                Association.TARGET_PORT,
                DesignatorType.TARGET_PORT_GROUP,
                struct.pack(">xxH", n.tpg_id),
                piv=True,
            ),
            designator(
                CodeSet.UTF8,
                Association.TARGET_DEVICE,
                DesignatorType.SCSI_NAME_STRING,
                _scsi_name(n.target_name),
                piv=True,
            ),
        )
    )


def _vpd_block_limits(lu: LogicalUnit, cmd: Command) -> bytes:
    """Block limits (SBC-3 6.5.3, the atomic fields of SBC-4 6.6.4), page length 3Ch.  WSNZ=0: WRITE
    SAME with 0 blocks runs to the end.  The physical block is the optimal transfer and unmap
    granularity.  Unmap limits are zero when the LU is not thin provisioned (LBPU=0).  Atomic writes:
    see sbc.atomic_limits; no atomic boundaries (the last two fields are zero)."""
    lim = lu.limits
    per_physical = 1 << lu.lbppbe
    unmap_lbas, unmap_descs, gran = (
        (lim.max_unmap_lba_count, lim.max_unmap_descriptors, max(lim.optimal_unmap_granularity, per_physical))
        if lu.thin
        else (0, 0, 0)
    )
    atomic = atomic_limits(lu)
    body = struct.pack(
        ">BBHIIIIIIIQIII",
        0,  # WSNZ=0
        lim.max_compare_and_write_blocks,
        per_physical,  # optimal transfer length granularity
        lim.max_transfer_blocks,
        lim.optimal_transfer_blocks,
        0,  # maximum prefetch length
        unmap_lbas,
        unmap_descs,
        gran,
        0,  # UGAVALID=0
        lim.max_write_same_blocks,
        atomic.max_transfer,
        atomic.alignment,
        atomic.granularity,
    )
    return body.ljust(0x3C, b"\0")


def _vpd_block_device_characteristics(lu: LogicalUnit, cmd: Command) -> bytes:
    """Block device characteristics (SBC-3 6.5.2): non-rotating medium, form factor not reported."""
    return struct.pack(">HBB", 0x0001, 0, 0).ljust(0x3C, b"\0")


def _vpd_logical_block_provisioning(lu: LogicalUnit, cmd: Command) -> bytes:
    """Logical block provisioning (SBC-3 6.5.4): thin LUs set LBPU, LBPWS, LBPWS10 and LBPRZ (an
    unmapped block reads as zeros), provisioning type 010b (thin); ANC_SUP=0, DP=0."""
    if not lu.thin:
        return bytes(4)
    return bytes((0, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0))


_VPD_BUILDERS: dict[int, Callable[[LogicalUnit, Command], bytes]] = {
    VpdPage.SUPPORTED_VPD_PAGES: _vpd_supported,
    VpdPage.UNIT_SERIAL_NUMBER: _vpd_serial,
    VpdPage.DEVICE_IDENTIFICATION: _vpd_device_identification,
    VpdPage.BLOCK_LIMITS: _vpd_block_limits,
    VpdPage.BLOCK_DEVICE_CHARACTERISTICS: _vpd_block_device_characteristics,
    VpdPage.LOGICAL_BLOCK_PROVISIONING: _vpd_logical_block_provisioning,
}


async def inquiry(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """INQUIRY (SPC-4 6.6): EVPD=0 with a page code is INVALID FIELD IN CDB (byte 2)."""
    evpd, page, alloc = cmd.cdb[1] & 0x01, cmd.cdb[2], cmd.u16(3)
    if cmd.cdb[1] & 0x02:  # CMDDT is obsolete
        raise invalid_field(1, 1)
    if not evpd:
        if page:
            raise invalid_field(2)
        return ScsiResult(GOOD, alloc_trim(standard_inquiry(lu), alloc))
    builder = _VPD_BUILDERS.get(page) or lu.profile.vpd_pages.get(page)
    if builder is None:
        raise invalid_field(2)
    return ScsiResult(GOOD, alloc_trim(_vpd(page, builder(lu, cmd)), alloc))


# --- MODE SENSE (SPC-4 6.11 / 6.12) ----------------------------------------------------------
def _caching_page(lu: LogicalUnit, pc: int) -> bytes:
    """Caching mode page (SBC-3 6.4.5): WCE=1 (writes may sit in a cache until SYNCHRONIZE CACHE
    or FUA); nothing is changeable."""
    page = bytearray(20)
    page[0], page[1] = ModePage.CACHING, 18
    if pc != PageControl.CHANGEABLE:
        page[2] = 0x04 if lu.write_cache else 0x00
    return bytes(page)


def _control_page(lu: LogicalUnit, pc: int) -> bytes:
    """Control mode page (SPC-4 7.5.8): TST=000b, QUEUE ALGORITHM MODIFIER=1 (unrestricted
    reordering), D_SENSE=0 (fixed format sense), SWP=0, BUSY TIMEOUT PERIOD unlimited; nothing
    is changeable (so iscsi-test-cu skips its SWP test)."""
    page = bytearray(12)
    page[0], page[1] = ModePage.CONTROL, 10
    if pc != PageControl.CHANGEABLE:
        page[3] = 0x10
        page[8:10] = b"\xff\xff"
    return bytes(page)


_MODE_PAGES: dict[int, Callable[[LogicalUnit, int], bytes]] = {
    ModePage.CACHING: _caching_page,
    ModePage.CONTROL: _control_page,
}


def _mode_pages(lu: LogicalUnit, cmd: Command) -> bytes:
    pc, page, subpage = cmd.cdb[2] >> 6, cmd.cdb[2] & 0x3F, cmd.cdb[3]
    if pc == PageControl.SAVED:
        raise CheckCondition(c.SenseKey.ILLEGAL_REQUEST, c.SAVING_PARAMETERS_NOT_SUPPORTED)
    if page == ModePage.ALL_PAGES:
        if subpage not in (0x00, 0xFF):
            raise invalid_field(3)
        extra = b"".join(build(lu, cmd, 0, pc) for _, build in sorted(lu.profile.mode_pages.items()))
        return b"".join(build(lu, pc) for _, build in sorted(_MODE_PAGES.items())) + extra
    if page in lu.profile.mode_pages:
        return lu.profile.mode_pages[page](lu, cmd, subpage, pc)
    build = _MODE_PAGES.get(page)
    if build is None:
        raise invalid_field(2, 5)
    if subpage not in (0x00, 0xFF):
        raise invalid_field(3)
    return build(lu, pc)


def _device_specific(lu: LogicalUnit) -> int:
    """Mode parameter header DEVICE-SPECIFIC PARAMETER for block devices (SBC-3 6.4.2): WP, DPOFUA."""
    return (0x80 if lu.read_only else 0) | 0x10


async def mode_sense_6(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    dbd = cmd.cdb[1] & 0x08
    pages = _mode_pages(lu, cmd)
    desc = (
        b""
        if dbd
        else struct.pack(">IxBH", min(lu.num_blocks, 0xFFFFFFFF), lu.block_size >> 16, lu.block_size & 0xFFFF)
    )
    body = bytes((0, _device_specific(lu), len(desc))) + desc + pages
    data = bytes((len(body),)) + body
    return ScsiResult(GOOD, alloc_trim(data, cmd.cdb[4]))


async def mode_sense_10(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    dbd, llbaa = cmd.cdb[1] & 0x08, cmd.cdb[1] & 0x10
    pages = _mode_pages(lu, cmd)
    if dbd:
        desc = b""
    elif llbaa:
        desc = struct.pack(">Q4xI", lu.num_blocks, lu.block_size)
    else:
        desc = struct.pack(
            ">IxBH", min(lu.num_blocks, 0xFFFFFFFF), lu.block_size >> 16, lu.block_size & 0xFFFF
        )
    body = (
        struct.pack(">BBBxH", 0, _device_specific(lu), 0x01 if desc and llbaa else 0, len(desc))
        + desc
        + pages
    )
    data = struct.pack(">H", len(body)) + body
    return ScsiResult(GOOD, alloc_trim(data, cmd.u16(7)))


# --- REPORT LUNS (SPC-4 6.33) ----------------------------------------------------------------
def report_luns_data(luns: Sequence[int]) -> bytes:
    """REPORT LUNS parameter data: peripheral device addressing for LUN < 256, flat space above."""
    body = b"".join(encode_lun(n) for n in sorted(luns))
    return struct.pack(">I4x", len(body)) + body


async def report_luns(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    if cmd.cdb[2] not in (0x00, 0x01, 0x02):
        raise invalid_field(2)
    luns = lu.luns() if lu.luns is not None else [0]
    return ScsiResult(GOOD, alloc_trim(report_luns_data(luns), cmd.u32(6)))


# --- REPORT TARGET PORT GROUPS (SPC-4 6.37) --------------------------------------------------
_SUPPORTED_STATES = 0x80 | 0x08 | 0x04 | 0x02 | 0x01  # T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP


async def report_target_port_groups(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    fmt = cmd.cdb[1] >> 5
    if fmt not in (0b000, 0b001):
        raise invalid_field(1, 7)
    body = bytearray()
    for g in lu.port_groups():
        body += struct.pack(
            ">BBHxBxB",
            (0x80 if g.preferred else 0) | (g.alua_state & 0x0F),
            _SUPPORTED_STATES,
            g.tpg_id,
            0,
            len(g.relative_port_ids),
        )
        for rp in g.relative_port_ids:
            body += struct.pack(">xxH", rp)
    if fmt == 0b001:  # extended header: FORMAT TYPE 1, IMPLICIT TRANSITION TIME
        data = struct.pack(">IBBxx", len(body) + 4, 0x10, lu.implicit_transition_time) + bytes(body)
    else:
        data = struct.pack(">I", len(body)) + bytes(body)
    return ScsiResult(GOOD, alloc_trim(data, cmd.u32(6)))


# --- REPORT SUPPORTED OPERATION CODES (SPC-4 6.35) -------------------------------------------
_TIMEOUTS = struct.pack(">HxBII", 0x0A, 0, 0, 0)  # command timeouts descriptor: no timeouts reported


def _all_commands_descriptor(info: CommandInfo, rctd: bool) -> bytes:
    flags = (0x02 if rctd else 0) | (0x01 if info.service_action is not None else 0)
    out = struct.pack(">BxHxBH", info.opcode, info.service_action or 0, flags, len(info.usage))
    return out + (_TIMEOUTS if rctd else b"")


async def report_supported_operation_codes(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    rctd, option = bool(cmd.cdb[2] & 0x80), cmd.cdb[2] & 0x07
    opcode, sa, alloc = cmd.cdb[3], cmd.u16(4), cmd.u32(6)
    table = lu.command_table
    if option == 0b000:
        body = b"".join(_all_commands_descriptor(i, rctd) for i in table)
        data = struct.pack(">I", len(body)) + body
        return ScsiResult(GOOD, alloc_trim(data, alloc))
    if option not in (0b001, 0b010):
        raise invalid_field(2, 2)
    matches = [i for i in table if i.opcode == opcode]
    has_sa = any(i.service_action is not None for i in matches)
    if option == 0b001 and has_sa:
        raise invalid_field(2, 2)  # SPC-4 6.35.2: the opcode has service actions
    if option == 0b010 and matches and not has_sa:
        raise invalid_field(2, 2)
    info = next((i for i in matches if option == 0b001 or i.service_action == sa), None)
    if info is None:
        data = bytes((0, 0x01, 0, 0))  # SUPPORT 001b: not supported
    else:
        data = struct.pack(">xBH", (0x80 if rctd else 0) | 0x03, len(info.usage)) + info.usage
        data += _TIMEOUTS if rctd else b""
    return ScsiResult(GOOD, alloc_trim(data, alloc))
