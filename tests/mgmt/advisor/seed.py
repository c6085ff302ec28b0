"""The seed's reference topology as advisor facts, clean: one host with a management NIC and two storage
NICs on 198.18.1.0/24 and 198.18.2.0/24, an array with controllers A and B each on both subnets (port
groups 1 and 2), one IQN in portal mode, one ALUA LUN, a multihomed PBD at [4, 4]. Each rule's test
breaks one thing of it."""

from __future__ import annotations

import dataclasses
from typing import Any

from sanpath.mgmt.advisor import check
from sanpath.mgmt.advisor.facts import Array, Facts, HostFacts, Lun, LunPath, Nic, Pbd, Portal, Route, Settings, Sr
from sanpath.mgmt.advisor.finding import Finding
from sanpath.multipath.config import MultipathConfig

IQN = "iqn.2026-12.org.sanpath.test:array"
HOST_IQN = "iqn.2026-12.com.example:host1"
SCSI_ID = "36001405aabbccddeeff00112233445566"
# (controller, subnet) -> address; port group = controller index
PORTALS = {("A", 1): "198.18.1.1", ("B", 1): "198.18.1.2", ("A", 2): "198.18.2.1", ("B", 2): "198.18.2.2"}


def nics() -> tuple[Nic, ...]:
    return (Nic("host-mgmt", ("198.18.0.10/24",), purpose="management"),
            Nic("host-s1", ("198.18.1.10/24",), purpose="storage"),
            Nic("host-s2", ("198.18.2.10/24",), purpose="storage"))


def routes() -> tuple[Route, ...]:
    return tuple(Route(address, f"198.18.{k}.10", f"host-s{k}") for (_, k), address in PORTALS.items())


def host(name: str = "host1", iqn: str = HOST_IQN, **kw: Any) -> HostFacts:
    return HostFacts(name, iqn, kw.pop("multipathing", True), kw.pop("handler", "dmp"), kw.pop("nics", nics()),
                     kw.pop("routes", routes()), **kw)


def array(iqn_of: Any = lambda c, k: IQN, vendor: str = "SANPATH", product: str = "sanpath-lun", tpgs: int = 3,
          ) -> Array:
    portals = tuple(Portal(a, 3260, iqn_of(c, k), "AB".index(c) + 1) for (c, k), a in PORTALS.items())
    paths = tuple(LunPath(p.address, 3260, p.iqn, p.tpgt, p.tpgt) for p in portals)
    return Array(("198.18.1.1:3260",), portals, (Lun(SCSI_ID, vendor, product, tpgs, paths),))


def sr(iqn: str = IQN, pbds: tuple[Pbd, ...] | None = None, portals: tuple[Portal, ...] | None = None) -> Sr:
    every = portals if portals is not None else array().portals
    return Sr("sr-1", "sr1", SCSI_ID, ("198.18.1.1:3260",), iqn, every,
              pbds if pbds is not None else (pbd(),))


def pbd(host_name: str = "host1", **kw: Any) -> Pbd:
    return Pbd(kw.pop("uuid", f"pbd-{host_name}"), host_name, True, True, kw.pop("multihomed", True),
               kw.pop("counts", (4, 4)), kw.pop("sessions", 4), initiator=kw.pop("initiator", ""), **kw)


def settings(arr: Array, host_name: str = "host1", **overrides: Any) -> tuple[Settings, ...]:
    out = []
    for lun in arr.luns:
        resolved = MultipathConfig().resolve(lun.vendor, lun.product, overrides)
        out.append(Settings(lun.scsi_id, {k: s.value for k, s in resolved.settings.items()}, host_name,
                            {k: str(s.origin) for k, s in resolved.settings.items()}))
    return tuple(out)


def clean(**kw: Any) -> Facts:
    arr = kw.pop("arrays", (array(),))
    return Facts(kw.pop("hosts", (host(),)), arr, kw.pop("srs", (sr(),)), kw.pop("settings", settings(arr[0])),
                 pool=kw.pop("pool", True), **kw)


def problems(facts: Facts) -> list[Finding]:
    """Findings of warning or error level."""
    return [f for f in check(facts) if f.severity]


def only(facts: Facts, rule: str) -> list[Finding]:
    """The findings, after checking that every warning or error is ``rule``'s."""
    found = problems(facts)
    assert {f.rule for f in found} == {rule}, [(f.rule, f.message) for f in found]
    return found


replace = dataclasses.replace
