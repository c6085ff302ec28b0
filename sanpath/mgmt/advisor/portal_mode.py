"""portal-mode: how the array answers discovery. One IQN listing every portal is portal mode (the guide's
good case: log in to that IQN on every portal). Several IQNs (DataCore, StarWind and the like) call for
the wildcard ``*`` with every target address in the target list, since such an array may list only the
IQNs of the address asked. One IQN on a single portal gives one path per storage NIC at best."""

from __future__ import annotations

from .facts import Facts
from .finding import CONFIGURING, CREATING_SR, Finding, Severity

ID = "portal-mode"


def check(facts: Facts) -> list[Finding]:
    out = []
    for array in facts.arrays:
        if not array.portals:
            continue
        subject = f"array {','.join(array.targets)}"
        portals = list(dict.fromkeys(p.portal for p in array.portals))
        evidence = {"targets": list(array.targets), "iqns": {iqn: [p.portal for p in array.portals if p.iqn == iqn]
                                                            for iqn in array.iqns}}
        if len(array.iqns) == 1:
            if len(portals) > 1:
                out.append(Finding(ID, Severity.OK, CONFIGURING, subject,
                                   f"portal mode: one IQN ({array.iqns[0]}) on {len(portals)} portals",
                                   "Nothing to do: use that IQN; the SR logs in on every portal.", evidence))
            else:
                out.append(Finding(
                    ID, Severity.WARNING, CONFIGURING, subject,
                    f"discovery lists one IQN on one portal only ({portals[0]}): the array's ports are not in "
                    "portal mode (or it has one port), so each storage NIC gets one path at best",
                    "Put the array's target ports in portal mode, so that discovery lists every portal under the "
                    "IQN (see the array vendor's guide); then discover again.", evidence))
            continue
        asked = {t.rsplit(":", 1)[0].strip("[]") for t in array.targets}
        missing = sorted({p.address for p in array.portals} - asked)
        if missing:
            out.append(Finding(
                ID, Severity.WARNING, CREATING_SR, subject,
                f"the array returns {len(array.iqns)} IQNs, but the target list lacks {', '.join(missing)}",
                f"List every target address, comma separated, as the target (add {', '.join(missing)}), and pick "
                "the wildcard * as the target IQN.", {**evidence, "missing": missing}))
        else:
            out.append(Finding(ID, Severity.OK, CREATING_SR, subject,
                               f"multi-IQN array: {len(array.iqns)} IQNs, every target address listed",
                               "Pick the wildcard * as the target IQN.", evidence))
    return out
