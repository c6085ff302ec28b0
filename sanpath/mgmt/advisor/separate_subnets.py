"""separate-subnets: every storage NIC of a host on a subnet of its own. Two on one subnet share one
connected route, so the kernel sends both NICs' traffic out of one of them and round robin spreads
nothing (and a cable pull on the chosen one takes both paths)."""

from __future__ import annotations

from .facts import Facts
from .finding import PHYSICAL, Finding, Severity

ID = "separate-subnets"


def check(facts: Facts) -> list[Finding]:
    out = []
    for host in facts.hosts:
        shared: dict[str, list[str]] = {}
        for nic, iface in host.storage_interfaces():
            shared.setdefault(str(iface.network), [])
            if nic.name not in shared[str(iface.network)]:
                shared[str(iface.network)].append(nic.name)
        for net, names in shared.items():
            if len(names) < 2:
                continue
            out.append(Finding(
                ID, Severity.ERROR, PHYSICAL, f"{host.name}: {', '.join(names)}",
                f"storage NICs {', '.join(names)} are all on {net}: the kernel sends their traffic out of one "
                "of them, so the paths share one NIC and round robin spreads nothing",
                f"Give each storage NIC a subnet of its own (and one NIC of each array controller on each of "
                f"those subnets), or use only one of {', '.join(names)} for storage.",
                {"subnet": net,
                 "nics": {nic.name: list(nic.addresses) for nic in host.purpose("storage") if nic.name in names}},
                host.name))
    return out
