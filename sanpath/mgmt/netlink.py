"""This host's network interfaces as the kernel reports them over rtnetlink (pyroute2): the links with their
addresses, for the management plane's PIF rows (XenServer's "physical interface"), and the kernel's own
route choice (``ip route get``) for picking the interface and source address a connection would use.

Read only: nothing here changes an interface or a route. Every call opens one netlink socket (in the
named ``ip netns`` namespace, or the current one), makes its few requests and closes it, so reading is
cheap enough to repeat whenever a PIF row is refreshed.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import ConfigError

NETNS_DIR = "/run/netns"

IFF_UP = 0x1  # <linux/if.h>: administratively up (``ip link set DEV up``)
IFF_LOWER_UP = 0x10000  # the driver signals L1 up: carrier present and operstate UP (or UNKNOWN)

BOND_KINDS = frozenset({"bond", "team"})

# rtm_type of a route the kernel would actually send along (<linux/rtnetlink.h>)
_RTN_USABLE = frozenset({1, 2, 3, 4, 5})  # unicast, local, broadcast, anycast, multicast
# what RTM_GETROUTE answers when there is no way there: no route / unreachable route (ENETUNREACH,
# EHOSTUNREACH), a prohibit route (EACCES), a blackhole route or a source that is not ours (EINVAL)
_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EINVAL})
_LINK_LOCAL_V6 = ipaddress.IPv6Network("fe80::/10")
_MAIN_TABLE = 254

T = TypeVar("T")
Network = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True, slots=True)
class Link:
    """One network interface: ``kind`` is rtnetlink's IFLA_INFO_KIND ("" for a physical NIC or lo),
    ``master`` the name of the bond, team or bridge it is a port of ("" if none), ``addresses`` its IPv4
    and IPv6 addresses as CIDR strings (IPv6 link-local ones left out), primary first."""

    name: str
    index: int
    mac: str = ""
    mtu: int = 0
    up: bool = False  # IFF_UP: administratively up
    carrier: bool = False  # IFF_LOWER_UP: the kernel's operstate says the link is usable
    kind: str = ""
    master: str = ""
    addresses: tuple[str, ...] = ()
    master_kind: str = ""  # the master's IFLA_INFO_KIND ("bond", "bridge", ...), "" without a master

    @property
    def is_bond_or_team(self) -> bool:
        """A bond or team master (the aggregate a PIF row names, not its ports)."""
        return self.kind in BOND_KINDS

    @property
    def is_bond_or_team_member(self) -> bool:
        """A port of a bond or team: it carries no addresses of its own and is not a PIF by itself."""
        return bool(self.master) and self.master_kind in BOND_KINDS

    def networks(self) -> tuple[Network, ...]:
        """``addresses`` as ``ipaddress`` interface objects (``.ip``, ``.network``)."""
        return tuple(ipaddress.ip_interface(a) for a in self.addresses)


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """The kernel's answer to ``ip route get``: the interface a packet would leave by, the source address
    it would carry, and the next hop ("" when the destination is on the link)."""

    device: str
    source: str
    gateway: str


def read_links(netns: str | None = None) -> list[Link]:
    """Every link in ``netns`` (an ``ip netns`` name; None: the current namespace) with its addresses,
    sorted by ifindex. One socket, one link dump and one address dump."""
    return _with_ipr(netns, _read_links)


def route_lookup(destination: str, source: str | None = None, netns: str | None = None) -> RouteChoice | None:
    """``ip route get DESTINATION [from SOURCE]``: where the kernel would send a packet to ``destination``
    (IPv4 or IPv6), or None when it would not (no route, or an unreachable, prohibit or blackhole route,
    or a ``source`` that is not one of this namespace's addresses). A malformed address raises ValueError."""
    dst = ipaddress.ip_address(destination)
    src = ipaddress.ip_address(source) if source is not None else None
    if src is not None and src.version != dst.version:
        raise ValueError(f"source {source} and destination {destination} are not the same IP version")

    def lookup(ipr: Any) -> RouteChoice | None:
        request: dict[str, Any] = {"dst": str(dst), "family": socket.AF_INET6 if dst.version == 6 else socket.AF_INET}
        if src is not None:
            request["src"] = str(src)
        try:
            answer = ipr.route("get", **request)
        except NetlinkError as e:
            if e.code in _NO_ROUTE:
                return None
            raise
        if not answer or answer[0].get("type") not in _RTN_USABLE:
            return None
        route = answer[0]
        oif = route.get_attr("RTA_OIF")
        if oif is None:
            return None
        return RouteChoice(device=_link_name(ipr, oif),
                           source=route.get_attr("RTA_PREFSRC") or (str(src) if src is not None else ""),
                           gateway=route.get_attr("RTA_GATEWAY") or "")

    return _with_ipr(netns, lookup)


def default_route_device(netns: str | None = None) -> str | None:
    """The interface carrying the IPv4 default route of the main table (the lowest metric one if there
    are several; the first next hop of a multipath route), or None when there is no default route."""

    def lookup(ipr: Any) -> str | None:
        best: tuple[int, int] | None = None  # (metric, oif)
        for route in ipr.get_routes(family=socket.AF_INET, table=_MAIN_TABLE):
            if route.get("dst_len") != 0 or route.get("type") != 1 or route.get("event") != "RTM_NEWROUTE":
                continue
            oif = route.get_attr("RTA_OIF")
            if oif is None:
                hops = route.get_attr("RTA_MULTIPATH") or []
                oif = hops[0].get("oif") if hops else None
            if oif is None:
                continue
            metric = route.get_attr("RTA_PRIORITY") or 0
            if best is None or metric < best[0]:
                best = (metric, oif)
        return _link_name(ipr, best[1]) if best is not None else None

    return _with_ipr(netns, lookup)


# --- internals ----------------------------------------------------------------------------------------


def _read_links(ipr: Any) -> list[Link]:
    raw = list(ipr.get_links())
    names: dict[int, str] = {}
    kinds: dict[int, str] = {}
    for msg in raw:
        names[msg["index"]] = msg.get_attr("IFLA_IFNAME") or ""
        kinds[msg["index"]] = _kind(msg)
    addresses: dict[int, list[str]] = {}
    for msg in ipr.get_addr():
        cidr = _cidr(msg)
        if cidr:
            addresses.setdefault(msg["index"], []).append(cidr)
    links = []
    for msg in raw:
        index = msg["index"]
        flags = msg.get("flags") or 0
        master = msg.get_attr("IFLA_MASTER")
        links.append(Link(
            name=names[index],
            index=index,
            mac=msg.get_attr("IFLA_ADDRESS") or "",
            mtu=msg.get_attr("IFLA_MTU") or 0,
            up=bool(flags & IFF_UP),
            carrier=bool(flags & IFF_LOWER_UP),
            kind=kinds[index],
            master=names.get(master, "") if master else "",
            addresses=tuple(addresses.get(index, ())),
            master_kind=kinds.get(master, "") if master else "",
        ))
    links.sort(key=lambda link: link.index)
    return links


def _kind(msg: Any) -> str:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return str(kind) if kind else ""


def _cidr(msg: Any) -> str:
    """One RTM_NEWADDR as "ADDRESS/PREFIXLEN", or "" for an IPv6 link-local address. IPv4 takes IFA_LOCAL:
    on a point-to-point link IFA_ADDRESS is the peer's address."""
    family = msg.get("family")
    if family == socket.AF_INET:
        address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    elif family == socket.AF_INET6:
        address = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
        if address and ipaddress.IPv6Address(address) in _LINK_LOCAL_V6:
            return ""
    else:
        return ""
    return f"{address}/{msg['prefixlen']}" if address else ""


def _link_name(ipr: Any, index: int) -> str:
    found = ipr.get_links(index)
    return str(found[0].get_attr("IFLA_IFNAME")) if found else ""


def _with_ipr(netns: str | None, work: Callable[[Any], T]) -> T:
    """Run ``work`` with an IPRoute socket in ``netns``, closing it afterwards.

    pyroute2's synchronous IPRoute drives an asyncio loop of its own, which cannot run on a thread where
    a loop is already running, so from async code the call is made on a short-lived thread (it still
    blocks the caller for its few milliseconds; ``await asyncio.to_thread(read_links)`` does not)."""
    if netns is not None:
        path = netns if os.path.isabs(netns) else os.path.join(NETNS_DIR, netns)
        if not os.path.exists(path):
            raise ConfigError("netns", f"network namespace {netns!r} does not exist ({path} is missing); "
                                       f"create it with `ip netns add {netns}`, or pass None for this namespace")

    def run() -> T:
        try:
            # flags=0: never create the namespace (pyroute2's default, O_CREAT, would)
            ipr = IPRoute(netns=netns, flags=0) if netns is not None else IPRoute()
        except FileNotFoundError:
            raise ConfigError("netns", f"network namespace {netns!r} does not exist") from None
        with ipr:
            return work(ipr)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    result: list[T] = []
    failure: list[BaseException] = []

    def on_thread() -> None:
        try:
            result.append(run())
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=on_thread, name="sanpath-netlink", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
