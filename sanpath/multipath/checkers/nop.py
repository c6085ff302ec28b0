"""``nop``: an iSCSI NOP-Out / NOP-In round trip on the path's session (RFC 7143 §11.18, §11.19).

Proves the connection and the target's iSCSI layer are alive; says nothing about the LUN (no SCSI
command is sent), so it never reports ghost. Useful against targets whose SCSI layer is slow to answer
but whose network path is what fails.
"""

from __future__ import annotations

from ..probe import PathProbe, ProbeSession
from ..states import CheckResult
from .common import Verdict, bounded


class NopChecker:
    name = "nop"
    options: tuple[str, ...] = ()

    async def check(self, path: PathProbe, timeout: float) -> Verdict:
        async def probe(session: ProbeSession) -> Verdict:
            rtt = await session.ping(timeout)
            return CheckResult.UP, f"NOP-In after {rtt * 1000:.1f} ms"

        return await bounded(path, timeout, probe)
