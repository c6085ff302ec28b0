"""``rdac``: the RDAC volume access control page (VPD C9h) through the path, as multipath-tools' rdac
checker reads it: down when the page cannot be read, the volume is not connected through this port,
this controller's port group is unavailable, or this controller alone is transitioning (it is booting);
up when this controller owns the volume (or the array ships I/O between controllers); ghost otherwise
(the passive controller: alive, but I/O here would get ILLEGAL REQUEST 94h/01h).
"""

from __future__ import annotations

from ...scsi import cdb as C
from ...scsi import rdac as R
from ...scsi.constants import AluaState, Status
from ..probe import PathProbe, ProbeSession, command
from ..states import CheckResult
from .common import Verdict, bounded, classify


def judge(page: R.VolumeAccess) -> Verdict:
    """The verdict on one C9h page."""
    if not page.connected:
        return CheckResult.DOWN, "volume not connected through this port (VPD C9h)"
    if page.tpg_data:
        if page.state == AluaState.UNAVAILABLE:
            return CheckResult.DOWN, f"controller unavailable (reason code 0x{page.state_reason:02x})"
        if page.state == AluaState.TRANSITIONING and page.alternate_state != AluaState.TRANSITIONING:
            return CheckResult.DOWN, "controller is starting up (transitioning alone)"
    if page.owned:
        return CheckResult.UP, "controller owns the volume"
    if page.ioship:
        return CheckResult.UP, "I/O shipping: either controller serves the volume"
    return CheckResult.GHOST, "controller does not own the volume (passive path)"


class RdacChecker:
    name = "rdac"
    options: tuple[str, ...] = ()

    async def check(self, path: PathProbe, timeout: float) -> Verdict:
        async def probe(session: ProbeSession) -> Verdict:
            for _ in range(2):
                result = await command(path, session, C.inquiry(evpd=True, page=R.PAGE, alloc=255), read_length=255)
                if result.status == Status.GOOD:
                    return judge(R.parse_volume_access(result.data))
                verdict = classify(result, "INQUIRY VPD C9h")
                if verdict is None:
                    continue  # UNIT ATTENTION: ask again
                return verdict if verdict[0] == CheckResult.UP else (CheckResult.DOWN, verdict[1])
            return CheckResult.DOWN, "INQUIRY VPD C9h: UNIT ATTENTION twice in a row"

        return await bounded(path, timeout, probe)
