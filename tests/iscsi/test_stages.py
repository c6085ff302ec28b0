"""The login stage table both roles share: every allowed transit, and every other pair refused with an
error naming the role and the stages."""

from __future__ import annotations

import itertools

import pytest

from sanpath.iscsi import stages
from sanpath.iscsi.constants import Stage
from sanpath.iscsi.keys import Role

ALLOWED = {(Stage.SECURITY, Stage.OPERATIONAL), (Stage.SECURITY, Stage.FULL_FEATURE),
           (Stage.OPERATIONAL, Stage.FULL_FEATURE)}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("csg", "nsg"), list(itertools.product([*Stage, 2], repeat=2)))
def test_transit(role: Role, csg: int, nsg: int) -> None:
    if (csg, nsg) in ALLOWED:
        assert stages.transit(role, csg, nsg) == nsg
        return
    with pytest.raises(stages.StageError, match=rf"^{role.value}: .*(not allowed|not a login stage)"):
        stages.transit(role, csg, nsg)


@pytest.mark.parametrize("role", list(Role))
def test_a_login_starts_in_security_or_operational_only(role: Role) -> None:
    assert stages.first(role, Stage.SECURITY) == Stage.SECURITY
    assert stages.first(role, Stage.OPERATIONAL) == Stage.OPERATIONAL
    for csg in (Stage.FULL_FEATURE, 2):
        with pytest.raises(stages.StageError, match="cannot start"):
            stages.first(role, csg)
