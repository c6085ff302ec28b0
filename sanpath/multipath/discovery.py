"""From a target spec to multipath devices: discover on every target address, keep the IQN asked for (or
every IQN for ``*``), log in to every portal (multihome) from the storage NIC on the portal's subnet,
list the LUNs behind each session, and fold the paths into one device per WWID.

A path is (source address, portal, IQN, LUN). Paths are keyed by WWID: the SCSIid from VPD 0x83,
falling back to 0x80 (udev's rule). Paths to one WWID whose capacity or block size disagree are refused:
that is two different LUNs claiming one identity, and writing through both would corrupt data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, IscsiError, SanpathError, ScsiCommandError
from ..initiator.device import ScsiDevice
from ..initiator.discovery import DiscoveredTarget, discover, parse_portals
from ..initiator.session import SessionConfig
from .device import MultipathDevice
from .path import Path, PathSpec
from .policy import Policy
from .sense import ghost_reason
from .sessions import SessionPool
from .states import PathState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MultipathSpec:
    """What the seed's SR dialog asks: target addresses, an IQN or ``*``, optionally the SCSIid, and the
    local addresses of the storage NICs."""

    targets: tuple[tuple[str, int], ...]
    iqn: str = "*"
    scsi_id: str | None = None
    sources: tuple[str, ...] = ()

    @classmethod
    def parse(cls, targets: str, iqn: str = "*", scsi_id: str | None = None, sources: str = "") -> MultipathSpec:
        src = tuple(s.strip() for s in sources.split(",") if s.strip())
        for s in src:
            try:
                ipaddress.ip_address(s)
            except ValueError:
                raise ConfigError("--source", f"{s!r} is not an IP address of this host") from None
        return cls(tuple(parse_portals(targets)), iqn, scsi_id or None, src)


def pick_source(portal: str, sources: Sequence[str]) -> str | None:
    """The storage NIC for a portal: the source address sharing the longest prefix with it (the seed's
    design puts each NIC on its own subnet, with one controller port on each)."""
    if not sources:
        return None
    try:
        target = ipaddress.ip_address(portal)
    except ValueError:
        return sources[0]

    def shared(src: str) -> int:
        a = ipaddress.ip_address(src)
        if a.version != target.version:
            return -1
        bits = a.max_prefixlen
        x = int(a) ^ int(target)
        return bits - x.bit_length()

    return max(sources, key=shared)


PolicyFor = Callable[[str, str], Policy]  # (vendor, product) -> the policy for that array


async def assemble(spec: MultipathSpec, base: SessionConfig, policy: Policy | PolicyFor,
                   pool: SessionPool) -> list[MultipathDevice]:
    """Discover, log in everywhere, and return one MultipathDevice per WWID (only ``spec.scsi_id`` when
    given). Raises with a message naming what is missing when nothing usable is found."""
    disc = dataclasses.replace(base, nop_interval=0, reconnect=False)
    records, errors = await discover(list(spec.targets), disc)
    for portal, err in errors.items():
        log.warning("discovery on %s failed: %s", portal, err)
    if not records:
        detail = "; ".join(f"{p}: {e}" for p, e in errors.items()) or "no targets returned"
        raise IscsiError(f"discovery found no targets ({detail})")
    chosen = records if spec.iqn == "*" else [r for r in records if r.iqn == spec.iqn]
    if not chosen:
        iqns = ", ".join(sorted({r.iqn for r in records}))
        raise ConfigError("--iqn", f"{spec.iqn} was not discovered; the targets offer: {iqns} (or use *)")
    return await build_devices(chosen, spec, base, policy, pool)


async def build_devices(records: Sequence[DiscoveredTarget], spec: MultipathSpec, base: SessionConfig,
                        policy: Policy | PolicyFor, pool: SessionPool) -> list[MultipathDevice]:
    """Log in to every record's portal and fold the paths into devices by WWID. ``policy`` may depend on
    the array's vendor and product (multipath.conf device sections)."""
    policy_for: PolicyFor = policy if callable(policy) else (lambda vendor, product: policy)
    session_policy = policy_for("", "")  # liveness and timeouts for the logins
    paths = await asyncio.gather(*(login_paths(r, pick_source(r.address, spec.sources), base, session_policy, pool)
                                   for r in records))
    by_wwid: dict[str, list[Path]] = {}
    for group in paths:
        for path in group:
            by_wwid.setdefault(path.wwid, []).append(path)
    if spec.scsi_id is not None:
        if spec.scsi_id not in by_wwid:
            found = ", ".join(sorted(by_wwid)) or "none"
            raise ConfigError("--scsi-id", f"no LUN with SCSIid {spec.scsi_id}; found: {found}")
        by_wwid = {spec.scsi_id: by_wwid[spec.scsi_id]}
    return [fold_device(wwid, members, policy_for) for wwid, members in sorted(by_wwid.items())]


def fold_device(wwid: str, members: list[Path], policy_for: PolicyFor) -> MultipathDevice:
    """One device over the paths to ``wwid``; refused when they disagree on capacity or block size."""
    sizes = {(p.device.size, p.device.block_size) for p in members
             if p.device is not None and p.device.capacity is not None}
    if not sizes:
        raise SanpathError(f"{wwid}: every path is standby or passive, so the capacity is unknown; "
                           "activate a controller (or use the rdac handler) and try again")
    if len(sizes) != 1:
        detail = ", ".join(f"{p.name}: {p.device.size if p.device else '?'} bytes" for p in members)
        raise SanpathError(f"paths to {wwid} disagree on capacity or block size ({detail}); refusing "
                           "to build a device over them")
    size, block_size = sizes.pop()
    known = next(p.device.capacity for p in members if p.device is not None and p.device.capacity is not None)
    for p in members:
        if p.device is not None and p.device.capacity is None:
            p.device.capacity = known
    vendor, product = members[0].vendor, members[0].product
    return MultipathDevice(wwid, members, policy_for(vendor, product), size=size, block_size=block_size)


async def login_paths(record: DiscoveredTarget, source: str | None, base: SessionConfig, policy: Policy,
                      pool: SessionPool) -> list[Path]:
    """One session to one portal from ``source``; one path per disk LUN behind it. A portal that fails
    gives no path (logged)."""
    config = dataclasses.replace(base, host=record.address, port=record.port, target=record.iqn, source=source,
                                 nop_interval=policy.nop_interval, nop_timeout=policy.nop_timeout,
                                 busy_silence=policy.busy_silence, busy_nop_timeout=policy.busy_nop_timeout,
                                 command_timeout=policy.command_timeout, reconnect=False)
    try:
        session = await pool.open(config)
        probe = ScsiDevice(session, 0)
        luns = await probe.report_luns()
    except SanpathError as e:
        log.warning("%s %s: no path: %s", record.portal, record.iqn, e)
        return []
    out = []
    for lun in luns:
        device = ScsiDevice(session, lun)
        state, reason = PathState.READY, "logged in"
        try:
            std = await device.inquiry()
            if std.peripheral_qualifier != 0 or std.peripheral_device_type != 0:
                continue  # not a disk (e.g. tgtd's controller LUN 0)
            wwid = await device.scsi_id()
            try:
                await device.open()
            except ScsiCommandError as e:
                ghost = ghost_reason(e.sense)
                if ghost is None:
                    raise
                state, reason = PathState.GHOST, ghost  # capacity comes from the other paths
        except SanpathError as e:
            log.warning("%s %s LUN %d: skipped: %s", record.portal, record.iqn, lun, e)
            continue
        path = Path(PathSpec(record.address, record.port, record.iqn, lun, source), session, device, wwid,
                    state=state, reason=reason)
        path.vendor, path.product = std.vendor, std.product
        out.append(path)
    if not out:
        await session.logout()
    return out
