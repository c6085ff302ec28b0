"""``rdac``: priority from the RDAC volume access control page (VPD C9h), with multipath-tools' rdac
values: 2 when the controller answering owns the volume (CVP bit), plus 4 when this is the preferred path
(path priority 1) or 1 when it is the secondary path (path priority 2).

So owner+preferred 6 > non-owner+preferred 4 > owner+secondary 3 > non-owner+secondary 1: the preferred
controller's paths win even while the other controller holds the volume, which is how the rdac handler
moves the volume back to its preferred controller (failback) once that controller returns.
"""

from __future__ import annotations

from ...scsi import cdb as C
from ...scsi import rdac as R
from ..probe import PathProbe, ProbeSession, data_in
from .common import bounded

OWNER = 2
PREFERRED_PATH = 4
SECONDARY_PATH = 1


def rdac_priority(page: R.VolumeAccess) -> int:
    prio = OWNER if page.owned else 0
    if page.path_priority == R.PREFERRED:
        prio += PREFERRED_PATH
    elif page.path_priority == R.SECONDARY:
        prio += SECONDARY_PATH
    return prio


class RdacPrioritizer:
    name = "rdac"
    options: tuple[str, ...] = ()

    async def priority(self, path: PathProbe, timeout: float) -> int:
        async def probe(session: ProbeSession) -> int:
            page = await data_in(path, session, C.inquiry(evpd=True, page=R.PAGE, alloc=255), 255)
            return rdac_priority(R.parse_volume_access(page))

        return await bounded(self.name, path, timeout, probe)
