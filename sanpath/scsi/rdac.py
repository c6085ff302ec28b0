"""The RDAC (LSI/Engenio, Dell MD3xxx, IBM DS) vendor VPD page C9h, "volume access control": which
controller owns a volume and which path is preferred, parsed for the rdac checker and prioritizer
(sanpath.target.rdac builds it).

Layout, as Linux's scsi_dh_rdac and multipath-tools' rdac checker and prioritizer read it:
byte 1 page code C9h; byte 3 page length (2Ch); bytes 4-7 "vace"; byte 8: bit 7 AVT (auto volume
transfer), bit 5 IOSHIP (I/O shipping: either controller serves I/O), bit 4 TPGDE (bytes 10-13 are
valid), bit 0 CVP (current volume path: the controller answering owns the volume); byte 9 low nibble:
path priority (1 = preferred path, 2 = secondary path); byte 10/12 low nibble: the asymmetric access
state of this / the alternate controller's port group; bytes 11/13: vendor-specific reason codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RemoteProtocolError

PAGE = 0xC9
PAGE_ID = b"vace"
PREFERRED = 0x1
SECONDARY = 0x2


@dataclass(frozen=True, slots=True)
class VolumeAccess:
    peripheral_qualifier: int
    device_type: int
    owned: bool  # CVP: the controller that answered owns the volume
    avt: bool
    ioship: bool
    tpg_data: bool  # TPGDE: the states below are valid
    path_priority: int  # 1 preferred, 2 secondary, other values reserved
    state: int = 0  # asymmetric access state of this controller's port group (SPC-4 5.15.2.4 codes)
    state_reason: int = 0
    alternate_state: int = 0
    alternate_reason: int = 0

    @property
    def preferred(self) -> bool:
        return self.path_priority == PREFERRED

    @property
    def connected(self) -> bool:
        """Peripheral qualifier 000b and a device type: the volume is reachable through this port."""
        return self.peripheral_qualifier == 0 and self.device_type != 0x1F


def parse_volume_access(data: bytes | memoryview) -> VolumeAccess:
    raw = bytes(data)
    if len(raw) < 10 or raw[1] != PAGE or raw[4:8] != PAGE_ID:
        raise RemoteProtocolError(f"not an RDAC volume access control page (VPD C9h, 'vace'): {raw[:10].hex()}")
    b8 = raw[8]
    ext = raw[10:14].ljust(4, b"\0")
    return VolumeAccess(
        peripheral_qualifier=raw[0] >> 5,
        device_type=raw[0] & 0x1F,
        owned=bool(b8 & 0x01),
        avt=bool(b8 & 0x80),
        ioship=bool(b8 & 0x20),
        tpg_data=bool(b8 & 0x10),
        path_priority=raw[9] & 0x0F,
        state=ext[0] & 0x0F,
        state_reason=ext[1],
        alternate_state=ext[2] & 0x0F,
        alternate_reason=ext[3],
    )

