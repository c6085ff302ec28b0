"""This kernel has no bonding or team driver, so the NICs come from a recorded netlink dump: the JSON of
``ip -details -json address show`` (written by us in that format) of a host whose storage sits on bond0
over eth1 and eth2, and on team0 over eth3."""

from __future__ import annotations

from pathlib import Path

from sanpath.mgmt.advisor import check
from sanpath.mgmt.advisor.facts import Facts
from sanpath.mgmt.advisor.finding import Severity
from sanpath.mgmt.advisor.gather import links_from_ip_json, machine

DUMP = Path(__file__).with_name("data") / "ip-addr-bond-team.json"


def test_bond_and_team_under_multipathing_from_a_recorded_dump() -> None:
    links = links_from_ip_json(DUMP.read_text())
    by = {link.name: link for link in links}
    assert by["bond0"].kind == "bond" and by["eth1"].master == "bond0" and by["eth1"].master_kind == "bond"
    assert by["team0"].kind == "team" and by["bond0"].addresses == ("198.18.1.10/24",)
    host = machine("recorded", "iqn.2026-12.com.example:recorded", links, default_device="eth0")
    purposes = {n.name: n.purpose for n in host.nics}
    assert purposes == {"eth0": "management", "eth1": "none", "eth2": "none", "bond0": "storage", "eth3": "none",
                        "team0": "storage"}
    found = [f for f in check(Facts(hosts=(host,))) if f.severity]
    assert [(f.rule, f.subject, f.severity) for f in found] == [
        ("bonding", "recorded: bond0", Severity.WARNING), ("bonding", "recorded: team0", Severity.WARNING)]
    assert found[0].evidence == {"nic": "bond0", "kind": "bond", "master": "", "master_kind": "",
                                 "ports": ["eth1", "eth2"]}
    assert found[0].section.title == "Creating Redundancy for Storage Traffic"


def test_a_port_of_a_bond_named_as_storage() -> None:
    links = links_from_ip_json(DUMP.read_text())
    host = machine("recorded", "iqn.2026-12.com.example:recorded", links, management="eth0", storage=["eth1"])
    [f] = [f for f in check(Facts(hosts=(host,))) if f.severity]
    assert f.rule == "bonding" and "a port of bond bond0" in f.message
