"""Response parsers: INQUIRY (standard and VPD 00h/80h/83h/B0h/B2h), READ CAPACITY (10)/(16),
REPORT LUNS, REPORT TARGET PORT GROUPS and RECEIVE COPY RESULTS (COPY STATUS, OPERATING
PARAMETERS), each into a frozen slotted dataclass, plus ``scsi_id``.

Parsers accept data truncated by the allocation length where the standard allows it and raise
:class:`RemoteProtocolError` (naming the SPC/SBC section) when a response cannot be decoded.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from sanpath.errors import RemoteProtocolError
from sanpath.scsi.constants import Association, CodeSet, DesignatorType, VpdPage


def _need(data: bytes | memoryview, n: int, what: str) -> bytes:
    raw = bytes(data)
    if len(raw) < n:
        raise RemoteProtocolError(f"{what}: got {len(raw)} bytes, need at least {n}")
    return raw


def _ascii(raw: bytes) -> str:
    return raw.decode("ascii", "replace").rstrip(" \0")


# --- standard INQUIRY (SPC-4 6.6.2) -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StandardInquiry:
    peripheral_qualifier: int
    peripheral_device_type: int
    removable: bool
    version: int
    response_data_format: int
    hisup: bool
    tpgs: int
    protect: bool
    multip: bool
    cmdque: bool
    vendor: str
    product: str
    revision: str
    version_descriptors: tuple[int, ...]


def parse_standard_inquiry(data: bytes | memoryview) -> StandardInquiry:
    raw = _need(data, 36, "standard INQUIRY data (SPC-4 6.6.2)")
    total = min(len(raw), raw[4] + 5)
    descriptors = tuple(
        v for v in (int.from_bytes(raw[i : i + 2], "big") for i in range(58, min(total, 74) - 1, 2)) if v
    )
    return StandardInquiry(
        peripheral_qualifier=raw[0] >> 5,
        peripheral_device_type=raw[0] & 0x1F,
        removable=bool(raw[1] & 0x80),
        version=raw[2],
        response_data_format=raw[3] & 0x0F,
        hisup=bool(raw[3] & 0x10),
        tpgs=(raw[5] >> 4) & 0x3,
        protect=bool(raw[5] & 0x01),
        multip=bool(raw[6] & 0x10),
        cmdque=bool(raw[7] & 0x02),
        vendor=_ascii(raw[8:16]),
        product=_ascii(raw[16:32]),
        revision=_ascii(raw[32:36]),
        version_descriptors=descriptors,
    )


def _vpd_body(data: bytes | memoryview, page: int) -> bytes:
    raw = _need(data, 4, f"VPD page {page:02x}h header (SPC-4 7.8.1)")
    if raw[1] != page:
        raise RemoteProtocolError(f"asked for VPD page {page:02x}h, got page {raw[1]:02x}h")
    length = int.from_bytes(raw[2:4], "big")
    return raw[4 : 4 + length]


# --- VPD 00h / 80h ---------------------------------------------------------------------------
def parse_supported_vpd_pages(data: bytes | memoryview) -> tuple[int, ...]:
    """Supported VPD pages (SPC-4 7.8.16)."""
    return tuple(_vpd_body(data, VpdPage.SUPPORTED_VPD_PAGES))


def parse_unit_serial_number(data: bytes | memoryview) -> str:
    """Unit serial number (SPC-4 7.8.17)."""
    return _vpd_body(data, VpdPage.UNIT_SERIAL_NUMBER).decode("ascii", "replace").strip(" \0")


# --- VPD 83h (SPC-4 7.8.6) -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Designator:
    protocol_identifier: int
    code_set: int
    piv: bool
    association: int
    designator_type: int
    value: bytes

    @property
    def text(self) -> str:
        """The value as text for ASCII / UTF-8 code sets (NULs stripped)."""
        return self.value.decode("utf-8", "replace").rstrip("\0")


def parse_device_identification(data: bytes | memoryview) -> tuple[Designator, ...]:
    body = _vpd_body(data, VpdPage.DEVICE_IDENTIFICATION)
    out: list[Designator] = []
    pos = 0
    while pos + 4 <= len(body):
        b0, b1, length = body[pos], body[pos + 1], body[pos + 3]
        value = body[pos + 4 : pos + 4 + length]
        if len(value) < length:
            break
        out.append(
            Designator(
                protocol_identifier=b0 >> 4,
                code_set=b0 & 0x0F,
                piv=bool(b1 & 0x80),
                association=(b1 >> 4) & 0x3,
                designator_type=b1 & 0x0F,
                value=value,
            )
        )
        pos += 4 + length
    return tuple(out)


# --- VPD B0h (SBC-3 6.5.3) -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BlockLimits:
    wsnz: bool
    max_compare_and_write_length: int
    optimal_transfer_length_granularity: int
    max_transfer_length: int
    optimal_transfer_length: int
    max_prefetch_length: int
    max_unmap_lba_count: int
    max_unmap_block_descriptor_count: int
    optimal_unmap_granularity: int
    unmap_granularity_alignment_valid: bool
    unmap_granularity_alignment: int
    max_write_same_length: int
    max_atomic_transfer_length: int = 0  # SBC-4 6.6.4
    atomic_alignment: int = 0
    atomic_transfer_length_granularity: int = 0


def parse_block_limits(data: bytes | memoryview) -> BlockLimits:
    body = _vpd_body(data, VpdPage.BLOCK_LIMITS).ljust(0x3C, b"\0")
    f = struct.unpack_from(">BBHIIIIIIIQIII", body, 0)
    return BlockLimits(
        wsnz=bool(f[0] & 1),
        max_compare_and_write_length=f[1],
        optimal_transfer_length_granularity=f[2],
        max_transfer_length=f[3],
        optimal_transfer_length=f[4],
        max_prefetch_length=f[5],
        max_unmap_lba_count=f[6],
        max_unmap_block_descriptor_count=f[7],
        optimal_unmap_granularity=f[8],
        unmap_granularity_alignment_valid=bool(f[9] & 0x80000000),
        unmap_granularity_alignment=f[9] & 0x7FFFFFFF,
        max_write_same_length=f[10],
        max_atomic_transfer_length=f[11],
        atomic_alignment=f[12],
        atomic_transfer_length_granularity=f[13],
    )


# --- VPD B2h (SBC-3 6.5.4) -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LogicalBlockProvisioning:
    threshold_exponent: int
    lbpu: bool
    lbpws: bool
    lbpws10: bool
    lbprz: bool
    anc_sup: bool
    dp: bool
    provisioning_type: int


def parse_logical_block_provisioning(data: bytes | memoryview) -> LogicalBlockProvisioning:
    body = _vpd_body(data, VpdPage.LOGICAL_BLOCK_PROVISIONING).ljust(4, b"\0")
    return LogicalBlockProvisioning(
        threshold_exponent=body[0],
        lbpu=bool(body[1] & 0x80),
        lbpws=bool(body[1] & 0x40),
        lbpws10=bool(body[1] & 0x20),
        lbprz=bool(body[1] & 0x04),
        anc_sup=bool(body[1] & 0x02),
        dp=bool(body[1] & 0x01),
        provisioning_type=body[2] & 0x07,
    )


# --- READ CAPACITY (SBC-3 5.15 / 5.16) -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReadCapacity:
    last_lba: int
    block_length: int
    prot_en: bool = False
    p_type: int = 0
    lbppbe: int = 0
    lbpme: bool = False
    lbprz: bool = False
    lowest_aligned_lba: int = 0

    @property
    def blocks(self) -> int:
        return self.last_lba + 1

    @property
    def size(self) -> int:
        return self.blocks * self.block_length


def parse_read_capacity_10(data: bytes | memoryview) -> ReadCapacity:
    raw = _need(data, 8, "READ CAPACITY (10) data (SBC-3 5.15.2)")
    lba, length = struct.unpack_from(">II", raw)
    return ReadCapacity(last_lba=lba, block_length=length)


def parse_read_capacity_16(data: bytes | memoryview) -> ReadCapacity:
    raw = _need(data, 12, "READ CAPACITY (16) data (SBC-3 5.16.2)").ljust(32, b"\0")
    lba, length = struct.unpack_from(">QI", raw)
    return ReadCapacity(
        last_lba=lba,
        block_length=length,
        prot_en=bool(raw[12] & 0x01),
        p_type=(raw[12] >> 1) & 0x7,
        lbppbe=raw[13] & 0x0F,
        lbpme=bool(raw[14] & 0x80),
        lbprz=bool(raw[14] & 0x40),
        lowest_aligned_lba=int.from_bytes(raw[14:16], "big") & 0x3FFF,
    )


# --- REPORT LUNS (SPC-4 6.33, SAM-5 4.7) -----------------------------------------------------
def decode_lun(entry: bytes) -> int:
    """Decode an 8-byte LUN in peripheral (00b) or flat space (01b) addressing to its number."""
    method = entry[0] >> 6
    if method == 0b00:
        return entry[1]
    if method == 0b01:
        return ((entry[0] & 0x3F) << 8) | entry[1]
    raise RemoteProtocolError(
        f"LUN {entry.hex()} uses address method {method:02b}b, not peripheral or flat (SAM-5 4.7)"
    )


def encode_lun(lun: int) -> bytes:
    """Encode a LUN number: peripheral device addressing below 256, flat space up to 16383."""
    if 0 <= lun < 256:
        return bytes((0, lun)) + bytes(6)
    if lun < 0x4000:
        return bytes((0x40 | (lun >> 8), lun & 0xFF)) + bytes(6)
    raise ValueError(f"LUN {lun} does not fit flat space addressing (max 16383, SAM-5 4.7.6)")


def parse_report_luns(data: bytes | memoryview) -> tuple[int, ...]:
    raw = _need(data, 8, "REPORT LUNS parameter data (SPC-4 6.33.2)")
    length = int.from_bytes(raw[0:4], "big")
    body = raw[8 : 8 + length]
    return tuple(decode_lun(body[i : i + 8]) for i in range(0, len(body) - 7, 8))


# --- REPORT TARGET PORT GROUPS (SPC-4 6.37) --------------------------------------------------
@dataclass(frozen=True, slots=True)
class TargetPortGroup:
    tpg_id: int
    alua_state: int
    preferred: bool
    supported_states: int
    status_code: int
    relative_port_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TargetPortGroups:
    groups: tuple[TargetPortGroup, ...]
    extended: bool = False
    implicit_transition_time: int = 0


def parse_report_target_port_groups(data: bytes | memoryview) -> TargetPortGroups:
    raw = _need(data, 4, "REPORT TARGET PORT GROUPS data (SPC-4 6.37.2)")
    length = int.from_bytes(raw[0:4], "big")
    extended = len(raw) >= 8 and (raw[4] >> 4) & 0x7 == 1
    pos = 8 if extended else 4
    end = min(len(raw), 4 + length)
    groups: list[TargetPortGroup] = []
    while pos + 8 <= end:
        count = raw[pos + 7]
        ports = tuple(
            int.from_bytes(raw[pos + 8 + 4 * i + 2 : pos + 8 + 4 * i + 4], "big")
            for i in range(count)
            if pos + 8 + 4 * i + 4 <= end
        )
        groups.append(
            TargetPortGroup(
                tpg_id=int.from_bytes(raw[pos + 2 : pos + 4], "big"),
                alua_state=raw[pos] & 0x0F,
                preferred=bool(raw[pos] & 0x80),
                supported_states=raw[pos + 1],
                status_code=raw[pos + 5],
                relative_port_ids=ports,
            )
        )
        pos += 8 + 4 * count
    return TargetPortGroups(tuple(groups), extended, raw[5] if extended else 0)


# --- SCSI id ---------------------------------------------------------------------------------
_ID_PRIORITY: dict[int, int] = {
    DesignatorType.NAA: 0,
    DesignatorType.EUI64: 1,
    DesignatorType.T10_VENDOR_ID: 2,
}


def scsi_id(
    vpd83: Sequence[Designator] | bytes | memoryview | None,
    vpd80: bytes | memoryview | str | None = None,
    *,
    vendor: str = "",
    product: str = "",
) -> str:
    """The SCSIid of a logical unit as udev's ``scsi_id --whitelisted`` prints it (what XenServer
    uses as ``SCSIid`` and DM-multipath as the WWID).

    Rule: among the logical-unit designators of VPD 83h (association 0) choose by designator type
    NAA > EUI-64 > T10 vendor ID; among several of the same type prefer binary code set and then
    the longest (NAA 6 over NAA 5).  The result is the designator type as one hex digit followed by
    the value: binary values in lower-case hex (NAA ``6001405abc..`` -> ``36001405abc..``, EUI-64 ->
    ``2...``), a T10 vendor ID as its ASCII text (``1VENDOR  PRODUCT...``, spaces kept).  If VPD 83h
    has no usable designator, fall back to the unit serial number (VPD 80h) the way scsi_id does:
    ``S`` + vendor (padded to 8) + product (padded to 16) + serial, where ``vendor``/``product`` come
    from standard INQUIRY (pass them when you have them).  Returns ``""`` when neither is available.
    """
    if isinstance(vpd83, bytes | memoryview):
        designators: Sequence[Designator] = parse_device_identification(vpd83)
    else:
        designators = vpd83 or ()
    candidates = [
        d
        for d in designators
        if d.association == Association.LOGICAL_UNIT and d.designator_type in _ID_PRIORITY and d.value
    ]
    if candidates:
        best = min(
            candidates,
            key=lambda d: (_ID_PRIORITY[d.designator_type], d.code_set != CodeSet.BINARY, -len(d.value)),
        )
        if best.code_set == CodeSet.BINARY:
            return f"{best.designator_type:x}{best.value.hex()}"
        return f"{best.designator_type:x}{best.value.decode('ascii', 'replace').rstrip(chr(0))}"
    if vpd80 is None:
        return ""
    serial = vpd80 if isinstance(vpd80, str) else parse_unit_serial_number(vpd80)
    if not serial:
        return ""
    prefix = f"{vendor:<8.8}{product:<16.16}" if vendor or product else ""
    return f"S{prefix}{serial}"


def parse_lba_status(data: bytes | memoryview) -> list[tuple[int, int, int]]:
    """GET LBA STATUS parameter data (SBC-3 5.7.2): (starting LBA, blocks, provisioning status) per
    descriptor; status 0 mapped, 1 deallocated, 2 anchored."""
    raw = _need(data, 8, "GET LBA STATUS data (SBC-3 5.7.2)")
    length = min(len(raw), int.from_bytes(raw[0:4], "big") + 4)
    out = []
    for pos in range(8, length - 15, 16):
        lba = int.from_bytes(raw[pos : pos + 8], "big")
        blocks = int.from_bytes(raw[pos + 8 : pos + 12], "big")
        out.append((lba, blocks, raw[pos + 12] & 0x0F))
    return out


# --- RECEIVE COPY RESULTS (SPC-3 6.17) -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CopyStatus:
    """COPY STATUS parameter data (SPC-3 6.17): COPY MANAGER STATUS 00h in progress, 01h completed,
    02h completed with errors."""

    copy_manager_status: int
    held_data_discarded: bool
    segments_processed: int
    transfer_count_units: int  # 00h bytes, 01h KiB ... 06h EiB
    transfer_count: int

    @property
    def bytes_transferred(self) -> int:
        return self.transfer_count << (10 * self.transfer_count_units)


def parse_copy_status(data: bytes | memoryview) -> CopyStatus:
    raw = _need(data, 12, "COPY STATUS data (SPC-3 6.17)")
    _, status, segments, units, count = struct.unpack_from(">IBHBI", raw)
    return CopyStatus(status & 0x7F, bool(status & 0x80), segments, units, count)


@dataclass(frozen=True, slots=True)
class CopyOperatingParameters:
    """OPERATING PARAMETERS parameter data (SPC-3 6.17): what an EXTENDED COPY may hold."""

    max_cscd_descriptors: int
    max_segment_descriptors: int
    max_descriptor_list_length: int
    max_segment_length: int
    max_inline_data_length: int
    held_data_limit: int
    data_segment_granularity: int  # log2 of bytes
    implemented_descriptors: tuple[int, ...]


def parse_copy_operating_parameters(data: bytes | memoryview) -> CopyOperatingParameters:
    raw = _need(data, 44, "OPERATING PARAMETERS data (SPC-3 6.17)")
    cscds, segments, list_len, seg_len, inline, held = struct.unpack_from(">HHIIII", raw, 8)
    return CopyOperatingParameters(cscds, segments, list_len, seg_len, inline, held, raw[37],
                                   tuple(raw[44 : 44 + raw[43]]))
