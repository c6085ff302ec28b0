"""The ``dmp`` handler: generic, ALUA-aware. When the array supports explicit ALUA (TPGS bit 1 in the
standard INQUIRY, SPC-4 6.6.2), it makes the path's target port group active/optimized with SET TARGET
PORT GROUPS (SPC-4 6.45); with implicit ALUA only, there is nothing to ask: the array moves on its own."""

from __future__ import annotations

import struct

from sanpath.aio import within

from ...errors import SanpathError
from ..path import Path

ACTIVE_OPTIMIZED = 0x0


class DmpHandler:
    name = "dmp"
    options: tuple[str, ...] = ()

    async def activate(self, path: Path, timeout: float) -> tuple[bool, str]:
        device = path.device
        if device is None:
            return False, "no session"
        try:
            std = await within(device.inquiry(), timeout)
            if not std.tpgs & 0x2:
                return False, "the array has implicit ALUA only; waiting for it to move"
            tpg = path.tpg_id
            if tpg is None:
                return False, "target port group unknown (alua prioritizer not in use)"
            params = bytes(4) + struct.pack(">BBH", ACTIVE_OPTIMIZED, 0, tpg)
            cdb = struct.pack(">BB4xIxB", 0xA4, 0x0A, len(params), 0)  # MAINTENANCE OUT / SET TPG
            await within(device.command(cdb, data_out=params), timeout)
        except (SanpathError, TimeoutError) as e:
            return False, f"SET TARGET PORT GROUPS failed: {e or 'timed out'}"
        return True, f"SET TARGET PORT GROUPS: port group {tpg} active/optimized"
