# The SR probe: the three stages of XenServer's ``sr-probe`` for an iSCSI SR (which IQNs the targets
# offer, which LUNs an IQN carries, and the SR list), as a library with no HTTP and no database. Owns the
# probe sessions it opens (every one is logged out before returning) and the XML that sr-probe prints.

from __future__ import annotations

import asyncio
import dataclasses
import xml.dom.minidom
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import SanpathError, ScsiCommandError
from ..initiator.device import ScsiDevice
from ..initiator.discovery import DiscoveredTarget, parse_send_targets
from ..initiator.session import Session, SessionConfig
from ..multipath.sense import ghost_reason
from ..scsi.constants import Association, DesignatorType
from ..scsi.parse import parse_device_identification

DEFAULT_PORT = 3260
CONNECT_TIMEOUT = 3.0  # connect + login: a dead portal costs at most this
REPLY_TIMEOUT = 5.0  # SendTargets answer, logout

ProbeError = (SanpathError, OSError, TimeoutError, ValueError, OverflowError)  # what one target or portal may fail with


def _probe_config(base: SessionConfig, host: str, port: int, target: str | None) -> SessionConfig:
    """A short-lived session: short login, no NOP pings, no reconnect."""
    return dataclasses.replace(base, host=host, port=port, target=target, nop_interval=0, reconnect=False,
                               login_timeout=min(base.login_timeout, CONNECT_TIMEOUT))


# --- stage 1: the IQNs -----------------------------------------------------------------------------


async def _send_targets(config: SessionConfig) -> list[DiscoveredTarget]:
    session = await Session.open(config)
    try:
        pairs = await session.text([("SendTargets", "All")], timeout=REPLY_TIMEOUT)
    finally:
        await session.logout(timeout=REPLY_TIMEOUT)
    return parse_send_targets(pairs, (config.host, config.port))


async def discover_iqns(targets: list[tuple[str, int]], config: SessionConfig,
                        ) -> tuple[list[DiscoveredTarget], dict[str, Exception]]:
    """SendTargets on every target given (XenServer asks only the first), all at once. Returns the records
    merged in discovery order (targets in the order given, then each one's answer in its order), one per
    (address, port, IQN), and the error of each target that failed, keyed by its "ip:port"."""
    configs = [_probe_config(config, host, port, None) for host, port in targets]
    results = await asyncio.gather(*(_send_targets(c) for c in configs), return_exceptions=True)
    records: list[DiscoveredTarget] = []
    seen: set[tuple[str, int, str]] = set()
    errors: dict[str, Exception] = {}
    for c, result in zip(configs, results, strict=True):
        if isinstance(result, ProbeError):
            errors.setdefault(c.portal, result)
            continue
        if isinstance(result, BaseException):
            raise result
        for record in result:
            key = (record.address, record.port, record.iqn)
            if key not in seen:
                seen.add(key)
                records.append(record)
    return records, errors


# --- stage 2: the LUNs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LunRecord:
    """One logical unit, merged over every (portal, IQN) that carries it. ``lun_id`` and ``iqn`` are
    those of the first path seen; ``size`` is 0 when no path could read it (every path standby)."""

    vendor: str
    serial: str
    lun_id: int
    size: int
    scsi_id: str
    portals: tuple[str, ...]
    iqn: str
    targets: tuple[tuple[str, int, str], ...] = ()  # every (address, port, IQN) that carries it


@dataclass(frozen=True, slots=True)
class SeenLun:
    """One LUN as one path shows it: standard INQUIRY (vendor, product, TPGS), the unit serial, the SCSIid,
    and the target port group and relative target port of the port it was seen through (VPD 83h)."""

    portal: str
    address: str
    port: int
    iqn: str
    lun: int
    vendor: str
    serial: str
    scsi_id: str
    size: int | None  # None: the path is standby (ghost), so READ CAPACITY failed
    product: str = ""
    tpgs: int = 0
    port_group: int | None = None
    relative_port: int | None = None


@dataclass(frozen=True, slots=True)
class _LunInfo:
    vendor: str
    product: str
    tpgs: int
    serial: str
    scsi_id: str
    size: int | None
    port_group: int | None
    relative_port: int | None


def _port_designators(vpd83: bytes) -> tuple[int | None, int | None]:
    """(target port group, relative target port) from VPD 83h's target-port designators (SPC-4 7.8.6.7-8)."""
    group = relative = None
    for d in parse_device_identification(vpd83):
        if d.association != Association.TARGET_PORT or len(d.value) < 4:
            continue
        if d.designator_type == DesignatorType.TARGET_PORT_GROUP:
            group = int.from_bytes(d.value[2:4], "big")
        elif d.designator_type == DesignatorType.RELATIVE_TARGET_PORT:
            relative = int.from_bytes(d.value[2:4], "big")
    return group, relative


async def _read_lun(device: ScsiDevice) -> _LunInfo | None:
    """A disk LUN as this path shows it; None for anything else (tgtd's controller LUN 0)."""
    std = await device.inquiry()
    if std.peripheral_qualifier != 0 or std.peripheral_device_type != 0:
        return None
    pages = await device.supported_vpd_pages()
    serial = ""
    if 0x80 in pages:
        try:
            serial = await device.serial()
        except ScsiCommandError:
            serial = ""
    scsi_id = await device.scsi_id()
    group, relative = _port_designators(await device.vpd(0x83)) if 0x83 in pages else (None, None)
    size: int | None
    try:
        size = (await device.open()).size
    except ScsiCommandError as e:
        if ghost_reason(e.sense) is None:
            raise
        size = None
    return _LunInfo(std.vendor, std.product, std.tpgs, serial, scsi_id, size, group, relative)


async def _probe_one(record: DiscoveredTarget, base: SessionConfig, errors: dict[str, Exception]) -> list[SeenLun]:
    where = f"{record.portal}/{record.iqn}"
    try:
        session = await Session.open(_probe_config(base, record.address, record.port, record.iqn))
    except ProbeError as e:
        errors[where] = e
        return []
    out: list[SeenLun] = []
    try:
        luns = await ScsiDevice(session, 0).report_luns()
        for lun in luns:
            try:
                info = await _read_lun(ScsiDevice(session, lun))
            except (SanpathError, ValueError) as e:  # ValueError: malformed INQUIRY/VPD data
                errors[f"{where}/{lun}"] = e
                continue
            if info is not None:
                out.append(SeenLun(record.portal, record.address, record.port, record.iqn, lun, info.vendor,
                                   info.serial, info.scsi_id, info.size, info.product, info.tpgs, info.port_group,
                                   info.relative_port))
    except ProbeError as e:
        errors[where] = e
    finally:
        await session.logout(timeout=REPLY_TIMEOUT)
    return out


def _merge(seen: Sequence[SeenLun], errors: dict[str, Exception]) -> list[LunRecord]:
    groups: dict[str, list[SeenLun]] = {}
    for s in seen:  # a LUN with no SCSIid cannot be matched across paths: it stands alone
        groups.setdefault(s.scsi_id or f"\0{s.portal}/{s.iqn}/{s.lun}", []).append(s)
    out = []
    for members in groups.values():
        first = members[0]
        sizes = list(dict.fromkeys(m.size for m in members if m.size is not None))
        if len(sizes) > 1:
            detail = ", ".join(f"{m.portal}/{m.iqn}/{m.lun}: {m.size}" for m in members)
            errors[first.scsi_id] = SanpathError(f"paths to {first.scsi_id} disagree on the size ({detail})")
        portals = tuple(dict.fromkeys(m.portal for m in members))
        out.append(LunRecord(first.vendor, first.serial, first.lun, sizes[0] if sizes else 0, first.scsi_id,
                             portals, first.iqn, tuple(dict.fromkeys((m.address, m.port, m.iqn) for m in members))))
    return out


async def probe_luns(records: list[DiscoveredTarget], config: SessionConfig,
                     ) -> tuple[list[LunRecord], dict[str, Exception]]:
    """Log in to every (portal, IQN) at once, read each disk LUN (vendor, unit serial, size, SCSIid), and
    merge them by SCSIid: one record per LUN, with every portal that carries it, in the order first seen.
    Every session is logged out before returning. Errors are keyed "ip:port/iqn" for a login or REPORT
    LUNS that failed (that path is skipped), "ip:port/iqn/lun" for one LUN, and the SCSIid for paths that
    disagree on a LUN's size."""
    seen, errors = await probe_paths(records, config)
    return _merge(seen, errors), errors


async def probe_paths(records: list[DiscoveredTarget], config: SessionConfig,
                      ) -> tuple[list[SeenLun], dict[str, Exception]]:
    """Every disk LUN as every (portal, IQN) shows it, unmerged (the advisor's view), with the errors keyed
    as ``probe_luns`` keys them. One login per (portal, IQN), all at once, each logged out."""
    unique: dict[tuple[str, int, str], DiscoveredTarget] = {}
    for r in records:  # one login per (portal, IQN), whatever the portal group tags say
        unique.setdefault((r.address, r.port, r.iqn), r)
    errors: dict[str, Exception] = {}
    found = await asyncio.gather(*(_probe_one(r, config, errors) for r in unique.values()))
    return [s for group in found for s in group], errors


# --- the XML, as sr-probe prints it ----------------------------------------------------------------


def _render(root: str, entry: str, rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    """minidom's ``toprettyxml()``, as XenServer prints it: one element per line, tab-indented, a leaf's
    text on its line; empty values are left out."""
    doc = xml.dom.minidom.Document()
    top = doc.createElement(root)
    doc.appendChild(top)
    for row in rows:
        item = doc.createElement(entry)
        top.appendChild(item)
        for tag, text in row:
            if text == "":
                continue
            leaf = doc.createElement(tag)
            leaf.appendChild(doc.createTextNode(text))
            item.appendChild(leaf)
    return doc.toprettyxml(indent="\t")


def _port(port: int) -> str:
    return "" if port == DEFAULT_PORT else str(port)


def iqns_xml(records: Sequence[DiscoveredTarget], targets_text: str, wildcard_port: int = DEFAULT_PORT) -> str:
    """Stage 1: ``<iscsi-target-iqns>``, a ``<TGT>`` per (portal, IQN) in discovery order, then the
    wildcard ``*`` whose IPAddress is the target list as the user wrote it. Port only when not 3260."""
    rows = [[("Index", str(i)), ("IPAddress", r.address), ("Port", _port(r.port)), ("TargetIQN", r.iqn)]
            for i, r in enumerate(records)]
    rows.append([("Index", str(len(records))), ("IPAddress", targets_text),
                 ("Port", _port(wildcard_port)), ("TargetIQN", "*")])
    return _render("iscsi-target-iqns", "TGT", rows)


def luns_xml(luns: Sequence[LunRecord]) -> str:
    """Stage 2: ``<iscsi-target>``, a ``<LUN>`` per LUN (vendor, serial, LUNid, size in bytes, SCSIid)."""
    return _render("iscsi-target", "LUN", [
        [("vendor", lun.vendor), ("serial", lun.serial), ("LUNid", str(lun.lun_id)), ("size", str(lun.size)),
         ("SCSIid", lun.scsi_id)] for lun in luns])


def srlist_xml(srs: Sequence[tuple[str, str, str]]) -> str:
    """Stage 3: ``<SRlist>``, an ``<SR>`` per (uuid, target, target IQN) of the SRs found on the LUN."""
    return _render("SRlist", "SR", [[("UUID", uuid), ("Target", target), ("TargetIQN", iqn)]
                                    for uuid, target, iqn in srs])
