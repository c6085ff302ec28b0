"""The address plan as data: no root needed."""

from __future__ import annotations

import ipaddress

import pytest

from sanpath.errors import ConfigError
from sanpath.lab import Topology, parse_rate
from sanpath.lab.lab import default_burst
from sanpath.lab.topology import LAB_NETWORK


def test_reference_topology_matches_the_seed() -> None:
    topo = Topology()
    assert topo.roles == ("host", "array", "sw0", "sw1", "sw2")
    assert [(x.name, x.address, x.switch) for x in topo.links] == [
        ("host-mgmt", "198.18.0.10/24", "sw0"),
        ("host-s1", "198.18.1.10/24", "sw1"), ("ctlA-s1", "198.18.1.1/24", "sw1"), ("ctlB-s1", "198.18.1.2/24", "sw1"),
        ("host-s2", "198.18.2.10/24", "sw2"), ("ctlA-s2", "198.18.2.1/24", "sw2"), ("ctlB-s2", "198.18.2.2/24", "sw2"),
    ]
    assert [p for _, p in topo.portals()] == ["198.18.1.1:3260", "198.18.1.2:3260", "198.18.2.1:3260",
                                              "198.18.2.2:3260"]
    assert topo.controller_address("B", 2) == "198.18.2.2"
    assert topo.host_address(1) == "198.18.1.10"
    assert topo.link("ctlA-s1").port == "p-ctlA-s1"


def test_a_pool_of_three_hosts_shares_the_switches() -> None:
    topo = Topology(hosts=3)
    assert topo.roles == ("host", "host2", "host3", "array", "sw0", "sw1", "sw2")
    assert [(x.name, x.role, x.address) for x in topo.links if x.subnet == 1] == [
        ("host-s1", "host", "198.18.1.10/24"), ("h2-s1", "host2", "198.18.1.11/24"),
        ("h3-s1", "host3", "198.18.1.12/24"), ("ctlA-s1", "array", "198.18.1.1/24"),
        ("ctlB-s1", "array", "198.18.1.2/24")]
    assert topo.link("h3-mgmt").address == "198.18.0.12/24"
    assert topo.host_address(2, host=3) == "198.18.2.12"


def test_every_address_is_in_the_benchmarking_range_and_names_fit_ifnamsiz() -> None:
    topo = Topology(subnets=16, controllers=8, hosts=8)
    addresses = [ipaddress.IPv4Interface(x.address) for x in topo.links]
    assert all(a.ip in LAB_NETWORK for a in addresses)
    assert len({a.ip for a in addresses}) == len(addresses)
    assert all(len(x.port) <= 15 and len(x.name) <= 15 for x in topo.links)
    # each storage subnet: one host NIC and one NIC per controller, on its own switch
    assert [x.name for x in topo.links if x.subnet == 16] == ["host-s16", *(f"h{n}-s16" for n in range(2, 9)),
                                                              *(f"ctl{c}-s16" for c in "ABCDEFGH")]


def test_bad_topologies_and_links_are_refused() -> None:
    with pytest.raises(ConfigError, match="subnets"):
        Topology(subnets=0)
    with pytest.raises(ConfigError, match="controllers"):
        Topology(controllers=9)
    with pytest.raises(ConfigError, match="hosts"):
        Topology(hosts=9)
    with pytest.raises(ConfigError, match=r"no link 'host-s3'.*host-s1"):
        Topology().link("host-s3")


def test_rates_parse_like_tc() -> None:
    assert parse_rate("1gbit") == 10**9
    assert parse_rate("100mbit") == 10**8
    assert parse_rate("125mbps") == 10**9
    assert parse_rate("1000000") == 10**6
    assert default_burst("1gbit") == "125000"
    assert default_burst("100mbit") == str(32 * 1024)
    with pytest.raises(ConfigError, match="not a rate"):
        parse_rate("fast")
