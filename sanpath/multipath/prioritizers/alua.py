"""``alua``: priority from the asymmetric access state of the path's target port group (SPC-4 5.15),
with multipath-tools' alua values: active/optimized 50, active/non-optimized 10, logical block
dependent 5, standby 1, unavailable/offline/transitioning 0; plus 80 when the group has the preferred
(PREF) bit and is not active/optimized (or always, with ``exclusive_pref_bit``). The "not optimized"
rule keeps a preferred optimized group level with the other optimized groups, so they share I/O.

The path's own group is found from VPD page 83h: the target port group designator, else the relative
target port designator matched against REPORT TARGET PORT GROUPS' port lists. The state and group id are
recorded on the path (``alua_state``, ``tpg_id``) for status displays.
"""

from __future__ import annotations

from ...errors import RemoteProtocolError
from ...scsi import cdb as C
from ...scsi import parse as S
from ...scsi.constants import AluaState, Association, DesignatorType, VpdPage
from ..probe import PathProbe, ProbeSession, data_in
from .common import bounded

PRIO_BY_STATE: dict[int, int] = {
    AluaState.ACTIVE_OPTIMIZED: 50,
    AluaState.ACTIVE_NON_OPTIMIZED: 10,
    AluaState.LOGICAL_BLOCK_DEPENDENT: 5,
    AluaState.STANDBY: 1,
}
PREFERRED_BONUS = 80


def alua_priority(state: int, preferred: bool, *, exclusive_pref_bit: bool = False) -> int:
    prio = PRIO_BY_STATE.get(state, 0)  # unavailable, offline, transitioning, reserved: 0
    if preferred and (state != AluaState.ACTIVE_OPTIMIZED or exclusive_pref_bit):
        prio += PREFERRED_BONUS
    return prio


def own_group(designators: tuple[S.Designator, ...], groups: S.TargetPortGroups) -> S.TargetPortGroup:
    """The target port group of the port that answered VPD 83h."""
    def port_value(kind: int) -> int | None:
        for d in designators:
            if d.association == Association.TARGET_PORT and d.designator_type == kind and len(d.value) >= 4:
                return int.from_bytes(d.value[2:4], "big")
        return None

    tpg_id = port_value(DesignatorType.TARGET_PORT_GROUP)
    if tpg_id is not None:
        for g in groups.groups:
            if g.tpg_id == tpg_id:
                return g
    rel = port_value(DesignatorType.RELATIVE_TARGET_PORT)
    if rel is not None:
        for g in groups.groups:
            if rel in g.relative_port_ids:
                return g
    raise RemoteProtocolError(f"REPORT TARGET PORT GROUPS lists no group for this port (VPD 83h: target port "
                              f"group {tpg_id}, relative port {rel}; SPC-4 7.8.6.7, 7.8.6.8)")


class AluaPrioritizer:
    name = "alua"
    options: tuple[str, ...] = ()

    def __init__(self, *, exclusive_pref_bit: bool = False) -> None:
        self.exclusive_pref_bit = exclusive_pref_bit

    async def priority(self, path: PathProbe, timeout: float) -> int:
        async def probe(session: ProbeSession) -> int:
            vpd83 = await data_in(path, session, C.inquiry(evpd=True, page=VpdPage.DEVICE_IDENTIFICATION,
                                                           alloc=4096), 4096)
            rtpg = await data_in(path, session, C.report_target_port_groups(4096, extended=True), 4096)
            group = own_group(S.parse_device_identification(vpd83), S.parse_report_target_port_groups(rtpg))
            path.tpg_id = group.tpg_id
            path.alua_state = group.alua_state
            return alua_priority(group.alua_state, group.preferred, exclusive_pref_bit=self.exclusive_pref_bit)

        return await bounded(self.name, path, timeout, probe)
