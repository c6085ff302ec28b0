"""Login stages (RFC 7143 §6.3, §11.12.3), one table for both roles.

A login moves from the security stage to the operational stage to full feature phase, and may skip
the operational stage. The initiator asks for a transit (T bit, NSG); the target grants it by
answering with T set; either way the connection's stage moves only through ``TRANSITIONS``. A missing
entry is a protocol error naming the role, the stage and the stage asked for.
"""

from __future__ import annotations

from .constants import Stage
from .keys import Role

# stage -> the stages a transit may lead to
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.SECURITY: frozenset({Stage.OPERATIONAL, Stage.FULL_FEATURE}),
    Stage.OPERATIONAL: frozenset({Stage.FULL_FEATURE}),
    Stage.FULL_FEATURE: frozenset(),
}

# the stages a login may start in: without authentication the initiator may begin in the operational one
FIRST = frozenset({Stage.SECURITY, Stage.OPERATIONAL})


class StageError(ValueError):
    """A transit the table does not allow; the login code turns it into its role's error."""


def transit(role: Role, csg: int, nsg: int) -> Stage:
    """The stage after a transit from ``csg`` to ``nsg``, or ``StageError`` naming what was wrong."""
    try:
        current, wanted = Stage(csg), Stage(nsg)
    except ValueError:
        raise StageError(f"{role.value}: stage {csg} -> {nsg}: not a login stage (RFC 7143 11.12.3)") from None
    if wanted not in TRANSITIONS[current]:
        raise StageError(f"{role.value}: transit from the {current.name.lower()} stage to "
                         f"{wanted.name.lower()} is not allowed (RFC 7143 6.3)")
    return wanted


def first(role: Role, csg: int) -> Stage:
    """The stage of a login's first PDU, or ``StageError``."""
    if csg not in FIRST:
        raise StageError(f"{role.value}: a login cannot start in stage {csg} (RFC 7143 6.3)")
    return Stage(csg)
