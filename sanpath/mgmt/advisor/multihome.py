"""multihome: with multipathing on, every plugged PBD is multihomed (logged in on every portal). A PBD made
while multipathing was off, or pinned with device-config multihomed=false, keeps one session however many
paths there are: the guide's case of the SR created before multipathing was enabled."""

from __future__ import annotations

from .facts import Facts
from .finding import ACTIVE_LINKS, Finding, Severity

ID = "multihome"


def check(facts: Facts) -> list[Finding]:
    multipathing = {h.name for h in facts.hosts if h.multipathing}
    out = []
    for sr in facts.srs:
        for pbd in sr.pbds:
            if pbd.host not in multipathing or not pbd.attached or pbd.multihomed:
                continue
            out.append(Finding(
                ID, Severity.WARNING, ACTIVE_LINKS, f"{pbd.host}: PBD {pbd.uuid}",
                f"multipathing is on for {pbd.host}, but PBD {pbd.uuid} of SR {sr.name} is not multihomed: it has "
                f"{pbd.sessions} session(s) where the SR has {len(sr.portals)} portal(s)",
                f"Put {pbd.host} in maintenance mode and set multipathing again (`sanpath host maintenance enter`, "
                "`sanpath host set-multipathing on`, `... maintenance exit`): its PBDs are replugged multihomed.",
                {"pbd": pbd.uuid, "sr": sr.uuid, "sessions": pbd.sessions, "portals": [p.portal for p in sr.portals]},
                pbd.host))
    return out
