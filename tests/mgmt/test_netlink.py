"""sanpath.mgmt.netlink: links, addresses and the kernel's route choice, read over rtnetlink.

The current namespace is read as any user; the rest runs in a network namespace the test makes itself
(two veth pairs, a bridge, 198.18.0.0/15 addresses only) and deletes afterwards. That needs root and
iproute2: skips without them locally, fails under CI=true.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from sanpath.errors import ConfigError
from sanpath.lab import netns as lab
from sanpath.mgmt.netlink import Link, RouteChoice, _cidr, default_route_device, read_links, route_lookup


def require_root() -> None:
    """Skip (fail under CI=true) unless we can make a network namespace."""
    if os.geteuid() == 0 and shutil.which("ip") is not None:
        return
    message = "needs root and iproute2 (ip) to create a network namespace"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def ns() -> Iterator[str]:
    """A namespace with spa0 (198.18.1.2/24) and spa1 (198.18.2.2/24), their veth peers spb0 and spb1,
    and a bridge spbr0 with spb0 as its port; every link up, no default route, IPv6 off."""
    require_root()
    name = f"sp-nl-{secrets.token_hex(4)}"
    ledger = lab.Ledger()
    try:
        ledger.add_netns(name)
        ledger.add_veth("spa0", name, "spb0", name)
        ledger.add_veth("spa1", name, "spb1", name)
        ledger.add_bridge("spbr0", name)
        lab.set_master(name, "spb0", "spbr0")
        for dev in ("spa0", "spb0", "spa1", "spb1"):
            lab.set_link(name, dev, "up")
        lab.add_address(name, "spa0", "198.18.1.2/24")
        lab.add_address(name, "spa1", "198.18.2.2/24")
        yield name
    finally:
        problems = ledger.teardown()
        assert not lab.netns_exists(name)
        assert not problems, problems


def by_name(links: list[Link]) -> dict[str, Link]:
    return {link.name: link for link in links}


# --- the current namespace ----------------------------------------------------------------------------


def test_loopback_in_current_namespace() -> None:
    links = read_links()
    assert [link.index for link in links] == sorted(link.index for link in links)
    lo = by_name(links)["lo"]
    assert lo.index == 1
    assert "127.0.0.1/8" in lo.addresses
    assert lo.up and lo.carrier
    assert lo.kind == "" and lo.master == ""
    assert ipaddress.IPv4Interface("127.0.0.1/8") in lo.networks()
    assert not any(ipaddress.ip_interface(a).ip.is_link_local for link in links for a in link.addresses
                   if ipaddress.ip_interface(a).version == 6)


def test_route_lookup_loopback() -> None:
    assert route_lookup("127.0.0.2") == RouteChoice(device="lo", source="127.0.0.1", gateway="")


async def test_works_from_async_code() -> None:
    # pyroute2's synchronous IPRoute cannot run its loop where one is running; the module copes
    assert "lo" in by_name(read_links())
    choice = route_lookup("127.0.0.2")
    assert choice is not None and choice.device == "lo"


def test_route_lookup_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        route_lookup("not-an-address")
    with pytest.raises(ValueError, match="IP version"):
        route_lookup("127.0.0.2", source="::1")


def test_missing_namespace_is_a_config_error_and_is_not_created() -> None:
    name = f"sp-nl-missing-{secrets.token_hex(4)}"
    for call in (lambda: read_links(name), lambda: route_lookup("127.0.0.2", netns=name),
                 lambda: default_route_device(name)):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.key == "netns"
        assert name in str(info.value)
    assert not os.path.exists(os.path.join(lab.NETNS_DIR, name))


# --- records, without the kernel ----------------------------------------------------------------------


def test_bond_and_team_detection() -> None:
    # bonding is not available in every kernel (not in this one), so the records are made directly
    bond = Link("bond0", 5, "02:00:00:00:00:05", 9000, True, True, "bond", "", ("198.18.1.2/24",))
    team = Link("team0", 6, kind="team")
    bridge = Link("xenbr0", 7, kind="bridge")
    bond_port = Link("eth0", 2, master="bond0", master_kind="bond")
    team_port = Link("eth1", 3, master="team0", master_kind="team")
    bridge_port = Link("eth2", 4, kind="", master="xenbr0", master_kind="bridge")
    plain = Link("eth3", 8, addresses=("198.18.2.2/24",))
    assert bond.is_bond_or_team and team.is_bond_or_team
    assert not bond.is_bond_or_team_member and not team.is_bond_or_team_member
    assert bond_port.is_bond_or_team_member and team_port.is_bond_or_team_member
    assert not bond_port.is_bond_or_team and not team_port.is_bond_or_team
    for link in (bridge, bridge_port, plain):
        assert not link.is_bond_or_team and not link.is_bond_or_team_member
    assert bond.networks() == (ipaddress.IPv4Interface("198.18.1.2/24"),)


def test_networks_mixes_families() -> None:
    link = Link("eth0", 2, addresses=("198.18.1.2/24", "2001:db8::2/64"))
    assert link.networks() == (ipaddress.IPv4Interface("198.18.1.2/24"), ipaddress.IPv6Interface("2001:db8::2/64"))


class FakeAddr(dict[str, Any]):
    """An RTM_NEWADDR message as pyroute2 hands it over: fields by key, attributes by get_attr."""

    def __init__(self, family: int, prefixlen: int, **attrs: str) -> None:
        super().__init__(family=family, prefixlen=prefixlen)
        self.attrs = attrs

    def get_attr(self, name: str) -> str | None:
        return self.attrs.get(name)


def test_address_conversion() -> None:
    # IPv6 stays off in the test namespace (no addresses outside 198.18.0.0/15), so the IPv6 and
    # point-to-point cases are checked on messages shaped like pyroute2's
    assert _cidr(FakeAddr(2, 24, IFA_ADDRESS="198.18.1.2", IFA_LOCAL="198.18.1.2")) == "198.18.1.2/24"
    assert _cidr(FakeAddr(2, 32, IFA_ADDRESS="198.18.9.1", IFA_LOCAL="198.18.1.2")) == "198.18.1.2/32"
    assert _cidr(FakeAddr(10, 64, IFA_ADDRESS="2001:db8::2")) == "2001:db8::2/64"
    assert _cidr(FakeAddr(10, 64, IFA_ADDRESS="fe80::1")) == ""
    assert _cidr(FakeAddr(10, 64, IFA_ADDRESS="febf::1")) == ""
    assert _cidr(FakeAddr(10, 64, IFA_ADDRESS="fec0::1")) == "fec0::1/64"


# --- a namespace of our own ---------------------------------------------------------------------------


def test_read_links_in_namespace(ns: str) -> None:
    links = read_links(ns)
    assert [link.index for link in links] == sorted(link.index for link in links)
    found = by_name(links)
    assert set(found) == {"lo", "spa0", "spb0", "spa1", "spb1", "spbr0"}
    spa0, spa1, spb0, bridge = found["spa0"], found["spa1"], found["spb0"], found["spbr0"]
    assert spa0.addresses == ("198.18.1.2/24",)
    assert spa1.addresses == ("198.18.2.2/24",)
    assert found["lo"].addresses == ("127.0.0.1/8",)
    assert spa0.kind == spa1.kind == spb0.kind == "veth"
    assert bridge.kind == "bridge"
    assert spb0.master == "spbr0" and spb0.master_kind == "bridge"
    assert spa0.master == "" and spa0.master_kind == ""
    assert not spb0.is_bond_or_team_member and not bridge.is_bond_or_team
    for link in (spa0, spa1, spb0):
        assert link.up and link.carrier
        assert link.mtu == 1500
        assert len(link.mac.split(":")) == 6
    assert spa0.index == int(lab.link_show(ns, "spa0")["ifindex"])
    assert spa0.mac == lab.link_show(ns, "spa0")["address"]
    # the current namespace does not see the test's links
    assert "spa0" not in by_name(read_links())


def test_admin_down_and_no_carrier(ns: str) -> None:
    lab.set_link(ns, "spb1", "down")
    found = by_name(read_links(ns))
    assert not found["spb1"].up and not found["spb1"].carrier
    # spa1 is still admin up, but its peer is down: no carrier
    assert found["spa1"].up and not found["spa1"].carrier


def test_route_lookup_in_namespace(ns: str) -> None:
    assert route_lookup("198.18.2.9", netns=ns) == RouteChoice(device="spa1", source="198.18.2.2", gateway="")
    assert route_lookup("198.18.1.9", netns=ns) == RouteChoice(device="spa0", source="198.18.1.2", gateway="")
    # "from SRC" keeps the source the caller chose; the interface is still the route's
    assert route_lookup("198.18.2.9", source="198.18.1.2", netns=ns) == RouteChoice("spa1", "198.18.1.2", "")
    # a local address leaves through lo
    local = route_lookup("198.18.2.2", netns=ns)
    assert local is not None and local.device == "lo"
    # no default route yet: anything off the two subnets is unreachable
    assert route_lookup("198.18.7.7", netns=ns) is None
    # a source that is not ours
    assert route_lookup("198.18.2.9", source="198.18.9.9", netns=ns) is None
    # the current namespace has no idea of the test's subnets' interfaces
    outside = route_lookup("198.18.2.9")
    assert outside is None or outside.device not in ("spa0", "spa1")


def test_unusable_routes_are_none(ns: str) -> None:
    lab.ip(ns, "route", "add", "blackhole", "198.18.50.0/24")
    lab.ip(ns, "route", "add", "prohibit", "198.18.51.0/24")
    lab.ip(ns, "route", "add", "unreachable", "198.18.52.0/24")
    for dest in ("198.18.50.1", "198.18.51.1", "198.18.52.1"):
        assert route_lookup(dest, netns=ns) is None, dest


def test_default_route(ns: str) -> None:
    assert default_route_device(ns) is None
    lab.ip(ns, "route", "add", "default", "via", "198.18.1.1", "dev", "spa0")
    assert default_route_device(ns) == "spa0"
    assert route_lookup("198.18.7.7", netns=ns) == RouteChoice(device="spa0", source="198.18.1.2",
                                                                gateway="198.18.1.1")
    # a second default route with a lower metric wins
    lab.ip(ns, "route", "del", "default", "via", "198.18.1.1", "dev", "spa0")
    lab.ip(ns, "route", "add", "default", "via", "198.18.1.1", "dev", "spa0", "metric", "100")
    lab.ip(ns, "route", "add", "default", "via", "198.18.2.1", "dev", "spa1", "metric", "50")
    assert default_route_device(ns) == "spa1"
    lab.ip(ns, "route", "add", "default", "via", "198.18.1.1", "dev", "spa0", "metric", "10")
    assert default_route_device(ns) == "spa0"
    # a default route in another table is not the host's default route
    lab.ip(ns, "route", "flush", "table", "main", "default")
    lab.ip(ns, "route", "add", "default", "via", "198.18.1.1", "dev", "spa0", "table", "100")
    assert default_route_device(ns) is None


async def test_namespace_from_async_code(ns: str) -> None:
    assert by_name(read_links(ns))["spa1"].addresses == ("198.18.2.2/24",)
    assert default_route_device(ns) is None


def test_multipath_default_route(ns: str) -> None:
    lab.ip(ns, "route", "add", "default", "nexthop", "via", "198.18.1.1", "dev", "spa0",
           "nexthop", "via", "198.18.2.1", "dev", "spa1")
    assert default_route_device(ns) == "spa0"
