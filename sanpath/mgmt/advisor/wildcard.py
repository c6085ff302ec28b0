"""wildcard: the IQN chosen for an SR (or planned with ``--iqn``) fits the array. On an array that shows
one LUN through several IQNs, one IQN reaches only that IQN's portals: part of the paths. ``*`` on an
array with one IQN is wrong the other way (the guide warns against picking it only because it is
offered): pick the IQN itself."""

from __future__ import annotations

from .facts import Array, Facts
from .finding import CREATING_SR, Finding, Severity

ID = "wildcard"


def _spread(array: Array, scsi_id: str | None) -> tuple[str, ...]:
    """The IQNs one LUN is carried by: the SR's LUN, or any LUN when no SR is named; the discovered IQNs
    when no LUN was read."""
    if scsi_id and array.carriers(scsi_id):
        return array.carriers(scsi_id)
    widest = max((array.carriers(lun.scsi_id) for lun in array.luns), key=len, default=())
    return widest or array.iqns


def check(facts: Facts) -> list[Finding]:
    out = []
    for array, chosen, sr in facts.choices():
        carriers = _spread(array, sr.scsi_id if sr else None)
        subject = f"SR {sr.name}" if sr else f"array {','.join(array.targets)}"
        evidence = {"chosen": chosen, "iqns": list(array.iqns), "carriers": list(carriers)}
        if chosen == "*":
            if len(array.iqns) == 1:
                out.append(Finding(
                    ID, Severity.WARNING, CREATING_SR, subject,
                    f"the wildcard * is chosen, but the array returns one IQN ({array.iqns[0]})",
                    f"Pick the IQN {array.iqns[0]} itself; * is for arrays that return several IQNs.", evidence))
            continue
        if chosen.lower() not in {i.lower() for i in array.iqns}:
            out.append(Finding(
                ID, Severity.ERROR, CREATING_SR, subject,
                f"IQN {chosen} is not among those the array returns ({', '.join(array.iqns) or 'none'})",
                "Discover again and pick one of the IQNs listed, or * for an array that returns several.", evidence))
            continue
        if len(carriers) > 1:
            reached = [p.portal for p in array.portals if p.iqn.lower() == chosen.lower()]
            every = list(dict.fromkeys(p.portal for p in array.portals if p.iqn in carriers))
            out.append(Finding(
                ID, Severity.ERROR, CREATING_SR, subject,
                f"IQN {chosen} is one of {len(carriers)} IQNs that carry the same LUN: it reaches {len(reached)} of "
                f"the {len(every)} portals",
                "Use the wildcard * as the target IQN, with every target address in the target list (for an "
                "existing SR: forget it and create it again, its data stays on the LUN).",
                {**evidence, "reached": reached, "portals": every}))
    return out
