"""Gathering the advisor's facts (the rules never do I/O): this machine's NICs and the kernel's route choice
towards each portal (netlink), the array (SendTargets, then a login on every (portal, IQN) for REPORT
LUNS, standard INQUIRY and VPD 83h), the pool's hosts, PIFs, SRs and PBDs (the store), and the multipath
settings each LUN resolves to. Every session opened here is logged out before returning."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
from collections.abc import Sequence
from typing import Any

from ...initiator.discovery import DiscoveredTarget
from ...initiator.session import SessionConfig
from ...multipath.config import MultipathConfig
from .. import netlink, probe
from ..netlink import Link
from ..poolkey import PoolKey
from ..store import Store
from ..store.model import PIF, Host
from ..workflow import MPATH, Chap, session_config
from .facts import Array, Facts, HostFacts, Lun, LunPath, Nic, Pbd, Portal, Route, Settings, Sr

RDAC_SETTINGS = {"handler": "rdac", "prio": "rdac", "path_checker": "rdac", "path_grouping_policy": "group_by_prio"}
"""What the rdac handler forces on every LUN of a host (as the daemon's data-path spec does)."""


# --- this machine's network ---------------------------------------------------------------------------


def links_from_ip_json(text: str) -> list[Link]:
    """Links from ``ip -details -json address show`` output (recorded on the machine to be checked)."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not the JSON of `ip -details -json address show`: {e}") from None
    if not isinstance(rows, list):
        raise ValueError("not the JSON of `ip -details -json address show`: expected a list of links")
    kinds = {r.get("ifname", ""): (r.get("linkinfo") or {}).get("info_kind", "") for r in rows}
    links = []
    for r in rows:
        flags = r.get("flags") or []
        addresses = tuple(f"{a['local']}/{a['prefixlen']}" for a in r.get("addr_info") or []
                          if a.get("family") in ("inet", "inet6") and a.get("scope") != "link" and "local" in a)
        master = r.get("master", "")
        links.append(Link(name=r.get("ifname", ""), index=int(r.get("ifindex", 0)), mac=r.get("address", ""),
                          mtu=int(r.get("mtu", 0)), up="UP" in flags, carrier="LOWER_UP" in flags,
                          kind=kinds.get(r.get("ifname", ""), ""), master=master, addresses=addresses,
                          master_kind=kinds.get(master, "") if master else ""))
    return links


def machine(name: str, iqn: str, links: Sequence[Link], *, management: str | None = None,
            storage: Sequence[str] | None = None, default_device: str | None = None) -> HostFacts:
    """This machine as a host before any pool: the management interface is ``management``, else the one with
    the default route; the storage NICs are ``storage``, else every other NIC with an address (not lo)."""
    names = {link.name for link in links}
    for wanted in [management, *(storage or [])]:
        if wanted is not None and wanted not in names:
            raise ValueError(f"no network interface {wanted!r} here; there are {', '.join(sorted(names))}")
    management = management if management is not None else default_device
    chosen = set(storage) if storage is not None else {
        link.name for link in links if link.addresses and link.name != management and link.kind != "loopback"
        and link.name != "lo"}
    nics = tuple(Nic(link.name, link.addresses, link.kind, link.master, link.master_kind, link.carrier,
                     "management" if link.name == management else "storage" if link.name in chosen else "none")
                 for link in links if link.name != "lo")
    return HostFacts(name=name, iqn=iqn, nics=nics)


def lookup_routes(host: HostFacts, portals: Sequence[Portal], netns: str | None = None) -> tuple[Route, ...]:
    """The kernel's choice for every path the host would have: from each storage address to each portal in
    its subnet, and, for a portal in no storage subnet, with no source (the path then goes wherever the
    routing table says)."""
    out: list[Route] = []
    for address in dict.fromkeys(p.address for p in portals):
        sources: list[str | None] = [str(i.ip) for _, i in host.storage_interfaces()
                                     if _contains(i.network, address)]
        for source in sources or [None]:
            try:
                choice = netlink.route_lookup(address, source, netns)
            except ValueError:
                continue  # a portal named by something other than an address
            out.append(Route(address, source or "", choice.device if choice else "",
                             choice.gateway if choice else ""))
    return tuple(out)


def _contains(network: ipaddress.IPv4Network | ipaddress.IPv6Network, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


# --- the array ----------------------------------------------------------------------------------------


async def array(targets: Sequence[tuple[str, int]], config: SessionConfig) -> Array:
    """An array from ``targets``: SendTargets on each, then every (portal, IQN) logged in to once."""
    records, errors = await probe.discover_iqns(list(targets), config)
    seen, lun_errors = await probe.probe_paths(records, config) if records else ([], {})
    luns: dict[str, list[probe.SeenLun]] = {}
    for s in seen:
        luns.setdefault(s.scsi_id or f"{s.portal}/{s.iqn}/{s.lun}", []).append(s)
    return Array(
        targets=tuple(DiscoveredTarget(a, p, 1, "").portal for a, p in targets),
        portals=tuple(Portal(r.address, r.port, r.iqn, r.tpgt) for r in records),
        luns=tuple(Lun(key, group[0].vendor, group[0].product, group[0].tpgs,
                       tuple(LunPath(s.address, s.port, s.iqn, s.port_group, s.relative_port) for s in group))
                   for key, group in luns.items()),
        errors={where: str(e) or type(e).__name__ for where, e in {**errors, **lun_errors}.items()})


# --- multipath settings -------------------------------------------------------------------------------


def settings(arrays: Sequence[Array], config: MultipathConfig, overrides: dict[str, Any] | None = None,
             host: str = "") -> tuple[Settings, ...]:
    """The settings each LUN of ``arrays`` resolves to (built-in device sections, ``config``, overrides)."""
    out = []
    for a in arrays:
        for lun in a.luns:
            resolved = config.resolve(lun.vendor, lun.product, overrides)
            out.append(Settings(lun.scsi_id, {k: s.value for k, s in resolved.settings.items()}, host,
                                {k: str(s.origin) for k, s in resolved.settings.items()}))
    return tuple(out)


# --- the pool -----------------------------------------------------------------------------------------


def pbd_facts(pbd: Any, host_name: str, host_iqn: str, multipathing: bool) -> Pbd:
    """A PBD row as the advisor sees it: what its daemon last reported in other-config."""
    oc = pbd.other_config
    counts = None
    for key, value in oc.items():
        if key.startswith(MPATH):
            try:
                active, maximum = (int(x) for x in str(value).strip("[]").split(","))
                counts = (active, maximum)
            except ValueError:
                counts = None
    dc = pbd.device_config
    multihomed = dc.get("multihomed", "auto")
    if "multipathed" in oc:
        homed = oc["multipathed"] == "true"
    else:
        homed = multipathing if multihomed == "auto" else multihomed == "true"
    routed = tuple(str(p.get("name")) for p in oc.get("paths") or [] if isinstance(p, dict) and p.get("routed"))
    try:
        sessions = int(oc.get("iscsi_sessions", 0))
    except ValueError:
        sessions = 0
    return Pbd(pbd.uuid, host_name, bool(pbd.plugged), bool(pbd.currently_attached), homed, counts, sessions,
               routed, dc.get("localIQN") or host_iqn)


def sr_facts(sr: Any, pbds: Sequence[Pbd]) -> Sr:
    dc = sr.device_config
    port = int(dc.get("port", 3260) or 3260)
    targets = []
    for part in str(dc.get("target", "")).split(","):
        text = part.strip()
        if text:
            address, port_of = (text.rsplit(":", 1) if text.count(":") == 1 else (text, str(port)))
            targets.append(DiscoveredTarget(address.strip("[]"), int(port_of), 1, "").portal)
    portals = tuple(Portal(str(a), int(p), str(i)) for a, p, i in sr.sm_config.get("portals", []))
    return Sr(sr.uuid, sr.name_label, sr.scsi_id, tuple(targets), str(dc.get("targetIQN", "")), portals, tuple(pbds))


async def pool(store: Store, key: PoolKey, local: Host, netns: str | None = None) -> Facts:
    """The pool as the store holds it, with this host's routes looked up here and each SR's array asked
    from here (with this host's IQN and the SR's CHAP secrets)."""
    hosts = await store.hosts()
    pifs = await store.pifs()
    pbds = await store.pbds()
    names = {h.uuid: h for h in hosts}
    host_facts = {h.uuid: HostFacts(
        h.name_label, h.iqn, h.multipathing, h.multipath_handle, uuid=h.uuid,
        nics=tuple(Nic(p.device, tuple(p.addresses), p.kind, p.master, _master_kind(pifs, p), p.carrier, p.purpose)
                   for p in pifs if p.host_uuid == h.uuid and p.present)) for h in hosts}
    srs = []
    jobs: dict[frozenset[str], tuple[Sr, SessionConfig]] = {}
    for row in await store.srs():
        mine = [p for p in pbds if p.sr_uuid == row.uuid]
        sr = sr_facts(row, [pbd_facts(p, names[p.host_uuid].name_label, names[p.host_uuid].iqn,
                                      names[p.host_uuid].multipathing) for p in mine if p.host_uuid in names])
        srs.append(sr)
        local_pbd = next((p for p in mine if p.host_uuid == local.uuid), None)
        if sr.targets and frozenset(sr.targets) not in jobs:
            chap = await _chap(store, key, local_pbd.device_config if local_pbd else {})
            jobs[frozenset(sr.targets)] = (sr, session_config(local, chap))
    arrays = list(await asyncio.gather(*(array([_split(t) for t in sr.targets], config)
                                         for sr, config in jobs.values())))
    here = host_facts[local.uuid]
    portals = [p for a in arrays for p in a.portals] + [p for sr in srs for p in sr.portals]
    host_facts[local.uuid] = dataclasses.replace(
        here, routes=await asyncio.to_thread(lookup_routes, here, portals, netns))
    config = MultipathConfig()
    chosen = [h for h in hosts if h.multipathing]
    found = tuple(s for h in chosen for s in settings(
        arrays, config, RDAC_SETTINGS if h.multipath_handle == "rdac" else None, h.name_label))
    return Facts(tuple(host_facts.values()), tuple(arrays), tuple(srs), found, pool=True)


def _master_kind(pifs: Sequence[PIF], pif: PIF) -> str:
    master = next((p for p in pifs if p.host_uuid == pif.host_uuid and p.device == pif.master), None) \
        if pif.master else None
    return master.kind if master else ""


async def _chap(store: Store, key: PoolKey, dc: dict[str, Any]) -> Chap:
    async def secret(name: str) -> str:
        return key.decrypt(await store.secret(dc[name])).decode() if dc.get(name) else ""
    return Chap(dc.get("chapuser", ""), await secret("chappassword_secret"), dc.get("incoming_chapuser", ""),
                await secret("incoming_chappassword_secret"))


def _split(portal: str) -> tuple[str, int]:
    address, _, port = portal.rpartition(":")
    return address.strip("[]"), int(port)


# --- before any pool ----------------------------------------------------------------------------------


async def before_setup(targets: Sequence[tuple[str, int]], config: SessionConfig, *, name: str,
                       iqn: str | None = None, management: str | None = None, storage: Sequence[str] | None = None,
                       links: Sequence[Link] | None = None, netns: str | None = None,
                       multipath: MultipathConfig | None = None, overrides: dict[str, Any] | None = None) -> Facts:
    """This machine's network (or ``links`` recorded on another; then no route is looked up) against the
    array at ``targets``, for the IQN the admin means to pick (``iqn``: one IQN or "*")."""
    recorded = links is not None
    found = list(links) if links is not None else await asyncio.to_thread(netlink.read_links, netns)
    default = None if recorded else await asyncio.to_thread(netlink.default_route_device, netns)
    host = machine(name, config.initiator_name, found, management=management, storage=storage,
                   default_device=default)
    seen = await array(targets, config)
    if not recorded:
        host = dataclasses.replace(host, routes=await asyncio.to_thread(lookup_routes, host, seen.portals, netns))
    return Facts((host,), (seen,), (), settings([seen], multipath or MultipathConfig(), overrides), iqn=iqn)
