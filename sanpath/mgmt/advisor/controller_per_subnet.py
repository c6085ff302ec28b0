"""controller-per-subnet: each storage subnet of a host reaches a portal of every array controller, so that
losing a controller, a switch or a NIC leaves a path on every side (the guide: on each controller, one NIC
on each storage subnet).

A portal's controller is its target port group as VPD 83h reports it through that portal (ALUA arrays, and
RDAC pairs, which report one group per controller); without that, its target portal group tag. An array
that shows one controller by both leaves nothing to judge."""

from __future__ import annotations

import ipaddress

from .facts import Array, Facts, Portal
from .finding import PHYSICAL, Finding, Severity

ID = "controller-per-subnet"


def controllers(array: Array) -> tuple[str, dict[tuple[str, int, str], str]]:
    """(basis, controller label per (address, port, IQN)) for every discovered portal."""
    groups: dict[tuple[str, int, str], int] = {}
    for lun in array.luns:
        for p in lun.paths:
            if p.port_group is not None:
                groups.setdefault((p.address, p.port, p.iqn), p.port_group)
    keys = [(p.address, p.port, p.iqn) for p in array.portals]
    if keys and all(k in groups for k in keys) and len(set(groups[k] for k in keys)) > 1:
        return "target port group (VPD 83h)", {k: f"port group {groups[k]}" for k in keys}
    return "target portal group tag (SendTargets)", {(p.address, p.port, p.iqn): f"TPGT {p.tpgt}"
                                                     for p in array.portals}


def _in(portal: Portal, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(portal.address) in network
    except ValueError:
        return False


def check(facts: Facts) -> list[Finding]:
    out = []
    for array in facts.arrays:
        basis, label = controllers(array)
        every = sorted(set(label.values()))
        if len(every) < 2:
            continue
        for host in facts.hosts:
            for nic, iface in host.storage_interfaces():
                here = [p for p in array.portals if _in(p, iface.network)]
                seen = sorted({label[(p.address, p.port, p.iqn)] for p in here})
                missing = [c for c in every if c not in seen]
                if not missing:
                    continue
                reach = f"reaches only {', '.join(seen)}" if seen else "reaches no portal"
                out.append(Finding(
                    ID, Severity.WARNING, PHYSICAL, f"{host.name}: {nic.name} ({iface.network})",
                    f"storage subnet {iface.network} ({nic.name}) {reach} of the array's {', '.join(every)}: "
                    f"losing {'that controller' if len(seen) == 1 else 'a controller'} leaves this NIC no path",
                    f"Put one NIC of each array controller ({', '.join(missing)} lacking) on {iface.network}, as "
                    "the guide's picture has it: controller A and B each with a NIC on every storage subnet.",
                    {"subnet": str(iface.network), "nic": nic.name, "basis": basis, "controllers": every,
                     "reached": seen, "portals": [p.portal for p in here]},
                    host.name))
    return out
