"""``readsector0``: READ (10) of one block at LBA 0 (multipath-tools' readsector0 / directio idea).

Catches the target that answers TEST UNIT READY while its backing store is gone (PEERS.md failure
mode 1): the read reaches the medium, so a dead backstore gives MEDIUM ERROR and the path is down.
Costs one block of data per check. Verdicts: see ``common.classify``.
"""

from __future__ import annotations

from ...initiator.session import Session
from ...scsi import cdb as C
from ..path import Path
from .common import Verdict, bounded, scsi_probe

UNKNOWN_BLOCK = 4096  # read length before the block size is known: covers 512 and 4096-byte blocks


class ReadSector0Checker:
    name = "readsector0"

    async def check(self, path: Path, timeout: float) -> Verdict:
        capacity = path.device.capacity if path.device is not None else None
        length = capacity.block_length if capacity is not None else UNKNOWN_BLOCK

        async def probe(session: Session) -> Verdict:
            return await scsi_probe(path, session, C.read_10(0, 1), "READ (10) of LBA 0", read_length=length)

        return await bounded(path, timeout, probe)
