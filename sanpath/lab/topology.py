"""The lab's reference topology as data: which namespaces, switches, cables and addresses exist.

This is the seed's physical design (chapter 2, "Correct Physical and Subnet Configuration") rebuilt in
network namespaces. Nothing here touches the system; ``lab.py`` builds what this module describes.

Address plan (everything inside 198.18.0.0/15, the benchmarking range of RFC 2544, and only ever
assigned inside the lab's own namespaces, so two labs never see each other)::

    management      198.18.0.0/24   switch sw0   station (bridge address) .1   host-mgmt .10
    storage 1       198.18.1.0/24   switch sw1   ctlA-s1 .1   ctlB-s1 .2   host-s1 .10
    storage 2       198.18.2.0/24   switch sw2   ctlA-s2 .1   ctlB-s2 .2   host-s2 .10
    storage k       198.18.k.0/24   switch swk   controller number i (A=1, B=2, ...) is .i, the host .10

A pool of several hosts (``hosts=3``): host n (n >= 2) has NICs hN-mgmt, hN-s1, ... at .(9+n) of each
subnet, in namespace hostN, on the same switches.

Namespaces (``ID`` is a short random suffix, so parallel labs never collide)::

    sanpath-ID-host    the XenServer host: host-mgmt, host-s1 .. host-sN
    sanpath-ID-host2   the pool's second host (with hosts >= 2): h2-mgmt, h2-s1 .. h2-sN; and so on
    sanpath-ID-array   the storage array: ctlA-s1, ctlB-s1, ctlA-s2, ... (policy-routed, see lab.py)
    sanpath-ID-sw0     the management switch (bridge br0, carrying the station address .1)
    sanpath-ID-swK     storage switch K (bridge br0, no address: a layer-2 switch)

A *link* is one cable: a veth pair from a NIC (named after the link, e.g. ``host-s1`` in the host
namespace) to a switch port (``p-host-s1`` on that switch's bridge). Every interface lives inside a lab
namespace; the root namespace gets nothing, so deleting the namespaces removes the whole lab.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import ConfigError

LAB_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
MANAGEMENT_SUBNET = 0  # 198.18.0.0/24
HOST_OCTET = 10
STATION_OCTET = 1
MAX_SUBNETS = 16
CONTROLLER_NAMES = "ABCDEFGH"
PORT_PREFIX = "p-"
BRIDGE = "br0"

HOST = "host"
ARRAY = "array"


def subnet(index: int) -> ipaddress.IPv4Network:
    """Subnet ``index`` (0 management, 1.. storage) of the address plan: 198.18.INDEX.0/24."""
    net = ipaddress.IPv4Network(f"198.18.{index}.0/24")
    assert net.subnet_of(LAB_NETWORK)
    return net


MAX_HOSTS = 8


def switch_role(index: int) -> str:
    return f"sw{index}"


def host_role(n: int) -> str:
    """Host ``n``'s namespace role (1-based): host, host2, host3, ..."""
    return HOST if n == 1 else f"host{n}"


def host_nic(n: int, k: int | None) -> str:
    """Host ``n``'s NIC on storage subnet ``k`` (None: its management NIC): host-s1, h2-s1, h2-mgmt."""
    return f"{'host' if n == 1 else f'h{n}'}-{'mgmt' if k is None else f's{k}'}"


@dataclass(frozen=True, slots=True)
class Link:
    """One cable: a NIC in ``role``'s namespace, plugged into switch port ``port`` of ``switch``."""

    name: str  # the NIC's name, also the link's name: host-s1, ctlA-s2, host-mgmt
    role: str  # the namespace role owning the NIC: host, array
    switch: str  # the switch namespace role: sw0, sw1, ...
    subnet: int  # 0 management, 1.. storage
    address: str  # the NIC's address, CIDR form: 198.18.1.10/24
    controller: str = ""  # A, B, ... for an array NIC

    @property
    def port(self) -> str:
        """The switch-side end of the cable (IFNAMSIZ allows 15 characters; ours are at most 10)."""
        return PORT_PREFIX + self.name

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass(frozen=True, slots=True)
class Topology:
    """The seed's reference topology with ``subnets`` storage subnets and ``controllers`` array controllers.

    The default (2 subnets, controllers A and B) is the seed's picture: 4 portals, 2 host NICs, so a
    host sees every controller over every subnet. ``subnets=4`` gives 4 host NICs for scaling runs.
    """

    subnets: int = 2
    controllers: int = 2
    hosts: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.hosts <= MAX_HOSTS:
            raise ConfigError("hosts", f"{self.hosts} is out of range: 1..{MAX_HOSTS} hosts")
        if not 1 <= self.subnets <= MAX_SUBNETS:
            raise ConfigError("subnets", f"{self.subnets} is out of range: 1..{MAX_SUBNETS} storage subnets")
        if not 1 <= self.controllers <= len(CONTROLLER_NAMES):
            raise ConfigError("controllers", f"{self.controllers} is out of range: 1..{len(CONTROLLER_NAMES)}")

    @property
    def controller_names(self) -> tuple[str, ...]:
        return tuple(CONTROLLER_NAMES[: self.controllers])

    @property
    def switches(self) -> tuple[str, ...]:
        """Switch roles: sw0 (management) then one per storage subnet."""
        return tuple(switch_role(i) for i in range(self.subnets + 1))

    @property
    def roles(self) -> tuple[str, ...]:
        """Every namespace role, in the order they are created."""
        return (*self.host_roles, ARRAY, *self.switches)

    @property
    def host_roles(self) -> tuple[str, ...]:
        return tuple(host_role(n) for n in range(1, self.hosts + 1))

    @property
    def links(self) -> tuple[Link, ...]:
        mgmt = subnet(MANAGEMENT_SUBNET)
        out = [Link(host_nic(n, None), host_role(n), switch_role(MANAGEMENT_SUBNET), MANAGEMENT_SUBNET,
                    f"{mgmt[HOST_OCTET + n - 1]}/{mgmt.prefixlen}") for n in range(1, self.hosts + 1)]
        for k in range(1, self.subnets + 1):
            net = subnet(k)
            out += [Link(host_nic(n, k), host_role(n), switch_role(k), k, f"{net[HOST_OCTET + n - 1]}/{net.prefixlen}")
                    for n in range(1, self.hosts + 1)]
            for i, c in enumerate(self.controller_names, start=1):
                out.append(Link(f"ctl{c}-s{k}", ARRAY, switch_role(k), k, f"{net[i]}/{net.prefixlen}", c))
        return tuple(out)

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        names = ", ".join(x.name for x in self.links)
        raise ConfigError("link", f"no link {name!r} in this lab; links: {names}")

    def station_address(self) -> str:
        """The management switch's own address (where a pool master or console would sit)."""
        mgmt = subnet(MANAGEMENT_SUBNET)
        return f"{mgmt[STATION_OCTET]}/{mgmt.prefixlen}"

    def storage_links(self) -> tuple[Link, ...]:
        return tuple(x for x in self.links if x.subnet != MANAGEMENT_SUBNET)

    def host_address(self, k: int, host: int = 1) -> str:
        """Host ``host``'s address on storage subnet ``k`` (both 1-based), without prefix length."""
        return self.link(host_nic(host, k)).ip

    def controller_address(self, controller: str, k: int) -> str:
        """Controller ``controller``'s address on storage subnet ``k``, without prefix length."""
        return self.link(f"ctl{controller}-s{k}").ip

    def portals(self, port: int = 3260) -> tuple[tuple[str, str], ...]:
        """(controller, "addr:port") for every array NIC, subnet by subnet: A-s1, B-s1, A-s2, B-s2, ..."""
        return tuple((x.controller, f"{x.ip}:{port}") for x in self.links if x.role == ARRAY)
