"""The ``rdac`` handler: LSI/Engenio-style active/passive arrays (XenServer's MPP RDAC). Ownership of a
LUN moves to the controller behind ``path`` with MODE SELECT (10) of the Redundant Controller mode page
2Ch, legacy form, RDAC mode 02h ("transfer the LUNs marked in the LUN table") with this LUN's table
entry set to 81h, as Linux's scsi_dh_rdac sends it. See sanpath/target/rdac.py for the array side."""

from __future__ import annotations

import asyncio
import struct

from sanpath.aio import within

from ...errors import SanpathError
from ..path import Path

PAGE = 0x2C
LEGACY_LENGTH = 0x68  # bytes after the 2-byte page header
TRANSFER_SPECIFIED_LUNS = 0x02


def mode_select_parameters(lun: int) -> bytes:
    """Mode parameter header (10) with no block descriptor, then page 2Ch (legacy, 32-entry LUN table)."""
    if lun >= 32:
        raise ValueError(f"LUN {lun}: the legacy page 2Ch has a 32-entry LUN table")
    page = bytearray(2 + LEGACY_LENGTH)
    page[0], page[1] = PAGE, LEGACY_LENGTH
    # bytes 2-33: controller and alternate serial numbers (ignored on MODE SELECT)
    page[34:36] = struct.pack(">H", TRANSFER_SPECIFIED_LUNS)  # RDAC mode
    table = 40  # after alternate RDAC mode (2), quiescence timeout (1), options (1)
    page[table + lun] = 0x81
    return bytes(8) + bytes(page)


class RdacHandler:
    name = "rdac"
    options: tuple[str, ...] = ()

    async def activate(self, path: Path, timeout: float) -> tuple[bool, str]:
        device = path.device
        if device is None:
            return False, "no session"
        params = mode_select_parameters(path.spec.lun)
        cdb = struct.pack(">BBxxxxxHB", 0x55, 0x10, len(params), 0)  # MODE SELECT (10), PF=1
        for _ in range(5):  # command lock contention (91h/36h) and quiescence are retried
            try:
                await within(device.command(cdb, data_out=params), timeout)
                return True, f"LUN {path.spec.lun} ownership moved to the controller behind {path.spec.portal}"
            except (SanpathError, TimeoutError) as e:
                reason = str(e) or "timed out"
                await asyncio.sleep(0.2)
        return False, f"ownership transfer failed: {reason}"
