"""Which paths a PBD should have: every storage PIF times every portal in that PIF's subnet, each session
bound to the PIF's address. A portal in no storage subnet gets one path through the routing table (no
source address), marked ``routed`` so the status says so. The plan's length is the max of the PBD's
``mpath-<SCSIid>`` count: a portal that is dead from the start is a missing path, not a smaller max."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from .store.model import PIF


def parse_multi_session(text: str) -> list[tuple[str, int, str]]:
    """XenServer's ``multiSession`` (``ip,port,iqn|ip,port,iqn|``) as (address, port, IQN) triples."""
    out = []
    for entry in text.split("|"):
        if not entry.strip():
            continue
        address, port, iqn = entry.split(",", 2)
        out.append((address.strip(), int(port), iqn.strip()))
    return out


def storage_networks(pifs: Sequence[PIF]) -> list[tuple[str, ipaddress.IPv4Interface | ipaddress.IPv6Interface]]:
    """(device, interface address) of every address on a present storage PIF."""
    out = []
    for pif in pifs:
        if pif.purpose != "storage" or not pif.present:
            continue
        for cidr in pif.addresses:
            out.append((pif.device, ipaddress.ip_interface(cidr)))
    return out


def plan_paths(portals: Sequence[tuple[str, int, str]], pifs: Sequence[PIF]) -> list[dict[str, Any]]:
    """The expected paths, in the spec form the data-path process takes (host, port, iqn, source, routed)."""
    nets = storage_networks(pifs)
    paths: list[dict[str, Any]] = []
    for address, port, iqn in portals:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        sources = [str(iface.ip) for _, iface in nets if ip is not None and ip in iface.network]
        if not sources:
            paths.append({"host": address, "port": port, "iqn": iqn, "source": None, "routed": True})
        for source in sources:
            paths.append({"host": address, "port": port, "iqn": iqn, "source": source, "routed": False})
    return paths
