"""``readsector0``: READ (10) of one block at LBA 0 (multipath-tools' readsector0 / directio idea).

Catches the target that answers TEST UNIT READY while its backing store is gone (PEERS.md failure
mode 1): the read reaches the medium, so a dead backstore gives MEDIUM ERROR and the path is down.
Costs one block of data per check. Verdicts: see ``common.classify``.
"""

from __future__ import annotations

from ...scsi import cdb as C
from ..probe import PathProbe, ProbeSession
from .common import Verdict, bounded, scsi_probe

UNKNOWN_BLOCK = 4096  # read length before the block size is known: covers 512 and 4096-byte blocks


class ReadSector0Checker:
    name = "readsector0"
    options: tuple[str, ...] = ()

    async def check(self, path: PathProbe, timeout: float) -> Verdict:
        length = path.block_length or UNKNOWN_BLOCK

        async def probe(session: ProbeSession) -> Verdict:
            return await scsi_probe(path, session, C.read_10(0, 1), "READ (10) of LBA 0", read_length=length)

        return await bounded(path, timeout, probe)
