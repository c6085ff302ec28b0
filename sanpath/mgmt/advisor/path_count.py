"""path-count: every plugged PBD at its full count. Below its max (mpath-<SCSIid> [active, max]) a path is
down; with fewer sessions than the SR has portals (and multipathing on) a portal was never logged in to.
No active path at all is an error: I/O is queued or failing."""

from __future__ import annotations

from .facts import Facts
from .finding import ACTIVE_LINKS, Finding, Severity

ID = "path-count"


def check(facts: Facts) -> list[Finding]:
    multipathing = {h.name for h in facts.hosts if h.multipathing is not False}
    out = []
    for sr in facts.srs:
        for pbd in sr.pbds:
            if not pbd.attached or pbd.counts is None:
                continue
            active, maximum = pbd.counts
            evidence = {"pbd": pbd.uuid, "sr": sr.uuid, f"mpath-{sr.scsi_id}": [active, maximum],
                        "iscsi_sessions": pbd.sessions, "portals": [p.portal for p in sr.portals]}
            if active < maximum:
                severity = Severity.ERROR if active == 0 else Severity.WARNING
                out.append(Finding(
                    ID, severity, ACTIVE_LINKS, f"{pbd.host}: PBD {pbd.uuid}",
                    f"PBD {pbd.uuid} of SR {sr.name} has {active} of {maximum} paths active",
                    "See which paths are down (`sanpath pbd show UUID`): a cable, switch port, NIC or array port; "
                    "they come back by themselves once it is fixed.", evidence, pbd.host))
            elif pbd.multihomed and pbd.host in multipathing and pbd.sessions < len(sr.portals):
                out.append(Finding(
                    ID, Severity.WARNING, ACTIVE_LINKS, f"{pbd.host}: PBD {pbd.uuid}",
                    f"PBD {pbd.uuid} of SR {sr.name} has {pbd.sessions} session(s) for {len(sr.portals)} portals",
                    "Check that every portal is on a storage subnet of the host and answers a login.", evidence,
                    pbd.host))
    return out
