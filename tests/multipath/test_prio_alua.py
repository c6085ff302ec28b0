"""alua: multipath-tools' values from the path's own target port group, found through VPD 83h."""

from __future__ import annotations

import pytest

from sanpath.initiator.session import CommandResult
from sanpath.multipath.prioritizers import PRIO_UNDEF, PRIORITIZERS
from sanpath.multipath.prioritizers.alua import AluaPrioritizer, alua_priority, own_group
from sanpath.scsi.constants import AluaState, Association, DesignatorType
from sanpath.scsi.parse import Designator, TargetPortGroup, TargetPortGroups
from sanpath.scsi.sense import build_fixed_sense
from sanpath.target.common import PortGroupInfo
from sanpath.target.config import quick_config
from sanpath.testing.inproc import TEST_IQN, running_target

from .plugin_helpers import StubSession, bare_paths, fake_alua, live_path, stub_path

A, B = "127.0.0.1", "127.0.0.2"


def two_controllers(**kw: str) -> object:
    return quick_config(TEST_IQN, [f"{A}:0", f"{B}:0"], ["mem:4MiB"], profile="alua", owner="A", **kw)


@pytest.mark.parametrize(("state", "preferred", "expected"), [
    (AluaState.ACTIVE_OPTIMIZED, False, 50),
    (AluaState.ACTIVE_OPTIMIZED, True, 50),  # no bonus: optimized groups stay level and share I/O
    (AluaState.ACTIVE_NON_OPTIMIZED, False, 10),
    (AluaState.ACTIVE_NON_OPTIMIZED, True, 90),
    (AluaState.LOGICAL_BLOCK_DEPENDENT, False, 5),
    (AluaState.STANDBY, False, 1),
    (AluaState.STANDBY, True, 81),
    (AluaState.UNAVAILABLE, False, 0),
    (AluaState.OFFLINE, False, 0),
    (AluaState.TRANSITIONING, False, 0),
])
async def test_values_per_state(state: AluaState, preferred: bool, expected: int,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_target(spec=two_controllers()) as server:  # type: ignore[arg-type]
        target = server.targets[TEST_IQN]
        lu = target.luns[0]
        tpg = {tpg.network_portals[0].ip_address: tpg.tpg_id for tpg in target.tpgs}
        groups = [PortGroupInfo(tpg[A], state, (1,), preferred),
                  PortGroupInfo(tpg[B], AluaState.ACTIVE_OPTIMIZED, (2,))]
        fake_alua(monkeypatch, lu, groups)
        index = next(i for i, (h, _) in enumerate(server.portals) if h == A)
        async with live_path(server, index) as path:
            assert await AluaPrioritizer().priority(path, 5.0) == expected
            assert path.alua_state == state
            assert path.tpg_id == tpg[A]


@pytest.mark.parametrize(("non_owner_state", "passive"), [("non-optimized", 10), ("standby", 1)])
async def test_alua_profile_owner_and_other_controller(non_owner_state: str, passive: int) -> None:
    async with running_target(spec=two_controllers(non_owner_state=non_owner_state)) as server:  # type: ignore[arg-type]
        by_host = {h: i for i, (h, _) in enumerate(server.portals)}
        async with live_path(server, by_host[A]) as a, live_path(server, by_host[B]) as b:
            assert await AluaPrioritizer().priority(a, 5.0) == 50
            assert await AluaPrioritizer().priority(b, 5.0) == passive
            assert a.alua_state == AluaState.ACTIVE_OPTIMIZED and a.tpg_id != b.tpg_id


async def test_single_portal_group_target() -> None:
    async with running_target() as server, live_path(server) as path:
        assert await AluaPrioritizer().priority(path, 5.0) == 50


def test_exclusive_pref_bit() -> None:
    assert alua_priority(AluaState.ACTIVE_OPTIMIZED, True, exclusive_pref_bit=True) == 130
    assert alua_priority(AluaState.ACTIVE_OPTIMIZED, False, exclusive_pref_bit=True) == 50


def port_designator(kind: int, value: int) -> Designator:
    return Designator(5, 1, True, Association.TARGET_PORT, kind, value.to_bytes(4, "big"))


def test_own_group_by_relative_port_when_no_group_designator() -> None:
    groups = TargetPortGroups((TargetPortGroup(7, 0, False, 0x8F, 0, (1, 2)),
                               TargetPortGroup(9, 2, False, 0x8F, 0, (3,))))
    assert own_group((port_designator(DesignatorType.RELATIVE_TARGET_PORT, 3),), groups).tpg_id == 9
    assert own_group((port_designator(DesignatorType.TARGET_PORT_GROUP, 7),), groups).tpg_id == 7
    with pytest.raises(Exception, match="lists no group for this port"):
        own_group((port_designator(DesignatorType.RELATIVE_TARGET_PORT, 5),), groups)


async def test_failures_give_prio_undef() -> None:
    refused = StubSession(lambda cdb: CommandResult(0x02, sense=build_fixed_sense(0x5, 0x20, 0x00)))
    assert await AluaPrioritizer().priority(stub_path(refused), 1.0) == PRIO_UNDEF
    assert await AluaPrioritizer().priority(stub_path(StubSession(hang=True)), 0.05) == PRIO_UNDEF
    assert await AluaPrioritizer().priority(bare_paths(1)[0], 1.0) == PRIO_UNDEF


def test_registry() -> None:
    assert PRIORITIZERS["alua"] is AluaPrioritizer
