"""What the console's views show, read from the store (every host's rows) and from this host's data-path
processes (path tables and byte counters): plain data for the templates, no HTML here."""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from ..maintenance import in_maintenance
from ..store import Store
from ..store.model import PBD, PIF, SR, Host
from ..supervisor import Supervisor
from ..workflow import MPATH, live


@dataclass(frozen=True, slots=True)
class PathCount:
    """A PBD's path counts as its host last reported them: XenCenter's "n of m paths active"."""

    attached: bool
    active: int
    maximum: int
    sessions: int

    @property
    def degraded(self) -> bool:
        return not self.attached or self.active < self.maximum

    @property
    def text(self) -> str:
        if not self.attached:
            return "not attached"
        return f"{self.active} of {self.maximum} paths active ({self.sessions} iSCSI sessions)"


def path_count(pbd: PBD) -> PathCount:
    active = maximum = 0
    for key, value in pbd.other_config.items():
        if key.startswith(MPATH):
            with contextlib.suppress(ValueError):
                active, maximum = (int(x) for x in str(value).strip("[]").split(","))
    try:
        sessions = int(pbd.other_config.get("iscsi_sessions", 0) or 0)
    except ValueError:
        sessions = 0
    return PathCount(pbd.currently_attached, active, maximum, sessions)


def host_badges(host: Host, now: float) -> list[str]:
    return (["unreachable"] if not live(host, now) else []) + (["maintenance"] if in_maintenance(host) else [])


def pbd_badges(pbd: PBD, host_live: bool) -> list[str]:
    if not host_live:
        return ["unknown"]
    if not pbd.plugged:
        return ["unplugged"]
    return ["degraded"] if path_count(pbd).degraded else []


async def tree(store: Store) -> dict[str, Any]:
    """Pool -> hosts -> SRs, with the state badges."""
    pool = await store.pool()
    now = await store.now()
    srs = {s.uuid: s for s in await store.srs()}
    pbds = await store.pbds()
    hosts = []
    for h in await store.hosts():
        up = live(h, now)
        mine = [p for p in pbds if p.host_uuid == h.uuid and p.sr_uuid in srs]
        hosts.append({"uuid": h.uuid, "name": h.name_label, "badges": host_badges(h, now),
                      "srs": [{"uuid": p.sr_uuid, "name": srs[p.sr_uuid].name_label, "badges": pbd_badges(p, up)}
                              for p in sorted(mine, key=lambda p: srs[p.sr_uuid].name_label)]})
    return {"name": pool.name_label if pool else "(no pool)", "hosts": hosts}


def nic_rows(pifs: list[PIF]) -> list[dict[str, Any]]:
    """The host's NICs, storage ones first, each address with its subnet."""
    rows = []
    for p in sorted(pifs, key=lambda p: (p.purpose != "storage", p.device)):
        nets = []
        for cidr in p.addresses:
            try:
                nets.append((cidr, str(ipaddress.ip_interface(cidr).network)))
            except ValueError:
                nets.append((cidr, "?"))
        rows.append({"device": p.device, "purpose": p.purpose, "present": p.present, "carrier": p.carrier,
                     "kind": p.kind, "master": p.master, "addresses": nets})
    return rows


async def host_general(store: Store, ref: str) -> dict[str, Any]:
    host = await store.host(ref)
    now = await store.now()
    up = live(host, now)
    srs = {s.uuid: s for s in await store.srs()}
    rows: list[dict[str, Any]] = []
    for p in await store.pbds(host_uuid=host.uuid):
        if p.sr_uuid in srs:
            count = path_count(p)
            rows.append({"sr": srs[p.sr_uuid], "pbd": p, "count": count, "badges": pbd_badges(p, up),
                         "error": p.error or None})
    rows.sort(key=lambda r: r["sr"].name_label)
    return {"host": host, "live": up, "maintenance": in_maintenance(host), "badges": host_badges(host, now),
            "nics": nic_rows(await store.pifs(host.uuid)), "srs": rows}


async def local_status(supervisor: Supervisor, pbd: PBD | None) -> dict[str, Any] | None:
    """This host's data-path process of the PBD, as it answers now (None: not running here)."""
    if pbd is None or pbd.uuid not in supervisor.running:
        return None
    return await supervisor.status(pbd.uuid)


def path_table(status: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ``multipath -ll`` shape, one row per path: group, its priority and state, the path's state,
    priority, checker message and I/O count."""
    rows: list[dict[str, Any]] = []
    for gi, g in enumerate((status or {}).get("groups", [])):
        for path in g["paths"]:
            rows.append({"group": gi + 1, "group_priority": g["priority"], "group_state": g["state"],
                         "name": path["name"], "portal": path["portal"], "source": path["source"] or "",
                         "state": path["state"], "priority": path["priority"], "message": path["reason"],
                         "ios": path["ios"], "alua": path.get("alua_state")})
    return rows


async def sr_general(store: Store, supervisor: Supervisor, this_host: Host, uuid: str) -> dict[str, Any]:
    sr: SR = await store.sr(uuid)
    now = await store.now()
    hosts = {h.uuid: h for h in await store.hosts()}
    per_host: list[dict[str, Any]] = []
    mine: PBD | None = None
    for p in await store.pbds(sr_uuid=uuid):
        h = hosts.get(p.host_uuid)
        up = h is not None and live(h, now)
        per_host.append({"host": h, "pbd": p, "count": path_count(p), "badges": pbd_badges(p, up),
                         "error": p.error or None})
        if p.host_uuid == this_host.uuid:
            mine = p
    per_host.sort(key=lambda r: r["host"].name_label if r["host"] else "")
    status = await local_status(supervisor, mine)
    degraded = any(r["badges"] for r in per_host)
    return {"sr": sr, "per_host": per_host, "this_host": this_host, "paths": path_table(status),
            "policy": (status or {}).get("policy"), "degraded": degraded, "local_pbd": mine}


async def throughput(store: Store, supervisor: Supervisor, this_host: Host, uuid: str) -> dict[str, Any]:
    """Each of this host's paths of the SR with its rate over the data path's last sampling second, for
    the console's chart."""
    mine = next((p for p in await store.pbds(sr_uuid=uuid) if p.host_uuid == this_host.uuid), None)
    status = await local_status(supervisor, mine) or {}
    rates = status.get("throughput", {})
    paths = [{"name": path["name"], "state": path["state"], "mbps": rates.get(path["name"], {}).get("mbps", 0.0),
              "iops": rates.get(path["name"], {}).get("iops", 0.0)}
             for g in status.get("groups", []) for path in g["paths"]]
    return {"host": this_host.name_label, "paths": sorted(paths, key=lambda p: p["name"])}
