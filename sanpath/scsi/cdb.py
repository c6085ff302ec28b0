"""CDB builders for the initiator side: pure functions from arguments to command bytes.

Each builder returns the CDB exactly as long as its standard defines it (6, 10, 12 or 16 bytes);
the iSCSI layer pads to 16.  Field layouts follow SPC-4 section 6 and SBC-3 section 5.  Builders
raise :class:`LocalProtocolError` when an argument does not fit its field.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from sanpath.errors import LocalProtocolError
from sanpath.scsi.constants import (
    Association,
    CodeSet,
    DesignatorType,
    ExtendedCopyAction,
    MaintenanceIn,
    Opcode,
    PageControl,
    PrInAction,
    PrOutAction,
    ReceiveCopyResultsAction,
    ServiceActionIn16,
)

_CDB10_RW = struct.Struct(">BBIBHB")  # opcode, flags, LBA, group, transfer length, control
_CDB16_RW = struct.Struct(">BBQIBB")  # opcode, flags, LBA, transfer length, group, control
_UNMAP_DESC = struct.Struct(">QI4x")


def _check(name: str, value: int, bits: int) -> int:
    if not 0 <= value < (1 << bits):
        raise LocalProtocolError(f"{name}={value} does not fit the {bits}-bit CDB field")
    return value


def test_unit_ready() -> bytes:
    """TEST UNIT READY (SPC-4 6.47)."""
    return bytes(6)


def inquiry(*, evpd: bool = False, page: int = 0, alloc: int = 255) -> bytes:
    """INQUIRY (SPC-4 6.6); ``page`` is the VPD page code when ``evpd`` is set."""
    if page and not evpd:
        raise LocalProtocolError("INQUIRY with a page code needs evpd=True (SPC-4 6.6.1)")
    return struct.pack(
        ">BBBHB", Opcode.INQUIRY, int(evpd), _check("page", page, 8), _check("alloc", alloc, 16), 0
    )


def read_capacity_10() -> bytes:
    """READ CAPACITY (10) (SBC-3 5.15)."""
    return bytes((Opcode.READ_CAPACITY_10,)) + bytes(9)


def read_capacity_16(alloc: int = 32) -> bytes:
    """READ CAPACITY (16) (SBC-3 5.16): SERVICE ACTION IN(16) service action 10h."""
    return struct.pack(
        ">BBQIBB",
        Opcode.SERVICE_ACTION_IN_16,
        ServiceActionIn16.READ_CAPACITY_16,
        0,
        _check("alloc", alloc, 32),
        0,
        0,
    )


def get_lba_status(lba: int, alloc: int = 4096) -> bytes:
    """GET LBA STATUS (SBC-3 5.7): SERVICE ACTION IN(16) service action 12h."""
    return struct.pack(">BBQIBB", Opcode.SERVICE_ACTION_IN_16, ServiceActionIn16.GET_LBA_STATUS,
                       _check("lba", lba, 64), _check("alloc", alloc, 32), 0, 0)


def report_luns(*, select_report: int = 0, alloc: int = 4096) -> bytes:
    """REPORT LUNS (SPC-4 6.33)."""
    return struct.pack(
        ">BBB3xIBB",
        Opcode.REPORT_LUNS,
        0,
        _check("select_report", select_report, 8),
        _check("alloc", alloc, 32),
        0,
        0,
    )


def read_10(lba: int, blocks: int, *, fua: bool = False, dpo: bool = False) -> bytes:
    """READ (10) (SBC-3 5.11)."""
    flags = (0x10 if dpo else 0) | (0x08 if fua else 0)
    return _CDB10_RW.pack(Opcode.READ_10, flags, _check("lba", lba, 32), 0, _check("blocks", blocks, 16), 0)


def read_16(lba: int, blocks: int, *, fua: bool = False, dpo: bool = False) -> bytes:
    """READ (16) (SBC-3 5.13)."""
    flags = (0x10 if dpo else 0) | (0x08 if fua else 0)
    return _CDB16_RW.pack(Opcode.READ_16, flags, _check("lba", lba, 64), _check("blocks", blocks, 32), 0, 0)


def write_10(lba: int, blocks: int, *, fua: bool = False, dpo: bool = False) -> bytes:
    """WRITE (10) (SBC-3 5.32); FUA asks the device to write through its cache."""
    flags = (0x10 if dpo else 0) | (0x08 if fua else 0)
    return _CDB10_RW.pack(Opcode.WRITE_10, flags, _check("lba", lba, 32), 0, _check("blocks", blocks, 16), 0)


def write_16(lba: int, blocks: int, *, fua: bool = False, dpo: bool = False) -> bytes:
    """WRITE (16) (SBC-3 5.34)."""
    flags = (0x10 if dpo else 0) | (0x08 if fua else 0)
    return _CDB16_RW.pack(Opcode.WRITE_16, flags, _check("lba", lba, 64), _check("blocks", blocks, 32), 0, 0)


def synchronize_cache_10(lba: int = 0, blocks: int = 0, *, immed: bool = False) -> bytes:
    """SYNCHRONIZE CACHE (10) (SBC-3 5.22); ``blocks=0`` means through the last LBA."""
    return _CDB10_RW.pack(
        Opcode.SYNCHRONIZE_CACHE_10,
        0x02 if immed else 0,
        _check("lba", lba, 32),
        0,
        _check("blocks", blocks, 16),
        0,
    )


def synchronize_cache_16(lba: int = 0, blocks: int = 0, *, immed: bool = False) -> bytes:
    """SYNCHRONIZE CACHE (16) (SBC-3 5.23)."""
    return _CDB16_RW.pack(
        Opcode.SYNCHRONIZE_CACHE_16,
        0x02 if immed else 0,
        _check("lba", lba, 64),
        _check("blocks", blocks, 32),
        0,
        0,
    )


def unmap(param_len: int, *, anchor: bool = False) -> bytes:
    """UNMAP (SBC-3 5.28); pair it with :func:`unmap_parameter_list`."""
    return struct.pack(">BB4xBHB", Opcode.UNMAP, int(anchor), 0, _check("param_len", param_len, 16), 0)


def unmap_parameter_list(extents: Sequence[tuple[int, int]]) -> bytes:
    """UNMAP parameter list (SBC-3 5.28.2): 8-byte header then one 16-byte block descriptor per
    ``(lba, blocks)`` extent."""
    body = b"".join(_UNMAP_DESC.pack(_check("lba", lba, 64), _check("blocks", n, 32)) for lba, n in extents)
    return struct.pack(">HH4x", 6 + len(body), len(body)) + body


def write_same_16(
    lba: int, blocks: int, *, unmap: bool = False, anchor: bool = False, ndob: bool = False
) -> bytes:
    """WRITE SAME (16) (SBC-3 5.42); with ``unmap`` the device may deallocate the range."""
    flags = (0x10 if anchor else 0) | (0x08 if unmap else 0) | (0x01 if ndob else 0)
    return _CDB16_RW.pack(
        Opcode.WRITE_SAME_16, flags, _check("lba", lba, 64), _check("blocks", blocks, 32), 0, 0
    )


def report_target_port_groups(alloc: int = 4096, *, extended: bool = False) -> bytes:
    """REPORT TARGET PORT GROUPS (SPC-4 6.37): MAINTENANCE IN service action 0Ah; ``extended``
    selects the extended header parameter data format (001b)."""
    b1 = (0x20 if extended else 0) | MaintenanceIn.REPORT_TARGET_PORT_GROUPS
    return struct.pack(">BB4xIBB", Opcode.MAINTENANCE_IN, b1, _check("alloc", alloc, 32), 0, 0)


def mode_sense_6(
    page: int, *, subpage: int = 0, pc: int = PageControl.CURRENT, dbd: bool = False, alloc: int = 255
) -> bytes:
    """MODE SENSE (6) (SPC-4 6.11)."""
    return bytes(
        (
            Opcode.MODE_SENSE_6,
            0x08 if dbd else 0,
            (_check("pc", pc, 2) << 6) | _check("page", page, 6),
            _check("subpage", subpage, 8),
            _check("alloc", alloc, 8),
            0,
        )
    )


def mode_sense_10(
    page: int,
    *,
    subpage: int = 0,
    pc: int = PageControl.CURRENT,
    dbd: bool = False,
    llbaa: bool = False,
    alloc: int = 4096,
) -> bytes:
    """MODE SENSE (10) (SPC-4 6.12)."""
    b1 = (0x10 if llbaa else 0) | (0x08 if dbd else 0)
    return struct.pack(
        ">BBBB3xHB",
        Opcode.MODE_SENSE_10,
        b1,
        (_check("pc", pc, 2) << 6) | _check("page", page, 6),
        _check("subpage", subpage, 8),
        _check("alloc", alloc, 16),
        0,
    )


def persistent_reserve_in(action: PrInAction | int, alloc: int = 4096) -> bytes:
    """PERSISTENT RESERVE IN (SPC-4 6.15)."""
    return struct.pack(
        ">BB5xHB", Opcode.PERSISTENT_RESERVE_IN, _check("action", action, 5), _check("alloc", alloc, 16), 0
    )


PROUT_PARAMETER_LENGTH = 24


def persistent_reserve_out(
    action: PrOutAction | int, *, pr_type: int = 0, scope: int = 0, param_len: int = PROUT_PARAMETER_LENGTH
) -> bytes:
    """PERSISTENT RESERVE OUT (SPC-4 6.16); pair it with :func:`prout_parameter_list`."""
    return struct.pack(
        ">BBB2xIB",
        Opcode.PERSISTENT_RESERVE_OUT,
        _check("action", action, 5),
        (_check("scope", scope, 4) << 4) | _check("pr_type", pr_type, 4),
        _check("param_len", param_len, 32),
        0,
    )


def prout_parameter_list(
    *, key: int = 0, sa_key: int = 0, aptpl: bool = False, all_tg_pt: bool = False
) -> bytes:
    """Basic PERSISTENT RESERVE OUT parameter list (SPC-4 6.16.3, table 179), 24 bytes."""
    flags = (0x04 if all_tg_pt else 0) | (0x01 if aptpl else 0)
    return struct.pack(">QQ4xBx2x", _check("key", key, 64), _check("sa_key", sa_key, 64), flags)


# --- third-party copy (SPC-4 6.4, SPC-3 6.17) -----------------------------------------------------
_XCOPY_HEADER = struct.Struct(">BBH4xII")
_B2B_SEGMENT = struct.Struct(">BBHHH2xHQQ")
CSCD_IDENTIFICATION = 0xE4
SEGMENT_BLOCK_TO_BLOCK = 0x02


def extended_copy(param_len: int) -> bytes:
    """EXTENDED COPY (LID1) (SPC-4 6.4); pair it with :func:`xcopy_parameter_list`."""
    return struct.pack(">BB8xIBB", Opcode.EXTENDED_COPY, ExtendedCopyAction.EXTENDED_COPY_LID1,
                       _check("param_len", param_len, 32), 0, 0)


def receive_copy_results(action: ReceiveCopyResultsAction | int, *, list_id: int = 0, alloc: int = 1024) -> bytes:
    """RECEIVE COPY RESULTS (LID1) (SPC-3 6.17)."""
    return struct.pack(">BBB7xIBB", Opcode.RECEIVE_COPY_RESULTS, _check("action", action, 5),
                       _check("list_id", list_id, 8), _check("alloc", alloc, 32), 0, 0)


def cscd_identification(naa: bytes, block_length: int) -> bytes:
    """A CSCD identification descriptor (E4h, SPC-4 6.4.6) naming a block device by its NAA
    designator (logical unit association, as VPD page 83h reports it): 32 bytes."""
    if not 0 < len(naa) <= 20:
        raise LocalProtocolError(f"a CSCD designator holds 1 to 20 bytes, not {len(naa)}")
    ident = struct.pack(">BBxB", CodeSet.BINARY, Association.LOGICAL_UNIT << 4 | DesignatorType.NAA, len(naa))
    return (struct.pack(">BBH", CSCD_IDENTIFICATION, 0x00, 0) + ident + naa.ljust(20, b"\0")
            + struct.pack(">I", _check("block_length", block_length, 24)))  # PAD=0, DISK BLOCK LENGTH


def b2b_segment(source: int, destination: int, blocks: int, source_lba: int, destination_lba: int, *,
                dc: bool = False) -> bytes:
    """A block device to block device segment descriptor (02h, SPC-4 6.4): ``blocks`` blocks
    (of the source, or with ``dc`` of the destination) between the CSCD descriptors at indexes
    ``source`` and ``destination``: 28 bytes."""
    return _B2B_SEGMENT.pack(SEGMENT_BLOCK_TO_BLOCK, 0x02 if dc else 0, _B2B_SEGMENT.size - 4,
                             _check("source", source, 16), _check("destination", destination, 16),
                             _check("blocks", blocks, 16), _check("source_lba", source_lba, 64),
                             _check("destination_lba", destination_lba, 64))


def xcopy_parameter_list(cscds: Sequence[bytes], segments: Sequence[bytes], *, list_id: int = 0,
                         list_id_usage: int = 0b00) -> bytes:
    """The EXTENDED COPY (LID1) parameter list (SPC-4 6.4): the 16-byte header, the CSCD
    descriptors, the segment descriptors; LIST ID USAGE 00b asks the copy manager to hold the results
    for RECEIVE COPY RESULTS."""
    cscd_list, segment_list = b"".join(cscds), b"".join(segments)
    header = _XCOPY_HEADER.pack(_check("list_id", list_id, 8), _check("list_id_usage", list_id_usage, 2) << 3,
                                _check("cscd list length", len(cscd_list), 16), len(segment_list), 0)
    return header + cscd_list + segment_list
