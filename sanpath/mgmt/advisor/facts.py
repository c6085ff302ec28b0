"""Everything the advisor's rules look at, gathered beforehand (``gather.py``) so that every rule is a pure
function of these records: a host's NICs and the kernel's route choice towards each portal, the array as
discovery and INQUIRY show it, and the pool's SRs and PBDs. Plain frozen data, JSON both ways, so a
recorded setup can be checked offline."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from ..netlink import BOND_KINDS

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True, slots=True)
class Nic:
    """A network interface: ``kind`` is IFLA_INFO_KIND ("" for a physical NIC), ``master`` the bond, team or
    bridge it is a port of, ``purpose`` storage, management or none (the PIF's)."""

    name: str
    addresses: tuple[str, ...] = ()  # CIDR strings
    kind: str = ""
    master: str = ""
    master_kind: str = ""
    carrier: bool = True
    purpose: str = "none"

    @property
    def aggregated(self) -> str:
        """"master" for a bond or team master, "port" for one of its ports, "" otherwise."""
        if self.kind in BOND_KINDS:
            return "master"
        return "port" if self.master and self.master_kind in BOND_KINDS else ""

    def interfaces(self) -> tuple[Interface, ...]:
        return tuple(ipaddress.ip_interface(a) for a in self.addresses)


@dataclass(frozen=True, slots=True)
class Route:
    """The kernel's choice for a packet to ``portal`` (an address) from ``source`` ("" for none given):
    out of ``device``, via ``gateway``; ``device`` "" when it would not send at all."""

    portal: str
    source: str
    device: str
    gateway: str = ""


@dataclass(frozen=True, slots=True)
class HostFacts:
    name: str
    iqn: str = ""
    multipathing: bool | None = None  # None: no pool to say
    handler: str = "dmp"
    nics: tuple[Nic, ...] = ()
    routes: tuple[Route, ...] = ()
    uuid: str = ""

    def purpose(self, purpose: str) -> tuple[Nic, ...]:
        return tuple(n for n in self.nics if n.purpose == purpose)

    def nic(self, name: str) -> Nic | None:
        return next((n for n in self.nics if n.name == name), None)

    def storage_interfaces(self) -> list[tuple[Nic, Interface]]:
        """(NIC, address) of every address on a storage NIC."""
        return [(n, i) for n in self.purpose("storage") for i in n.interfaces()]

    def storage_nic_for(self, address: str) -> Nic | None:
        """The storage NIC whose subnet holds ``address``, if any."""
        ip = ipaddress.ip_address(address)
        return next((n for n, i in self.storage_interfaces() if ip in i.network), None)


@dataclass(frozen=True, slots=True)
class Portal:
    """One SendTargets record: a (portal, IQN) with its target portal group tag."""

    address: str
    port: int
    iqn: str
    tpgt: int = 1

    @property
    def portal(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class LunPath:
    """A LUN as one (portal, IQN) shows it: its target port group and relative port (VPD 83h)."""

    address: str
    port: int
    iqn: str
    port_group: int | None = None
    relative_port: int | None = None


@dataclass(frozen=True, slots=True)
class Lun:
    """One logical unit over every path that shows it: standard INQUIRY's vendor, product and TPGS."""

    scsi_id: str
    vendor: str = ""
    product: str = ""
    tpgs: int = 0
    paths: tuple[LunPath, ...] = ()


@dataclass(frozen=True, slots=True)
class Array:
    """An array as this host sees it from ``targets`` (the addresses asked, "ip:port"): every SendTargets
    record, every LUN, and what could not be asked (by "ip:port" or "ip:port/iqn")."""

    targets: tuple[str, ...]
    portals: tuple[Portal, ...] = ()
    luns: tuple[Lun, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def iqns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.iqn for p in self.portals))

    def lun(self, scsi_id: str) -> Lun | None:
        return next((lun for lun in self.luns if lun.scsi_id == scsi_id), None)

    def carriers(self, scsi_id: str) -> tuple[str, ...]:
        """The IQNs through which LUN ``scsi_id`` was seen."""
        lun = self.lun(scsi_id)
        return tuple(dict.fromkeys(p.iqn for p in lun.paths)) if lun else ()


@dataclass(frozen=True, slots=True)
class Pbd:
    """A PBD as its host's daemon last reported it: ``counts`` is mpath-<SCSIid> ([active, max]),
    ``routed`` the paths that go through the routing table (a portal in no storage subnet)."""

    uuid: str
    host: str  # the host's name
    plugged: bool = False
    attached: bool = False
    multihomed: bool = True
    counts: tuple[int, int] | None = None
    sessions: int = 0
    routed: tuple[str, ...] = ()
    initiator: str = ""  # the IQN its sessions log in with (device-config localIQN, else the host's)


@dataclass(frozen=True, slots=True)
class Sr:
    uuid: str
    name: str
    scsi_id: str
    targets: tuple[str, ...]  # device-config target, as "ip:port"
    iqn: str  # device-config targetIQN: one IQN or "*"
    portals: tuple[Portal, ...] = ()  # what the SR was made over (sm-config portals)
    pbds: tuple[Pbd, ...] = ()


@dataclass(frozen=True, slots=True)
class Settings:
    """The multipath settings LUN ``scsi_id`` runs with on ``host`` ("" when checked with no pool), each key's
    value and, in ``origins``, where it came from (default, device section, config file, handler)."""

    scsi_id: str
    values: dict[str, Any]
    host: str = ""
    origins: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Facts:
    hosts: tuple[HostFacts, ...] = ()
    arrays: tuple[Array, ...] = ()
    srs: tuple[Sr, ...] = ()
    settings: tuple[Settings, ...] = ()
    iqn: str | None = None  # the IQN (or "*") the admin means to use, for a check before the SR exists
    pool: bool = False  # gathered from a pool (hosts' multipathing is known)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def array_of(self, sr: Sr) -> Array | None:
        """The array record gathered from the SR's target list."""
        return next((a for a in self.arrays if set(a.targets) == set(sr.targets)), None)

    def choices(self) -> list[tuple[Array, str, Sr | None]]:
        """(array, IQN or "*", SR or None): the admin's planned IQN for each array, then every SR's."""
        out: list[tuple[Array, str, Sr | None]] = [(a, self.iqn, None) for a in self.arrays if self.iqn]
        for sr in self.srs:
            array = self.array_of(sr)
            if array is not None:
                out.append((array, sr.iqn, sr))
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Facts:
        return _load(cls, data)


def _load(cls: Any, data: Any) -> Any:
    """A dataclass tree from ``asdict`` output (tuples of records, tuples of plain values)."""
    kwargs = {}
    hints = {f.name: f for f in fields(cls)}
    for name, value in data.items():
        if name not in hints:
            raise ValueError(f"{cls.__name__} has no field {name!r}")
        kwargs[name] = _value(hints[name].type, value)
    return cls(**kwargs)


_RECORDS = {c.__name__: c for c in (Nic, Route, HostFacts, Portal, LunPath, Lun, Array, Pbd, Sr, Settings)}


def _value(annotation: Any, value: Any) -> Any:
    text = str(annotation)
    for name, record in _RECORDS.items():
        if text.startswith(f"tuple[{name},"):
            return tuple(_load(record, v) for v in value)
    if text.startswith("tuple[") and isinstance(value, list):
        return tuple(value)
    assert not is_dataclass(value)
    return value
