"""management-interface: no storage traffic through the management interface, and none through a NIC
that is not a storage NIC. Judged from the kernel's own route choice for each path (``ip route get
PORTAL from SOURCE``, or with no source for a portal in no storage subnet, which such a path takes); for a
host whose routes were not looked up here (another host of the pool), from the paths its daemon reports as
going through the routing table."""

from __future__ import annotations

import ipaddress

from .facts import Facts
from .finding import PHYSICAL, Finding, Severity

ID = "management-interface"
LOOPBACK = "lo"  # a portal on this machine itself: its traffic crosses no NIC


def check(facts: Facts) -> list[Finding]:
    out = []
    for host in facts.hosts:
        management = {n.name for n in host.purpose("management")}
        storage = {n.name for n in host.purpose("storage")}
        for route in host.routes:
            if route.device in ("", LOOPBACK):
                continue  # no way there at all (path-count's business), or a portal on this machine
            via = f" via {route.gateway}" if route.gateway else ""
            source = f" from {route.source}" if route.source else ""
            evidence = {"portal": route.portal, "source": route.source, "device": route.device,
                        "gateway": route.gateway, "management": sorted(management), "storage": sorted(storage)}
            if route.device in management:
                out.append(Finding(
                    ID, Severity.ERROR, PHYSICAL, f"{host.name}: {route.portal}",
                    f"traffic to portal {route.portal}{source} leaves through the management interface "
                    f"{route.device}{via}", _fix(route.portal), evidence, host.name))
            elif route.device not in storage:
                out.append(Finding(
                    ID, Severity.WARNING, PHYSICAL, f"{host.name}: {route.portal}",
                    f"traffic to portal {route.portal}{source} leaves through {route.device}{via}, which is not "
                    f"a storage NIC ({', '.join(sorted(storage)) or 'none'})", _fix(route.portal), evidence,
                    host.name))
    looked = {h.name for h in facts.hosts if h.routes}
    for sr in facts.srs:
        for pbd in sr.pbds:
            routed = [name for name in pbd.routed if not _local(name)]
            if pbd.host in looked or not routed or not pbd.attached:
                continue
            out.append(Finding(
                ID, Severity.WARNING, PHYSICAL, f"{pbd.host}: PBD {pbd.uuid}",
                f"PBD {pbd.uuid} of SR {sr.name} has {len(routed)} path(s) through the routing table "
                f"({', '.join(routed)}): their portals are in none of the host's storage subnets",
                "Run `sanpath doctor` on that host to see the interface they leave by; give it a storage NIC on "
                "each portal's subnet.", {"pbd": pbd.uuid, "routed": routed}, pbd.host))
    return out


def _local(path: str) -> bool:
    """Whether a path name (``[SOURCE->]ADDRESS:PORT/IQN``) leads to a loopback portal."""
    address = path.split("->")[-1].split("/")[0].rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _fix(portal: str) -> str:
    return (f"Give this host a storage NIC on {portal}'s subnet (one subnet per storage NIC), so that the path is "
            "bound to it; do not route iSCSI through the management network.")
