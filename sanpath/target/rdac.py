"""The ``rdac`` array profile: an LSI/Engenio-style active/passive controller pair, as Linux's
scsi_dh_rdac, multipath-tools' ``rdac`` checker and prioritizer, and sg3_utils' ``sg_rdac`` expect it.

What sanpath's rdac array does, exactly:

Ownership
    Each LU is owned by one controller (``owner``, A by default). Controller A is slot 1, B slot 2.

I/O through the non-owning controller
    Commands that access the medium (READ/WRITE/VERIFY/WRITE AND VERIFY (6/10/12/16), WRITE SAME,
    UNMAP, COMPARE AND WRITE, SYNCHRONIZE CACHE, GET LBA STATUS) end in CHECK CONDITION, sense key
    ILLEGAL REQUEST (5h), ASC/ASCQ 94h/01h ("invalid request due to current LU ownership"; scsi_dh_rdac
    then marks the path passive). Every other command (TEST UNIT READY, INQUIRY, READ CAPACITY, MODE
    SENSE/SELECT, REPORT LUNS, PERSISTENT RESERVE, RTPG, REQUEST SENSE) works on both controllers,
    so a TUR checker sees both paths up and only the rdac checker (VPD C9h) tells owner from passive.
    The standard ALUA gate is not applied (no 04h/0Bh); standard INQUIRY reports TPGS=00b.

Ownership transfer (explicit)
    MODE SELECT (6) or (10) through the controller that is to become the owner, with the Redundant
    Controller mode page: legacy form page 2Ch (PS=0, page length 68h: 16-byte controller serial,
    16-byte alternate serial, RDAC mode (2 bytes), alternate RDAC mode (2), quiescence timeout,
    options, 32-entry LUN table, 32 reserved, 2 reserved) or expanded form page 2Ch with SPF
    (byte 6Ch), subpage 01h, page length 0128h, 256-entry LUN table. RDAC mode LSB 01h moves every
    LU to this controller; 02h moves the LUs whose LUN-table entry has bit 0 set (scsi_dh_rdac and
    sg_rdac write 81h); any other value is ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST (26h/00h).
    A block descriptor may precede the page (sg_rdac sends one); quiescence and options are accepted
    and ignored. A transfer requested while another is quiescing gets ILLEGAL REQUEST 91h/36h
    (command lock contention; scsi_dh_rdac retries it).

Ownership transfer (implicit)
    When the owning controller fails (the ``controller`` fault) its LUs move to the other one
    (``implicit_on_owner_loss``, on by default). Nothing moves back on its own when it returns.

Quiescence
    With ``transition_time`` > 0 a transfer first quiesces the LU for that long: medium-access commands
    on both controllers get NOT READY (2h), 04h/01h ("in process of becoming ready"; scsi_dh_rdac
    retries it), C9h and RTPG report transitioning (Fh). No unit attention is queued for a transfer.

INQUIRY VPD pages (besides the standard ones)
    C2h "swr4": firmware version and date, max LUN supported FFh (so hosts use MODE SELECT (10)).
    C4h "subs": subsystem identifier (16 ASCII bytes from the target IQN), revision, slot id "01"
    (A) or "02" (B); scsi_dh_rdac groups LUs into controllers by subsystem id and slot.
    C8h "edid": volume unique id (16 bytes, from the unit serial), volume label (UTF-16BE), array
    unique id and label, LUN as 8 big-endian bytes.
    C9h "vace": byte 8 CVP (bit 0: this controller owns the LU), TPGDE (bit 4, set), AVTE (bit 7,
    clear); byte 9 path priority 1 (preferred owner) or 2 (secondary); bytes 10/12 the asymmetric
    access state of this / the alternate controller (0 owner, 2 passive, 3 failed, Fh quiescing).

MODE SENSE page 2Ch
    Subpage 00h (legacy) and, with MODE SENSE (10), subpage 01h (expanded): controller serials
    ("<subsystem>-A"), RDAC mode 01h/01h (alternate present; active) for both controllers (alternate
    LSB 03h when the other controller failed), quiescence 0, LUN table 01h for LUs this controller
    owns, 02h for LUs the alternate owns, 00h for no LU. Nothing is changeable.

RTPG also works (owner active/optimized, passive standby) for hosts that ask.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING

from ..scsi import constants as c
from ..scsi.constants import AluaState, Opcode, PageControl, Tpgs
from .common import GOOD, CheckCondition, Command, Nexus, ScsiResult, invalid_field, invalid_param
from .lu import AluaGate, CommandInfo, LogicalUnit, LuProfile
from .pr import Access

if TYPE_CHECKING:
    from .profiles import Array

# What LSI/Engenio arrays answer in standard INQUIRY, and what multipath device tables match on
RDAC_VENDOR = "LSI"
RDAC_PRODUCT = "INF-01-00"
NOT_OWNER: c.AscPair = (0x94, 0x01)  # vendor specific: invalid request due to current LU ownership
BECOMING_READY: c.AscPair = (0x04, 0x01)  # LOGICAL UNIT IS IN PROCESS OF BECOMING READY
LOCK_CONTENTION: c.AscPair = (0x91, 0x36)  # vendor specific: command lock contention
PAGE = 0x2C  # Redundant Controller mode page
LEGACY_LEN, EXPANDED_LEN = 0x68, 0x128


def _subsystem_id(array: Array) -> bytes:
    return hashlib.sha256(array.spec.iqn.encode()).hexdigest()[:16].upper().encode()


def _serial(array: Array, ctl: str) -> bytes:
    return (_subsystem_id(array)[:14] + b"-" + ctl.encode()[:1]).ljust(16, b" ")


def _utf16(text: str, chars: int) -> bytes:
    return text[:chars].encode("utf-16-be").ljust(2 * chars, b"\0")


def _vpd_c2(lu: LogicalUnit, cmd: Command) -> bytes:
    return b"swr4" + bytes((1, 0, 0)) + bytes((26, 11, 1)) + bytes((0, 0xFF)) + bytes(239)


def _vpd_c4(lu: LogicalUnit, cmd: Command) -> bytes:
    p = _rdac(lu)
    ctl = p.array.controller_of(cmd.nexus)
    slot = b"0" + str(ctl.index + 1).encode() if ctl is not None else b"00"
    return b"subs" + _subsystem_id(p.array) + b"0001" + slot + bytes(2)


def _vpd_c8(lu: LogicalUnit, cmd: Command) -> bytes:
    p = _rdac(lu)
    vol = hashlib.sha256(b"vol:" + lu.serial.encode()).digest()[:16]
    arr = hashlib.sha256(b"array:" + p.array.spec.iqn.encode()).digest()[:16]
    label, alabel = f"LUN{p.lun}", p.array.spec.alias or p.array.spec.iqn.rpartition(":")[2]
    return (b"edid" + bytes(3) + bytes((16,)) + vol + bytes((2 * len(label[:30]),)) + _utf16(label, 30)
            + bytes((16,)) + arr + bytes((2 * len(alabel[:30]),)) + _utf16(alabel, 30)
            + p.lun.to_bytes(8, "big"))


def _vpd_c9(lu: LogicalUnit, cmd: Command) -> bytes:
    p = _rdac(lu)
    array = p.array
    ctl = array.controller_of(cmd.nexus)
    owner = array.owner(p.lun)
    this = ctl.name if ctl is not None else ""
    alt = next((o for o in array.controllers.values() if o.name != this), None)
    cvp = 0x01 if this == owner and not array.transitioning(p.lun) else 0x00
    prio = 0x01 if this == array.spec.owner else 0x02
    aas_cur = array.alua_state(p.lun, ctl) if ctl is not None else AluaState.UNAVAILABLE
    aas_alt = array.alua_state(p.lun, alt) if alt is not None else AluaState.UNAVAILABLE
    body = b"vace" + bytes((0x10 | cvp, prio, aas_cur, 0, aas_alt, 0))
    return body.ljust(0x2C, b"\0")


def _rdac(lu: LogicalUnit) -> RdacProfile:
    assert isinstance(lu.profile, RdacProfile)
    return lu.profile


def _mode_page(lu: LogicalUnit, cmd: Command, subpage: int, pc: int) -> bytes:
    """MODE SENSE page 2Ch for the controller that received the command (see the module text)."""
    p = _rdac(lu)
    nexus = cmd.nexus
    if subpage not in (0x00, 0x01, 0xFF):
        raise invalid_field(3)
    expanded = subpage == 0x01
    size = 256 if expanded else 32
    body = bytearray(38 + size + (2 if expanded else 34))
    if pc != PageControl.CHANGEABLE:
        ctl = p.array.controller_of(nexus)
        this = ctl.name if ctl is not None else ""
        alt = next((o for o in p.array.controllers.values() if o.name != this), None)
        body[0:16] = _serial(p.array, this)
        body[16:32] = _serial(p.array, alt.name if alt else "")
        body[32:34] = b"\x01\x01"
        body[34:36] = b"\x01\x03" if alt is None or alt.failed else b"\x01\x01"
        for lun in p.array.luns:
            if lun < size:
                body[38 + lun] = 0x01 if p.array.owner(lun) == this else 0x02
    if expanded:
        return struct.pack(">BBH", PAGE | 0x40, 0x01, len(body)) + bytes(body)
    return struct.pack(">BB", PAGE, len(body)) + bytes(body)


async def mode_select(lu: LogicalUnit, cmd: Command) -> ScsiResult:
    """MODE SELECT (6)/(10) with the Redundant Controller page: an ownership transfer."""
    p = _rdac(lu)
    ten = cmd.cdb[0] == Opcode.MODE_SELECT_10
    length = cmd.u16(7) if ten else cmd.cdb[4]
    data = bytes(cmd.data_out[:length])
    if not length:
        return ScsiResult(GOOD)
    hdr = 8 if ten else 4
    if len(data) < hdr:
        raise CheckCondition(c.SenseKey.ILLEGAL_REQUEST, c.PARAMETER_LIST_LENGTH_ERROR, data_out_length=length)
    bd_len = struct.unpack_from(">H", data, 6)[0] if ten else data[3]
    off = hdr + bd_len
    if off + 2 > len(data):
        raise CheckCondition(c.SenseKey.ILLEGAL_REQUEST, c.PARAMETER_LIST_LENGTH_ERROR, data_out_length=length)
    page = data[off] & 0x3F
    if page != PAGE:
        raise _bad(off, length)
    if data[off] & 0x40:
        if data[off + 1] != 0x01 or len(data) < off + 4 + EXPANDED_LEN:
            raise _bad(off + 1, length)
        common, table = off + 4, off + 4 + 38
        size = 256
    else:
        if len(data) < off + 2 + LEGACY_LEN:
            raise _bad(off + 1, length)
        common, table = off + 2, off + 2 + 38
        size = 32
    mode = data[common + 33]
    if mode == 0x01:
        luns = list(p.array.luns)
    elif mode == 0x02:
        luns = [n for n in p.array.luns if n < size and data[table + n] & 0x01]
    else:
        raise _bad(common + 33, length)
    ctl = p.array.controller_of(cmd.nexus)
    assert ctl is not None
    if any(p.array.moving_to(n) not in (None, ctl.name) for n in luns):
        raise CheckCondition(c.SenseKey.ILLEGAL_REQUEST, LOCK_CONTENTION, data_out_length=length)
    for n in luns:
        p.array.move(n, ctl.name, reason="MODE SELECT redundant controller page")
    return ScsiResult(GOOD, data_out_length=length)


def _bad(byte: int, length: int) -> CheckCondition:
    exc = invalid_param(byte)
    exc.data_out_length = length
    return exc


_MODE_SELECT = (
    CommandInfo(Opcode.MODE_SELECT_6, "MODE SELECT (6)", mode_select, bytes((0x15, 0x11, 0, 0, 0xFF, 0)),
                alua=AluaGate.STANDBY),
    CommandInfo(Opcode.MODE_SELECT_10, "MODE SELECT (10)", mode_select,
                bytes((0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0)), alua=AluaGate.STANDBY),
)


class RdacProfile(LuProfile):
    """One LU of an ``rdac`` array."""

    tpgs = Tpgs.NOT_SUPPORTED
    commands = _MODE_SELECT
    vpd_pages = {0xC2: _vpd_c2, 0xC4: _vpd_c4, 0xC8: _vpd_c8, 0xC9: _vpd_c9}
    mode_pages = {PAGE: _mode_page}

    def __init__(self, array: Array, lun: int) -> None:
        self.array = array
        self.lun = lun

    def check(self, lu: LogicalUnit, nexus: Nexus, info: CommandInfo) -> bool:
        if info.access == Access.ALLOWED:
            return False
        if self.array.transitioning(self.lun):
            raise CheckCondition(c.SenseKey.NOT_READY, BECOMING_READY)
        ctl = self.array.controller_of(nexus)
        if ctl is not None and ctl.name != self.array.owner(self.lun):
            raise CheckCondition(c.SenseKey.ILLEGAL_REQUEST, NOT_OWNER)
        return False

