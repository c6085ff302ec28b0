"""``tur``: TEST UNIT READY through the path (multipath-tools' default checker).

Cheap and answered by every target, but it proves only that the target's SCSI layer answers: a target
whose backing store is dead may still say GOOD (PEERS.md failure mode 1). Use ``readsector0`` for that.
Verdicts: see ``common.classify``.
"""

from __future__ import annotations

from ...scsi import cdb as C
from ..probe import PathProbe, ProbeSession
from .common import Verdict, bounded, scsi_probe


class TurChecker:
    name = "tur"
    options: tuple[str, ...] = ()

    async def check(self, path: PathProbe, timeout: float) -> Verdict:
        async def probe(session: ProbeSession) -> Verdict:
            return await scsi_probe(path, session, C.test_unit_ready(), "TEST UNIT READY")

        return await bounded(path, timeout, probe)
