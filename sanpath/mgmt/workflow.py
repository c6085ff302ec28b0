"""The SR workflow as the seed and XenServer run it: probe (IQNs, then LUNs, then the SRs on a LUN), create
(an SR on a SCSIid, one PBD per host, each plugged), plug and unplug, forget and destroy, and the host's
IQN. Operations validate in XenServer's order and fail with its error codes; they change rows only
through the store, and plugging is asked of each host's reconciler, then waited for."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import LoginError
from ..initiator.discovery import DiscoveredTarget
from ..initiator.session import SessionConfig
from ..iscsi.auth import ChapCredentials
from . import probe
from .errors import XenError
from .identity import check_iqn
from .pathplan import parse_multi_session
from .poolkey import PoolKey
from .store import Store
from .store.model import PBD, SR, Host

HEARTBEAT = 2.0  # seconds between a daemon's reports

MPATH = "mpath-"  # the PBD other-config key prefix of a LUN's path counts, as XenServer writes it
PLUG_TIMEOUT = 90.0
WAIT_POLL = 0.02  # seconds between looks at a PBD while a request waits for its host (a cheap primary-key read)


@dataclass(frozen=True, slots=True)
class Chap:
    user: str = ""
    secret: str = ""
    incoming_user: str = ""
    incoming_secret: str = ""


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """What the SR dialog asks: ``target`` (comma-separated), ``port``, ``targetIQN`` and ``SCSIid``."""

    target: str
    port: int = 3260
    iqn: str = ""
    scsi_id: str = ""
    chap: Chap = Chap()

    def addresses(self) -> list[tuple[str, int]]:
        """The targets, validated in XenServer's order: missing (95), port (142), resolution (140)."""
        if not self.target.strip():
            raise XenError("ConfigTargetMissing", "no target address given")
        if not 1 <= self.port <= 65535:
            raise XenError("ISCSIPort", f"port {self.port} is not from 1 to 65535", self.port)
        out = []
        for part in self.target.split(","):
            text = part.strip()
            if not text:
                continue
            host, port = text, self.port
            if text.startswith("["):
                host, _, rest = text[1:].partition("]")
                if rest:
                    port = _port(text, rest[1:] if rest.startswith(":") else rest)
            elif text.count(":") == 1:
                host, _, p = text.partition(":")
                port = _port(text, p)
            out.append((_resolve(host), port))
        if not out:
            raise XenError("ConfigTargetMissing", "no target address given")
        return out


def _port(text: str, port: str) -> int:
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise XenError("ISCSIPort", f"{text}: port {port!r} is not from 1 to 65535", port)
    return int(port)


def wildcard_port(addresses: list[tuple[str, int]], default: int) -> int:
    """The ``*`` entry's port: the one every target shares, else the port given."""
    ports = {p for _, p in addresses}
    return ports.pop() if len(ports) == 1 else default


def _resolve(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise XenError("DNSError", f"target {host!r} does not resolve: {e}", host) from None
    return str(infos[0][4][0])


def session_config(host: Host, chap: Chap) -> SessionConfig:
    if not host.iqn:
        raise XenError("ConfigISCSIIQNMissing", f"host {host.name_label} has no IQN", host.name_label)
    return SessionConfig(host="", initiator_name=host.iqn,
                         chap=ChapCredentials(chap.user, chap.secret.encode()) if chap.user else None,
                         mutual=(ChapCredentials(chap.incoming_user, chap.incoming_secret.encode())
                                 if chap.incoming_user else None),
                         login_timeout=probe.CONNECT_TIMEOUT, nop_interval=0)


def _error_detail(errors: dict[str, Exception]) -> str:
    return "; ".join(f"{where}: {e}" for where, e in errors.items())


class Workflow:
    def __init__(self, store: Store, key: PoolKey, requested: Callable[[], None] = lambda: None) -> None:
        """``requested`` is called after each plug or unplug request is written (this host's reconciler
        acts on it at once instead of at its next round)."""
        self.store = store
        self.key = key
        self.requested = requested

    # --- probe -----------------------------------------------------------------------------------------

    async def discover(self, host: Host, spec: TargetSpec, addresses: list[tuple[str, int]],
                       ) -> list[DiscoveredTarget]:
        records, errors = await probe.discover_iqns(addresses, session_config(host, spec.chap))
        if not records:
            raise XenError("ISCSIDiscovery", "discovery found no targets on "
                           f"{spec.target} ({_error_detail(errors) or 'no targets returned'})", spec.target)
        await self._check_target_names(records)
        return records

    async def _check_target_names(self, records: list[DiscoveredTarget]) -> None:
        hosts = {h.iqn: h for h in await self.store.hosts()}
        for r in records:
            if r.iqn in hosts:
                h = hosts[r.iqn]
                raise XenError("IQN_IN_USE", f"target {r.iqn} at {r.portal} has the IQN of host {h.name_label} "
                               f"({h.uuid})", r.iqn, h.name_label)

    async def luns(self, host: Host, spec: TargetSpec, records: list[DiscoveredTarget], iqns_xml: str,
                   ) -> tuple[list[DiscoveredTarget], list[probe.LunRecord]]:
        chosen = records if spec.iqn == "*" else [r for r in records if r.iqn == spec.iqn]
        if not chosen:
            raise XenError("ConfigTargetIQNMissing", f"{spec.iqn} was not discovered on {spec.target}; it offers "
                           + ", ".join(sorted({r.iqn for r in records})), iqns_xml)
        luns, errors = await probe.probe_luns(chosen, session_config(host, spec.chap))
        if not luns:
            refused = [e for where, e in errors.items() if where.count("/") == 1 and isinstance(e, LoginError)]
            # every portal refused the login (CHAP, ACL): ISCSILogin; none could be reached: ISCSITarget
            name = "ISCSILogin" if refused and len(refused) == len(errors) else "ISCSITarget"
            raise XenError(name, f"no LUN found behind {spec.iqn} on {spec.target} "
                           f"({_error_detail(errors) or 'the target has no disk LUNs'})", spec.iqn)
        return chosen, luns

    async def probe(self, host: Host, spec: TargetSpec) -> dict[str, Any]:
        """The stage the arguments reach: IQNs (no IQN), LUNs (no SCSIid), or the SRs on the LUN."""
        addresses = spec.addresses()
        records = await self.discover(host, spec, addresses)
        star = wildcard_port(addresses, spec.port)
        iqns_xml = probe.iqns_xml(records, spec.target, star)
        if not spec.iqn:
            iqns = [{"index": i, "address": r.address, "port": r.port, "tpgt": r.tpgt, "iqn": r.iqn}
                    for i, r in enumerate(records)]
            iqns.append({"index": len(records), "address": spec.target, "port": star, "tpgt": 0, "iqn": "*"})
            return {"stage": "iqns", "iqns": iqns, "xml": iqns_xml}
        _, luns = await self.luns(host, spec, records, iqns_xml)
        if not spec.scsi_id:
            return {"stage": "luns", "luns": [_lun_json(lun) for lun in luns], "xml": probe.luns_xml(luns)}
        if spec.scsi_id not in {lun.scsi_id for lun in luns}:
            raise XenError("ConfigSCSIid", f"no LUN {spec.scsi_id} behind {spec.iqn}; found "
                           + ", ".join(x.scsi_id for x in luns), probe.luns_xml(luns))
        sr = await self.store.sr_on(spec.scsi_id)
        srs = [(sr.uuid, sr.device_config.get("target", ""), sr.device_config.get("targetIQN", ""))] if sr else []
        return {"stage": "srs", "srs": [{"uuid": u, "target": t, "targetIQN": i} for u, t, i in srs],
                "xml": probe.srlist_xml(srs)}

    # --- create ----------------------------------------------------------------------------------------

    async def create(self, host: Host, name: str, spec: TargetSpec, multihomed: str = "auto", *,
                     strict: bool = False) -> tuple[SR, list[PBD], list[str]]:
        """The SR, its PBDs (one per host, each plugged except on a disabled host) and the warnings: the
        hosts' multipathing differs (with ``strict`` that is an error, and nothing is made)."""
        if multihomed not in ("auto", "true", "false"):
            raise XenError("VALUE_INVALID", f"multihomed {multihomed!r}: use auto, true or false", multihomed)
        hosts = await self.store.hosts()
        warnings = [w for w in [_multipathing_differs(hosts)] if w]
        if warnings and strict:
            raise XenError("MULTIPATH_NOT_ENABLED_ON_ALL_HOSTS", warnings[0], *(h.name_label for h in hosts))
        addresses = spec.addresses()
        records = await self.discover(host, spec, addresses)
        iqns_xml = probe.iqns_xml(records, spec.target, wildcard_port(addresses, spec.port))
        if not spec.iqn:
            raise XenError("ConfigTargetIQNMissing", f"give the target IQN; {spec.target} offers "
                           + ", ".join(sorted({r.iqn for r in records})) + " (or * for all)", iqns_xml)
        chosen, luns = await self.luns(host, spec, records, iqns_xml)
        lun = next((x for x in luns if x.scsi_id == spec.scsi_id), None)
        if lun is None:
            found = ", ".join(x.scsi_id for x in luns)
            raise XenError("ConfigSCSIid", f"no LUN {spec.scsi_id} behind {spec.iqn}; found {found}" if spec.scsi_id
                           else f"give the SCSIid of the LUN; found {found}", probe.luns_xml(luns))
        if (other := await self.store.sr_on(lun.scsi_id)) is not None:
            raise XenError("SRInUse", f"LUN {lun.scsi_id} is used by SR {other.name_label} ({other.uuid})",
                           lun.scsi_id)
        first = addresses[0][0]
        carriers = sorted(lun.targets, key=lambda t: t[0] != first)  # the target given first leads
        carrier_iqns = {iqn for _, _, iqn in carriers}
        known = [(r.address, r.port, r.iqn) for r in chosen if r.iqn in carrier_iqns]  # dead portals included
        if spec.iqn != "*":  # a target given that discovery could not ask (dead) is still a path to have
            known += [(a, p, spec.iqn) for a, p in addresses if (a, p, spec.iqn) not in known]
        portals = carriers + [p for p in known if p not in carriers]
        device_config: dict[str, Any] = {
            "target": spec.target, "port": str(spec.port), "targetIQN": spec.iqn, "SCSIid": lun.scsi_id,
            "multihomed": multihomed,
            "multihomelist": ",".join(dict.fromkeys(f"{a}:{p}" for a, p, _ in known)),
            "multiSession": "".join(f"{a},{p},{i}|" for a, p, i in carriers),  # ordered: the target given first
        }
        sm_config = {"multipathable": "true", "target": spec.target, "targetIQN": spec.iqn,
                     "portals": [list(p) for p in portals], "size": str(lun.size), "vendor": lun.vendor}
        sr = await self.store.create_sr(name, lun.scsi_id, device_config, sm_config)
        pbds = []
        for h in await self.store.hosts():  # a host joining meanwhile makes its own (join)
            try:
                pbds.append(await self.store.create_pbd(sr.uuid, h.uuid, await self._pbd_config(device_config,
                                                                                                 spec.chap)))
            except XenError as e:
                if e.name != "PBD_EXISTS":
                    raise
        pbds = list(await asyncio.gather(*(self._plug_new(p) for p in pbds)))
        return sr, pbds, warnings

    async def _plug_new(self, pbd: PBD) -> PBD:
        """Plug a new PBD; a disabled host's stays unplugged, with the refusal recorded on it."""
        try:
            return await self.plug(pbd.uuid, raise_error=False)
        except XenError as e:
            if e.name != "HOST_DISABLED":
                raise
            return await self.store.update_pbd(pbd.uuid, error=e.to_json())

    async def join(self, host: Host) -> list[PBD]:
        """A host new to the pool: a PBD for every shared SR, with its own copy of the secrets, each asked
        to be plugged (the host's reconciler plugs them)."""
        made = []
        for sr in await self.store.srs():
            if not sr.shared:
                continue
            existing = await self.store.pbds(sr_uuid=sr.uuid)
            if any(p.host_uuid == host.uuid for p in existing):
                continue
            config = await self.store.copy_secrets(existing[0].device_config) if existing else dict(sr.device_config)
            try:
                pbd = await self.store.create_pbd(sr.uuid, host.uuid, config)
            except XenError as e:
                if e.name != "PBD_EXISTS":  # sr create made it meanwhile
                    raise
                continue
            made.append(await self.store.request_plug(pbd.uuid, True))
        if made:
            self.requested()
        return made

    async def _pbd_config(self, device_config: dict[str, Any], chap: Chap) -> dict[str, Any]:
        """Each PBD holds its own copy of the secrets, as references to secret rows (XenServer's
        ``<key>_secret``)."""
        out = dict(device_config)
        if chap.user:
            out["chapuser"] = chap.user
            out["chappassword_secret"] = await self.store.put_secret(self.key.encrypt(chap.secret.encode()))
        if chap.incoming_user:
            out["incoming_chapuser"] = chap.incoming_user
            out["incoming_chappassword_secret"] = await self.store.put_secret(
                self.key.encrypt(chap.incoming_secret.encode()))
        return out

    # --- plug / unplug ---------------------------------------------------------------------------------

    async def plug(self, uuid: str, *, raise_error: bool = True, timeout: float = PLUG_TIMEOUT,
                   in_maintenance: bool = False) -> PBD:
        """``in_maintenance``: the replug of a multipath change, which a disabled host takes."""
        pbd = await self.store.pbd(uuid)
        if pbd.currently_attached and pbd.plugged:
            return pbd  # plug is idempotent
        host = await self.store.host(pbd.host_uuid)
        if not host.enabled and not in_maintenance:
            raise XenError("HOST_DISABLED", f"host {host.name_label} is disabled (maintenance mode): no new plugs go "
                           "to it", host.name_label, uuid)
        request = await self.store.request_plug(uuid, True)
        self.requested()
        return await self._wait(request, raise_error, timeout)

    async def unplug(self, uuid: str, *, force: bool = False, timeout: float = PLUG_TIMEOUT,
                     clients_now: int | None = None) -> PBD:
        """``clients_now``: the export's NBD clients as its process says right now (the PBD's own host
        knows it; another host's PBD goes by its last report)."""
        pbd = await self.store.pbd(uuid)
        clients = clients_now if clients_now is not None else int(pbd.other_config.get("nbd_clients", "0") or 0)
        if pbd.currently_attached and clients and not force:
            raise XenError("PBD_IN_USE", f"PBD {uuid} has {clients} NBD client(s) connected to "
                           f"{pbd.other_config.get('nbd', 'its export')}", uuid, clients)
        if not pbd.plugged and not pbd.currently_attached:
            return pbd
        request = await self.store.request_plug(uuid, False)
        self.requested()
        return await self._wait(request, True, timeout)

    async def _wait(self, pbd: PBD, raise_error: bool, timeout: float) -> PBD:
        """Until the PBD's host has acted on this request (its reconciler sets observed_generation)."""
        deadline = time.monotonic() + timeout
        next_live_check, offline = 0.0, False
        while True:
            current = await self.store.pbd(pbd.uuid)
            if current.observed_generation >= pbd.generation:
                if current.error and raise_error:
                    raise XenError.from_json(current.error)
                return current
            if time.monotonic() >= next_live_check:  # liveness moves at heartbeat pace, not at WAIT_POLL's
                next_live_check = time.monotonic() + HEARTBEAT / 4
                host = await self.store.host(pbd.host_uuid)
                offline = not live(host, await self.store.now())
            if offline:
                error = XenError("HOST_OFFLINE", f"host {host.name_label} ({host.uuid}) is not reporting, so PBD "
                                 f"{pbd.uuid} stays as it was; the request is kept for when it is back",
                                 host.uuid, pbd.uuid)
                if raise_error:
                    raise error
                return await self.store.update_pbd(pbd.uuid, error=error.to_json())
            if time.monotonic() > deadline:
                late = XenError("TIMEOUT", f"host {pbd.host_uuid} did not act on PBD {pbd.uuid} within "
                                f"{timeout:g} s; the request stands and is acted on when it can be", pbd.uuid)
                if raise_error:
                    raise late
                return await self.store.update_pbd(pbd.uuid, error=late.to_json())
            await asyncio.sleep(WAIT_POLL)

    # --- forget / destroy / IQN ------------------------------------------------------------------------

    async def forget(self, uuid: str) -> None:
        await self.store.sr(uuid)
        plugged = [p for p in await self.store.pbds(sr_uuid=uuid) if p.plugged or p.currently_attached]
        if plugged:
            raise XenError("SR_HAS_PLUGGED_PBD", f"SR {uuid} has {len(plugged)} plugged PBD(s): "
                           + ", ".join(p.uuid for p in plugged), uuid)
        await self.store.delete_sr(uuid)

    async def set_iqn(self, host: Host, iqn: str) -> Host:
        check_iqn(iqn)
        for other in await self.store.hosts():  # iSCSI names compare without case (RFC 3722)
            if other.iqn.lower() == iqn.lower() and other.uuid != host.uuid:
                raise XenError("IQN_IN_USE", f"IQN {iqn} is host {other.name_label}'s ({other.uuid}); host "
                               f"{host.name_label} cannot take it too", iqn, other.name_label, host.name_label)
        attached = [p for p in await self.store.pbds(host_uuid=host.uuid) if p.currently_attached]
        if attached:
            raise XenError("ISCSIInitiator", f"host {host.name_label} has iSCSI sessions (PBD "
                           + ", ".join(p.uuid for p in attached) + " plugged); its IQN stays "
                           f"{host.iqn}", host.name_label)
        for sr in await self.store.srs():
            targets = {sr.device_config.get("targetIQN", "")} | {
                i for _, _, i in parse_multi_session(sr.device_config.get("multiSession", ""))}
            if iqn.lower() in {t.lower() for t in targets}:
                raise XenError("IQN_IN_USE", f"IQN {iqn} is the name of a target of SR {sr.name_label} "
                               f"({sr.uuid}); host {host.name_label} cannot take it", iqn, sr.uuid)
        return await self.store.update_host(host.uuid, iqn=iqn)


def _multipathing_differs(hosts: list[Host]) -> str | None:
    """XenCenter's warning that multipathing is not on for every host, as a sentence; None when they agree."""
    if len({h.multipathing for h in hosts}) <= 1:
        return None
    on = ", ".join(h.name_label for h in hosts if h.multipathing) or "none"
    off = ", ".join(h.name_label for h in hosts if not h.multipathing)
    return f"multipathing is not enabled on every host of the pool: on for {on}, off for {off}"


def live(host: Host, now: float) -> bool:
    """Whether the host's daemon reported within three heartbeats (``now`` and the heartbeats are the
    store's clock); else it is unreachable, and what its rows say about its PBDs is not known to be true."""
    return now - host.heartbeat < 3 * HEARTBEAT


def _lun_json(lun: probe.LunRecord) -> dict[str, Any]:
    return {"vendor": lun.vendor, "serial": lun.serial, "LUNid": lun.lun_id, "size": lun.size,
            "SCSIid": lun.scsi_id, "portals": list(lun.portals), "iqn": lun.iqn}
