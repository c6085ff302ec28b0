"""Status of multipath devices: a topology in the shape of ``multipath -ll``, "n of m paths active",
XenServer's ``[active, max]`` path counts, where each setting came from, and the recent events. Reads
state only: it never sends a command, so it cannot wait on a dead path."""

from __future__ import annotations

import time
from typing import Any

from .device import MultipathDevice
from .policy import SETTINGS


def human_size(n: int) -> str:
    for unit in ("", "K", "M", "G", "T", "P"):
        if n < 1024 or unit == "P":
            return f"{n:g}{unit}" if unit else f"{n}"
        n //= 1024
    return str(n)


def topology(device: MultipathDevice, *, events: int = 20) -> dict[str, Any]:
    """Everything ``render`` shows, as JSON-ready data."""
    active, maximum = device.counts()
    p = device.policy
    return {
        "wwid": device.wwid,
        "size": device.size,
        "block_size": device.block_size,
        "policy": {"path_grouping_policy": p.path_grouping_policy, "path_selector": p.path_selector,
                   "rr_min_io": p.rr_min_io, "path_checker": p.path_checker, "prio": p.prio,
                   "handler": p.handler, "failback": p.failback, "no_path_retry": p.no_path_retry},
        "origins": {key: str(p.origin(key)) for key in SETTINGS},  # where each setting came from
        "paths_active": active,
        "paths_total": len(device.paths),
        "mpath_counts": [active, maximum],  # XenServer's mpath-<SCSIid> = [active, max]
        "groups": [
            {
                "priority": g.priority,
                "state": g.state(g is device.active_group).value,
                "last_resort": g.last_resort,  # the marginal paths' group
                "paths": [
                    {"name": path.name, "source": path.spec.source, "portal": path.spec.portal,
                     "iqn": path.spec.iqn, "lun": path.spec.lun, "state": path.state.value, "reason": path.reason,
                     "priority": path.priority, "ios": path.ios, "bytes": path.bytes, "inflight": path.inflight,
                     "errors": path.errors, "alua_state": path.alua_state,
                     "last_resort": path in device.last_resort}  # marginal, but carrying I/O
                    for path in g.paths
                ],
            }
            for g in device.groups
        ],
        "events": [{"time": e.time, "path": e.path, "kind": e.kind, "reason": e.reason, "state": e.state}
                   for e in list(device.events)[-events:]],
    }


def render(device: MultipathDevice, *, events: int = 5) -> str:
    return render_topology(topology(device, events=events))


def render_topology(t: dict[str, Any], throughput: dict[str, dict[str, float]] | None = None) -> str:
    """Text like ``multipath -ll``: the map named by its SCSIid, its size and policy, each group with its
    priority and state, each path with its state and I/O count (and rates, when given); then the path
    counts and the recent events. Works on ``topology()`` data, so a client can render a service's answer."""
    p = t["policy"]
    rates = throughput or {}
    lines = [
        f"{t['wwid']} size={human_size(t['size'])} block={t['block_size']} hwhandler={p['handler']} "
        f"failback={p['failback']} no_path_retry={p['no_path_retry']}",
    ]
    groups = t["groups"]
    for gi, g in enumerate(groups):
        last_group = gi == len(groups) - 1
        marginal = " marginal (last resort)" if g.get("last_resort") else ""
        lines.append(f"{'`' if last_group else '|'}-+- policy='{p['path_selector']}' prio={g['priority']} "
                     f"status={g['state']}{marginal}")
        for pi, path in enumerate(g["paths"]):
            branch = "`-" if pi == len(g["paths"]) - 1 else "|-"
            lead = "  " if last_group else "| "
            alua = f" alua={path['alua_state']}" if path["alua_state"] is not None else ""
            rate = rates.get(path["name"])
            speed = f" {rate['mbps']:.1f}MB/s {rate['iops']:.0f}IOPS" if rate else ""
            state = f"{path['state']}, carrying I/O" if path.get("last_resort") else path["state"]
            lines.append(f"{lead}{branch} {path['name']} {state} prio={path['priority']} ios={path['ios']}"
                         f"{speed}{alua} ({path['reason']})")
    active, maximum = t["mpath_counts"]
    lines.append(f"{t['paths_active']} of {t['paths_total']} paths active  [{active}, {maximum}]")
    for e in t["events"]:
        stamp = time.strftime("%H:%M:%S", time.localtime(e["time"]))
        lines.append(f"  {stamp} {e['path']}: {e['kind']} ({e['reason']})")
    return "\n".join(lines)
