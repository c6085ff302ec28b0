"""The target's object model: what is served where, apart from the listeners that serve it.

Named after RFC 7143 §3.4 and SAM-5, shaped like LIO's rtslib: a ``Target`` (an iSCSI target node)
has target portal groups (``TPG``, each one SCSI target port); a TPG has ``NetworkPortal``s, ``LUN``s
and ``NodeACL``s; a node ACL has ``MappedLUN``s. Every class turns into a plain dict with ``dump()``
and back with the ``setup(dict)`` classmethod, so that ``X.setup(x.dump()) == x``.

This module owns those facts and the target's answer for a LUN it does not have. It does not parse
configuration (config.py), lay out an array family (profiles.py builds these objects from a
``TargetSpec``) or listen (server.py). Logical units are live objects of the array: a ``LUN`` names
its storage object by unit serial number and carries the bound LU, which is not part of its dump;
likewise a target's ``server`` is set when a ``TargetServer`` serves it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConfigError
from ..scsi.constants import LU_NOT_SUPPORTED, Opcode, SenseKey, Status
from ..scsi.sense import build_fixed_sense
from .common import ScsiResult, alloc_trim
from .config import ChapSpec, check_iqn
from .spc import no_lu_inquiry, report_luns_data

if TYPE_CHECKING:
    from .lu import LogicalUnit
    from .server import TargetServer
    from .session import TargetSession


def _fields(what: str, d: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check that ``d`` is a dict with the required keys and no unknown ones."""
    if not isinstance(d, dict):
        raise ConfigError(what, f"must be a dict, got {type(d).__name__}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ConfigError(f"{what}.{missing[0]}", "is required")
    unknown = sorted(set(d) - set(required) - set(optional))
    if unknown:
        raise ConfigError(f"{what}.{unknown[0]}", f"unknown key; expected one of: {', '.join(required + optional)}")
    return d


def _int(what: str, value: Any, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(what, f"must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _str(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(what, f"must be a string, got {value!r}")
    return value


class NetworkPortal(NamedTuple):
    """An IP address and TCP port a TPG accepts connections on (RFC 7143 §3.4.1). It is a plain
    ``(address, port)`` tuple too, as the listeners and the fault layer use portals."""

    ip_address: str
    port: int  # 0 until the listener has bound: the kernel picks the port

    def dump(self) -> dict[str, Any]:
        return {"ip_address": self.ip_address, "port": self.port}

    @classmethod
    def setup(cls, d: dict[str, Any]) -> NetworkPortal:
        _fields("network_portal", d, ("ip_address", "port"))
        try:
            ipaddress.ip_address(d["ip_address"])
        except ValueError:
            raise ConfigError("network_portal.ip_address",
                              f"{d['ip_address']!r} is not an IP address (e.g. 127.0.0.1 or ::1)") from None
        return cls(d["ip_address"], _int("network_portal.port", d["port"], 0, 65535))

    def target_address(self, tpgt: int) -> str:
        """The portal as a SendTargets ``TargetAddress`` value (RFC 7143 §13.8): IPv6 in brackets."""
        host = f"[{self.ip_address}]" if ":" in self.ip_address else self.ip_address
        return f"{host}:{self.port},{tpgt}"


@dataclass(slots=True)
class LUN:
    """A logical unit number of a TPG (SAM-5 §4.6.4) and the storage object behind it."""

    index: int
    storage_object: str  # the unit serial number (VPD page 80h) of the logical unit
    lu: LogicalUnit | None = field(default=None, compare=False, repr=False)  # bound by the array

    def dump(self) -> dict[str, Any]:
        return {"index": self.index, "storage_object": self.storage_object}

    @classmethod
    def setup(cls, d: dict[str, Any]) -> LUN:
        _fields("lun", d, ("index", "storage_object"))
        return cls(_int("lun.index", d["index"], 0, 16383), _str("lun.storage_object", d["storage_object"]))


@dataclass(frozen=True, slots=True)
class MappedLUN:
    """The LUN number an initiator sees (``mapped_lun``) for a LUN of the TPG (``tpg_lun``)."""

    mapped_lun: int
    tpg_lun: int
    write_protect: bool = False

    def dump(self) -> dict[str, Any]:
        return {"mapped_lun": self.mapped_lun, "tpg_lun": self.tpg_lun, "write_protect": self.write_protect}

    @classmethod
    def setup(cls, d: dict[str, Any]) -> MappedLUN:
        _fields("mapped_lun", d, ("mapped_lun", "tpg_lun"), ("write_protect",))
        wp = d.get("write_protect", False)
        if not isinstance(wp, bool):
            raise ConfigError("mapped_lun.write_protect", f"must be true or false, got {wp!r}")
        return cls(_int("mapped_lun.mapped_lun", d["mapped_lun"], 0, 16383),
                   _int("mapped_lun.tpg_lun", d["tpg_lun"], 0, 16383), wp)


@dataclass(frozen=True, slots=True)
class NodeACL:
    """An initiator node allowed to log in to the TPG, by iSCSI name, and the LUNs it is given."""

    node_wwn: str
    mapped_luns: tuple[MappedLUN, ...] = ()

    def dump(self) -> dict[str, Any]:
        return {"node_wwn": self.node_wwn, "mapped_luns": [m.dump() for m in self.mapped_luns]}

    @classmethod
    def setup(cls, d: dict[str, Any]) -> NodeACL:
        _fields("node_acl", d, ("node_wwn",), ("mapped_luns",))
        return cls(check_iqn("node_acl.node_wwn", d["node_wwn"]),
                   tuple(MappedLUN.setup(m) for m in d.get("mapped_luns", [])))


@dataclass(slots=True)
class TPG:
    """A target portal group (RFC 7143 §3.4.1): one SCSI target port (SAM-5 §4.6.5) of its target."""

    tag: int  # the target portal group tag (TPGT)
    relative_port_id: int  # SPC-4 relative target port identifier
    tpg_id: int  # the target port group (ALUA, SPC-4 §5.16) this port belongs to
    controller: str | None = None  # the array controller the port is on, if the array has controllers
    network_portals: tuple[NetworkPortal, ...] = ()
    luns: tuple[LUN, ...] = ()
    node_acls: tuple[NodeACL, ...] = ()  # none: any initiator may log in

    def allows(self, initiator_name: str) -> bool:
        return not self.node_acls or any(acl.node_wwn == initiator_name for acl in self.node_acls)

    def dump(self) -> dict[str, Any]:
        return {"tag": self.tag, "relative_port_id": self.relative_port_id, "tpg_id": self.tpg_id,
                "controller": self.controller, "network_portals": [p.dump() for p in self.network_portals],
                "luns": [lun.dump() for lun in self.luns], "node_acls": [a.dump() for a in self.node_acls]}

    @classmethod
    def setup(cls, d: dict[str, Any]) -> TPG:
        _fields("tpg", d, ("tag", "relative_port_id", "tpg_id"),
                ("controller", "network_portals", "luns", "node_acls"))
        controller = d.get("controller")
        if controller is not None:
            _str("tpg.controller", controller)
        luns = tuple(LUN.setup(x) for x in d.get("luns", []))
        if len({lun.index for lun in luns}) != len(luns):
            raise ConfigError("tpg.luns", "LUN indexes must be unique within a TPG")
        return cls(_int("tpg.tag", d["tag"], 1, 65535), _int("tpg.relative_port_id", d["relative_port_id"], 1, 65535),
                   _int("tpg.tpg_id", d["tpg_id"], 0, 65535), controller,
                   tuple(NetworkPortal.setup(p) for p in d.get("network_portals", [])), luns,
                   tuple(NodeACL.setup(a) for a in d.get("node_acls", [])))


def _chap_dump(chap: ChapSpec) -> dict[str, Any]:
    # secrets are bytes (read from files); latin-1 maps every byte to one character and back
    out: dict[str, Any] = {"userid": chap.user, "password": chap.secret.decode("latin-1")}
    if chap.mutual_user is not None and chap.mutual_secret is not None:
        out["mutual_userid"] = chap.mutual_user
        out["mutual_password"] = chap.mutual_secret.decode("latin-1")
    return out


def _chap_setup(d: dict[str, Any]) -> ChapSpec:
    _fields("chap", d, ("userid", "password"), ("mutual_userid", "mutual_password"))
    if ("mutual_userid" in d) != ("mutual_password" in d):
        raise ConfigError("chap.mutual_userid", "mutual CHAP needs both mutual_userid and mutual_password")
    mutual_user, mutual = d.get("mutual_userid"), d.get("mutual_password")
    return ChapSpec(_str("chap.userid", d["userid"]), _str("chap.password", d["password"]).encode("latin-1"),
                    None if mutual_user is None else _str("chap.mutual_userid", mutual_user),
                    None if mutual is None else _str("chap.mutual_password", mutual).encode("latin-1"))


@dataclass(slots=True, eq=False)
class Target:
    """An iSCSI target node (RFC 7143 §3.4.1): its name, alias, CHAP settings and portal groups.

    ``luns`` maps each LUN of its TPGs to the bound logical unit; sessions look commands up there."""

    iqn: str
    alias: str = ""
    tpgs: tuple[TPG, ...] = ()
    chap: ChapSpec | None = None  # CHAP the initiator must answer, for every initiator
    luns: dict[int, LogicalUnit] = field(init=False, repr=False)
    _server: TargetServer | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.luns = {lun.index: lun.lu for tpg in self.tpgs for lun in tpg.luns if lun.lu is not None}
        self._server = None

    @property
    def server(self) -> TargetServer:
        """The ``TargetServer`` serving this target (it sets this when it takes the target on)."""
        if self._server is None:
            raise RuntimeError(f"target {self.iqn or '(discovery)'} is not served by a TargetServer yet")
        return self._server

    @server.setter
    def server(self, server: TargetServer) -> None:
        self._server = server

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Target):
            return NotImplemented
        return (self.iqn, self.alias, self.tpgs, self.chap) == (other.iqn, other.alias, other.tpgs, other.chap)

    def __hash__(self) -> int:
        return hash(self.iqn)

    def lun_ids(self) -> list[int]:
        return sorted(self.luns)

    def port_for_tpgt(self, tpgt: int) -> TPG:
        for tpg in self.tpgs:
            if tpg.tag == tpgt:
                return tpg
        raise KeyError(f"{self.iqn or 'discovery'} has no target portal group {tpgt}")

    def allows(self, initiator_name: str) -> bool:
        return any(tpg.allows(initiator_name) for tpg in self.tpgs)

    def sessions(self) -> list[TargetSession]:
        if self._server is None:
            return []
        return [s for s in self._server.all_sessions() if s.target is self]

    def no_lun_result(self, cdb: bytes) -> ScsiResult:
        """A command addressed to a LUN the target does not have (SPC-4 §4.6.4, §6.6.1): REPORT LUNS
        works through any LUN; INQUIRY says no logical unit can be here; anything else is refused."""
        op = cdb[0] if cdb else None
        if op == Opcode.REPORT_LUNS:
            return ScsiResult(Status.GOOD, data=alloc_trim(report_luns_data(sorted(self.luns)),
                                                           int.from_bytes(cdb[6:10], "big")))
        if op == Opcode.INQUIRY:
            return ScsiResult(Status.GOOD, data=alloc_trim(no_lu_inquiry(), int.from_bytes(cdb[3:5], "big")))
        return ScsiResult(Status.CHECK_CONDITION, sense=build_fixed_sense(SenseKey.ILLEGAL_REQUEST, *LU_NOT_SUPPORTED))

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"iqn": self.iqn, "alias": self.alias, "tpgs": [t.dump() for t in self.tpgs]}
        if self.chap is not None:
            out["chap"] = _chap_dump(self.chap)
        return out

    @classmethod
    def setup(cls, d: dict[str, Any]) -> Target:
        _fields("target", d, ("iqn",), ("alias", "tpgs", "chap"))
        tpgs = tuple(TPG.setup(t) for t in d.get("tpgs", []))
        if len({t.tag for t in tpgs}) != len(tpgs):
            raise ConfigError("target.tpgs", "target portal group tags must be unique within a target")
        return cls(check_iqn("target.iqn", d["iqn"]), _str("target.alias", d.get("alias", "")), tpgs,
                   _chap_setup(d["chap"]) if "chap" in d else None)
