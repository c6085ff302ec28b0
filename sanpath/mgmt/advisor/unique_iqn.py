"""unique-iqn: every initiator and every target has a name of its own. iSCSI names compare without regard
to case (RFC 3722's stringprep folds them to lower case), so two hosts whose IQNs differ only in case are
one initiator to the array: their sessions displace each other and reservations and ACLs mix (data
corruption or denied access, as the guide warns). A host named like a target confuses ACLs the same way."""

from __future__ import annotations

from .facts import Facts
from .finding import CONFIGURING, Finding, Severity

ID = "unique-iqn"


def check(facts: Facts) -> list[Finding]:
    out = []
    users: dict[str, dict[str, str]] = {}  # folded IQN -> host name -> the IQN as written
    for host in facts.hosts:
        if host.iqn:
            users.setdefault(host.iqn.lower(), {})[host.name] = host.iqn
    for sr in facts.srs:
        for pbd in sr.pbds:
            if pbd.initiator:
                users.setdefault(pbd.initiator.lower(), {}).setdefault(pbd.host, pbd.initiator)
    for iqn, hosts in users.items():
        if len(hosts) > 1:
            names = sorted(hosts)
            out.append(Finding(
                ID, Severity.ERROR, CONFIGURING, f"IQN {iqn}",
                f"hosts {', '.join(names)} log in with one initiator name ({', '.join(sorted(set(hosts.values())))}): "
                "the array takes them for one initiator",
                "Give each host an IQN of its own (`sanpath host set-iqn IQN --host NAME` in maintenance mode), "
                "then replug its PBDs.", {"iqn": iqn, "hosts": hosts}))
    targets = {p.iqn.lower(): p.iqn for a in facts.arrays for p in a.portals}
    for host in facts.hosts:
        if host.iqn and host.iqn.lower() in targets:
            out.append(Finding(
                ID, Severity.ERROR, CONFIGURING, f"{host.name}: IQN {host.iqn}",
                f"host {host.name}'s initiator IQN {host.iqn} is also a target's name",
                "Give the host an IQN of its own; an initiator and a target must never share one.",
                {"iqn": host.iqn, "target": targets[host.iqn.lower()]}, host.name))
    return out
