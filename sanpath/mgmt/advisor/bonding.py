"""bonding: no bond or team under multipathing. The guide strongly recommends against layering the two:
multipathing already gives the failover a bond would, and a bond under it hides the links from the path
checker (an array that cannot do iSCSI over several addresses is the exception: the handler rule says so)."""

from __future__ import annotations

from .facts import Facts
from .finding import REDUNDANCY, Finding, Severity

ID = "bonding"


def check(facts: Facts) -> list[Finding]:
    out = []
    for host in facts.hosts:
        for nic in host.purpose("storage"):
            role = nic.aggregated
            if not role:
                continue
            what = f"a {nic.kind} master" if role == "master" else f"a port of {nic.master_kind} {nic.master}"
            ports = [n.name for n in host.nics if n.master == nic.name] if role == "master" else []
            out.append(Finding(
                ID, Severity.WARNING, REDUNDANCY, f"{host.name}: {nic.name}",
                f"storage NIC {nic.name} is {what}: bonding under multipathing adds nothing and hides link "
                "failures from the path checker",
                "Take the NICs out of the bond and give each its own storage subnet; multipathing then spreads I/O "
                "over them and fails over by itself.",
                {"nic": nic.name, "kind": nic.kind, "master": nic.master, "master_kind": nic.master_kind,
                 "ports": ports}, host.name))
    return out
