"""Target configuration: the TOML file and the quick command-line form, parsed into frozen specs.

Every key is checked here, before anything listens or opens a file; an error names the offending key
(``target[0].lun[1].size``) and says what would be accepted.

File format::

    [server]
    cmd_window = 128            # commands a session may have outstanding (CmdSN window)
    nop_in_interval = 0         # seconds between target NOP-In pings; 0 = never
    discovery_chap = { user = "d", secret_file = "/etc/sanpath/discovery-secret" }  # optional

    [[target]]
    iqn = "iqn.2026-11.org.example:array1"
    alias = "array1"
    initiators = ["iqn.2026-11.org.example:host1"]   # ACL; absent or empty = any initiator
    chap = { user = "u", secret_file = "/etc/sanpath/secret", mutual_user = "t", mutual_secret = "..." }

    [[target.portal_group]]
    tag = 1
    portals = ["127.0.0.1:3260", "[::1]:3260"]

    # Array family (see sanpath.target.profiles): portal (default) | multi-iqn | alua | rdac.
    # portal may use portal_group or controller tables; the others need controller tables.
    profile = "alua"
    owner = "A"                     # controller owning every LUN at start (alua, rdac)
    non_owner_state = "standby"     # alua: non-optimized (default) | standby
    explicit = true                 # alua: accept SET TARGET PORT GROUPS (TPGS=11b); false: implicit only
    implicit_on_owner_loss = true   # alua, rdac: ownership moves when the owning controller fails
    implicit_after_commands = 0     # alua: move ownership after N consecutive I/O commands on a non-owner
                                    # port (0: never)
    transition_time = 0.0           # seconds LUs spend transitioning (alua) or quiescing (rdac) on a move
    iqn_per = "portal"              # multi-iqn: one IQN per portal (default) or per controller

    [[target.controller]]
    name = "A"
    portals = ["127.0.0.1:3260", "127.0.0.3:3260"]
    [[target.controller]]
    name = "B"
    portals = ["127.0.0.2:3260", "127.0.0.4:3260"]

    [[target.lun]]
    id = 0
    path = "/var/lib/sanpath/lun0.img"   # file or block device; created at `size` when missing
    size = "1GiB"
    # or: memory = "512MiB"
    block_size = 512
    physical_block_size = "4KiB"         # optional: block_size times a power of two (READ CAPACITY (16)
                                         # LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT); default block_size
    serial = "optional, derived when absent"
    read_only = false

On the command line a LUN is ``PATH``, ``PATH:SIZE`` or ``mem:SIZE``, optionally followed by
``,KEY=VALUE`` options with the keys of a ``[[target.lun]]`` table: ``block_size``,
``physical_block_size``, ``serial`` and ``read_only`` (``true``/``false``), e.g.
``--lun /var/lib/sanpath/lun0.img:10GiB,physical_block_size=4KiB``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError
from ..iscsi.auth import MIN_SECRET_LENGTH, check_secret
from ..iscsi.constants import DEFAULT_PORT

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGTP]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_IQN_RE = re.compile(r"^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:.+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$")


def parse_size(key: str, text: str | int) -> int:
    """'1GiB', '512M', '4096' -> bytes (binary units)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise ConfigError(key, f"{text!r} is not a size; write e.g. 4096, 512MiB, 1GiB")
        unit = (m.group(2) or "").upper().rstrip("B").rstrip("I")
        value = int(m.group(1)) * _UNITS[unit]
    if value <= 0:
        raise ConfigError(key, f"size must be positive, got {text!r}")
    return value


def parse_portal(key: str, text: str) -> tuple[str, int]:
    """'127.0.0.1', '127.0.0.1:3260', '[::1]:3260' -> (address, port)."""
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(key, f"{text!r}: unclosed '[' in an IPv6 portal; write [::1]:3260")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(key, f"{text!r}: expected ':PORT' after ']'")
            port = _port(key, rest[1:])
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = _port(key, p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(key, f"{text!r}: a portal must be an IP address (e.g. 127.0.0.1:3260)") from None
    return host, port


def _port(key: str, text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError(key, f"port {text!r} must be a number in 1..65535 (0: any free port)")
    return int(text)


def check_iqn(key: str, name: str) -> str:
    if not isinstance(name, str) or not _IQN_RE.match(name):
        raise ConfigError(key, f"{name!r} is not an iSCSI name; write iqn.YYYY-MM.reversed.domain[:suffix] "
                          "(RFC 7143 4.2.7)")
    return name


@dataclass(frozen=True, slots=True)
class ChapSpec:
    user: str
    secret: bytes
    mutual_user: str | None = None
    mutual_secret: bytes | None = None


@dataclass(frozen=True, slots=True)
class LunSpec:
    id: int
    path: str | None  # None = memory backstore
    size: int | None
    block_size: int = 512
    serial: str = ""
    read_only: bool = False
    lbppbe: int = 0  # logical blocks per physical block exponent (SBC-3 5.16.2): physical = block_size << lbppbe

    @property
    def physical_block_size(self) -> int:
        return self.block_size << self.lbppbe


@dataclass(frozen=True, slots=True)
class PortalGroupSpec:
    tag: int
    portals: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ControllerSpec:
    """One array controller (A, B, ...) and the portals on its ports."""

    name: str
    portals: tuple[tuple[str, int], ...]


PROFILES = ("portal", "multi-iqn", "alua", "rdac")
NON_OWNER_STATES = ("non-optimized", "standby")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    iqn: str
    alias: str = ""
    portal_groups: tuple[PortalGroupSpec, ...] = ()
    luns: tuple[LunSpec, ...] = ()
    initiators: tuple[str, ...] = ()
    chap: ChapSpec | None = None
    profile: str = "portal"
    controllers: tuple[ControllerSpec, ...] = ()
    owner: str = "A"
    non_owner_state: str = "non-optimized"
    explicit: bool = True
    implicit_on_owner_loss: bool = True
    implicit_after_commands: int = 0
    transition_time: float = 0.0
    iqn_per: str = "portal"


@dataclass(frozen=True, slots=True)
class ServerSpec:
    targets: tuple[TargetSpec, ...]
    cmd_window: int = 128
    nop_in_interval: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    discovery_chap: ChapSpec | None = None  # CHAP required on discovery sessions


def lun_serial(target_iqn: str, lun: LunSpec) -> str:
    """A stable unit serial: the configured one, else derived from the backing file or target+LUN."""
    if lun.serial:
        return lun.serial
    seed = os.path.realpath(lun.path) if lun.path else f"{target_iqn}/{lun.id}"
    return hashlib.sha256(seed.encode()).hexdigest()[:24]


def lun_naa(serial: str) -> bytes:
    """An 8-byte NAA 3 (locally assigned, SPC-4 7.8.6.6.5) designator derived from the serial, so the
    LUN identity is the same through every portal and across restarts."""
    digest = hashlib.sha256(b"sanpath-naa:" + serial.encode()).digest()
    return bytes([0x30 | (digest[0] & 0x0F)]) + digest[1:8]


# --- parsing -----------------------------------------------------------------------------------------


def _get(table: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}.{key}", "is required")
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}.{key}", f"must be a {want}, got {value!r}")
    return value


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}" if where else key,
                              f"unknown key; expected one of: {', '.join(sorted(allowed))}")


def _secret(table: dict[str, Any], name: str, where: str) -> bytes | None:
    if name in table and f"{name}_file" in table:
        raise ConfigError(f"{where}.{name}", f"give either {name} or {name}_file, not both")
    if f"{name}_file" in table:
        path = _get(table, f"{name}_file", where, str)
        try:
            with open(path, "rb") as f:
                return f.read().strip()
        except OSError as e:
            raise ConfigError(f"{where}.{name}_file", f"cannot read {path}: {e.strerror}") from None
    if name in table:
        return str(_get(table, name, where, str)).encode()
    return None


def _chap(table: dict[str, Any], where: str) -> ChapSpec:
    _only(table, {"user", "secret", "secret_file", "mutual_user", "mutual_secret", "mutual_secret_file"}, where)
    secret = _secret(table, "secret", where)
    if secret is None:
        raise ConfigError(f"{where}.secret", "is required (or secret_file)")
    mutual_user = _get(table, "mutual_user", where, str, None)
    mutual_secret = _secret(table, "mutual_secret", where)
    if (mutual_user is None) != (mutual_secret is None):
        raise ConfigError(f"{where}.mutual_user", "mutual CHAP needs both mutual_user and mutual_secret")
    check_secret(secret, what=f"{where}.secret", min_length=MIN_SECRET_LENGTH)
    if mutual_secret is not None:
        check_secret(mutual_secret, what=f"{where}.mutual_secret", min_length=MIN_SECRET_LENGTH)
    if mutual_secret == secret:
        raise ConfigError(f"{where}.mutual_secret", "must differ from secret (RFC 7143 9.2.1)")
    return ChapSpec(_get(table, "user", where, str), secret, mutual_user, mutual_secret)


MAX_LBPPBE = 15  # the READ CAPACITY (16) field is four bits wide


def _lbppbe(key: str, value: str | int, block_size: int) -> int:
    """``physical_block_size`` -> the LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (SBC-3 5.16.2)."""
    physical = parse_size(key, value)
    ratio, rest = divmod(physical, block_size)
    if rest or ratio & (ratio - 1) or ratio > 1 << MAX_LBPPBE:
        raise ConfigError(key, f"{value!r} must be block_size {block_size} times a power of two up to "
                               f"2^{MAX_LBPPBE} (e.g. 4KiB over 512-byte blocks)")
    return ratio.bit_length() - 1


def _lun(table: dict[str, Any], where: str) -> LunSpec:
    _only(table, {"id", "path", "size", "memory", "block_size", "physical_block_size", "serial", "read_only"},
          where)
    lun_id = _get(table, "id", where, int)
    if not 0 <= lun_id < 16384:
        raise ConfigError(f"{where}.id", f"LUN {lun_id} out of range 0..16383")
    block_size = _get(table, "block_size", where, int, 512)
    if block_size not in (512, 1024, 2048, 4096):
        raise ConfigError(f"{where}.block_size", f"{block_size} unsupported; use 512, 1024, 2048 or 4096")
    if ("path" in table) == ("memory" in table):
        raise ConfigError(where, "give exactly one of path (file or block device) or memory (a size)")
    path: str | None = None
    size: int | None
    if "memory" in table:
        size = parse_size(f"{where}.memory", table["memory"])
    else:
        path = _get(table, "path", where, str)
        size = parse_size(f"{where}.size", table["size"]) if "size" in table else None
        if size is None and not os.path.exists(path):
            raise ConfigError(f"{where}.size", f"{path} does not exist; give a size to create it")
    if size is not None and size % block_size:
        raise ConfigError(f"{where}.size", f"{size} is not a multiple of block_size {block_size}")
    lbppbe = (_lbppbe(f"{where}.physical_block_size", _get(table, "physical_block_size", where, (str, int)),
                      block_size) if "physical_block_size" in table else 0)
    return LunSpec(lun_id, path, size, block_size, str(_get(table, "serial", where, str, "")),
                   bool(_get(table, "read_only", where, bool, False)), lbppbe)


def _target(table: dict[str, Any], where: str) -> TargetSpec:
    _only(table, {"iqn", "alias", "portal_group", "lun", "initiators", "chap", "controller", *_PROFILE_KEYS},
          where)
    iqn = check_iqn(f"{where}.iqn", _get(table, "iqn", where, str))
    groups = []
    if "portal_group" not in table and "controller" not in table:
        raise ConfigError(f"{where}.portal_group", "is required (or controller tables)")
    for i, g in enumerate(_get(table, "portal_group", where, list, [])):
        gw = f"{where}.portal_group[{i}]"
        if not isinstance(g, dict):
            raise ConfigError(gw, "must be a table")
        _only(g, {"tag", "portals"}, gw)
        tag = _get(g, "tag", gw, int)
        if not 1 <= tag <= 65535:
            raise ConfigError(f"{gw}.tag", f"TPGT {tag} out of range 1..65535")
        portals = tuple(parse_portal(f"{gw}.portals[{j}]", p) for j, p in enumerate(_get(g, "portals", gw, list)))
        if not portals:
            raise ConfigError(f"{gw}.portals", "needs at least one portal")
        groups.append(PortalGroupSpec(tag, portals))
    if len({g.tag for g in groups}) != len(groups):
        raise ConfigError(f"{where}.portal_group", "portal group tags must be unique")
    luns = tuple(_lun(t, f"{where}.lun[{i}]") for i, t in enumerate(_get(table, "lun", where, list, [])))
    if len({lun.id for lun in luns}) != len(luns):
        raise ConfigError(f"{where}.lun", "LUN ids must be unique")
    initiators = tuple(check_iqn(f"{where}.initiators[{i}]", n)
                       for i, n in enumerate(_get(table, "initiators", where, list, [])))
    chap = _chap(_get(table, "chap", where, dict), f"{where}.chap") if "chap" in table else None
    controllers = []
    for i, c in enumerate(_get(table, "controller", where, list, [])):
        cw = f"{where}.controller[{i}]"
        if not isinstance(c, dict):
            raise ConfigError(cw, "must be a table")
        _only(c, {"name", "portals"}, cw)
        portals = tuple(parse_portal(f"{cw}.portals[{j}]", p) for j, p in enumerate(_get(c, "portals", cw, list)))
        if not portals:
            raise ConfigError(f"{cw}.portals", "needs at least one portal")
        controllers.append(ControllerSpec(_controller_name(f"{cw}.name", _get(c, "name", cw, str)), portals))
    base = TargetSpec(iqn, str(_get(table, "alias", where, str, "")), tuple(groups), luns, initiators, chap)
    return _profile(base, table, tuple(controllers), where)


_PROFILE_KEYS = {"profile", "owner", "non_owner_state", "explicit", "implicit_on_owner_loss",
                 "implicit_after_commands", "transition_time", "iqn_per"}


def _controller_name(key: str, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,7}", name):
        raise ConfigError(key, f"{name!r}: a controller name is a letter and up to 7 letters or digits (A, B, ...)")
    return name.upper()


def _profile(base: TargetSpec, table: dict[str, Any], controllers: tuple[ControllerSpec, ...],
             where: str) -> TargetSpec:
    """The array-family keys; checks that the controllers fit the profile."""
    profile = _get(table, "profile", where, str, "portal")
    if profile not in PROFILES:
        raise ConfigError(f"{where}.profile", f"{profile!r}: use one of {', '.join(PROFILES)}")
    names = [c.name for c in controllers]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.controller", "controller names must be unique")
    if base.portal_groups and controllers:
        raise ConfigError(f"{where}.controller", "give either portal_group or controller tables, not both")
    if profile != "portal" and not controllers:
        raise ConfigError(f"{where}.controller", f"profile {profile!r} needs controller tables (A, B, ...)")
    if profile in ("alua", "rdac") and len(controllers) < 2:
        raise ConfigError(f"{where}.controller", f"profile {profile!r} needs at least two controllers")
    if profile == "rdac" and len(controllers) != 2:
        raise ConfigError(f"{where}.controller", "profile 'rdac' is an active/passive pair: exactly two controllers")
    owner = _controller_name(f"{where}.owner", _get(table, "owner", where, str, names[0] if names else "A"))
    if controllers and owner not in names:
        raise ConfigError(f"{where}.owner", f"{owner!r} is not a controller; use one of {', '.join(names)}")
    state = _get(table, "non_owner_state", where, str, "non-optimized")
    if state not in NON_OWNER_STATES:
        raise ConfigError(f"{where}.non_owner_state", f"{state!r}: use one of {', '.join(NON_OWNER_STATES)}")
    after = _get(table, "implicit_after_commands", where, int, 0)
    if after < 0:
        raise ConfigError(f"{where}.implicit_after_commands", "must be >= 0 (0: never)")
    ttime = float(_get(table, "transition_time", where, (int, float), 0.0))
    if not 0 <= ttime <= 255:
        raise ConfigError(f"{where}.transition_time", "must be 0..255 seconds")
    iqn_per = _get(table, "iqn_per", where, str, "portal")
    if iqn_per not in ("portal", "controller"):
        raise ConfigError(f"{where}.iqn_per", f"{iqn_per!r}: use portal or controller")
    return replace(base, profile=profile, controllers=controllers, owner=owner, non_owner_state=state,
                   explicit=bool(_get(table, "explicit", where, bool, True)),
                   implicit_on_owner_loss=bool(_get(table, "implicit_on_owner_loss", where, bool, True)),
                   implicit_after_commands=after, transition_time=ttime, iqn_per=iqn_per)


def parse_config(data: dict[str, Any]) -> ServerSpec:
    _only(data, {"server", "target"}, "")
    server = _get(data, "server", "", dict, {})
    _only(server, {"cmd_window", "nop_in_interval", "discovery_chap"}, "server")
    window = _get(server, "cmd_window", "server", int, 128)
    if not 1 <= window <= 4096:
        raise ConfigError("server.cmd_window", f"{window} out of range 1..4096")
    nop = float(_get(server, "nop_in_interval", "server", (int, float), 0))
    if nop < 0:
        raise ConfigError("server.nop_in_interval", "must be >= 0 (0 disables target NOP-In pings)")
    targets = tuple(_target(t, f"target[{i}]") for i, t in enumerate(_get(data, "target", "", list)))
    if not targets:
        raise ConfigError("target", "at least one [[target]] is required")
    if len({t.iqn for t in targets}) != len(targets):
        raise ConfigError("target", "target IQNs must be unique")
    discovery_chap = (_chap(_get(server, "discovery_chap", "server", dict), "server.discovery_chap")
                      if "discovery_chap" in server else None)
    return ServerSpec(targets, window, nop, discovery_chap=discovery_chap)


def load_config(path: str) -> ServerSpec:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, f"cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, f"not valid TOML: {e}") from None
    return parse_config(data)


# --lun options: the [[target.lun]] key and how its command-line text becomes the TOML value
_LUN_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "block_size": lambda key, text: parse_size(key, text),
    "physical_block_size": lambda key, text: text,
    "serial": lambda key, text: text,
    "read_only": lambda key, text: _flag(key, text),
}


def _flag(key: str, text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise ConfigError(key, f"{text!r}: write true or false")


def _quick_lun(i: int, text: str) -> LunSpec:
    """``PATH``, ``PATH:SIZE`` or ``mem:SIZE``, then ``,KEY=VALUE`` options, parsed as a [[target.lun]]
    table. Options are taken from the end, so a path may itself contain commas."""
    key = f"--lun[{i}]"
    table: dict[str, Any] = {"id": i}
    spec, sep, last = text.rpartition(",")
    while sep and "=" in last and last.split("=", 1)[0] in _LUN_OPTIONS:
        name, value = last.split("=", 1)
        if name in table:
            raise ConfigError(f"{key}.{name}", "given twice")
        table[name] = _LUN_OPTIONS[name](f"{key}.{name}", value)
        text = spec
        spec, sep, last = text.rpartition(",")
    if text.startswith("mem:"):
        table["memory"] = text[4:]
    else:
        path, _, size_text = text.rpartition(":") if _SIZE_RE.match(text.rpartition(":")[2] or "x") else (
            text, "", "")
        if not size_text and not os.path.exists(path):
            raise ConfigError(key, f"{path} does not exist; write PATH:SIZE to create it, or mem:SIZE")
        table["path"] = path
        if size_text:
            table["size"] = size_text
    return _lun(table, key)


def quick_config(iqn: str, portals: list[str], luns: list[str], *, profile: str = "portal", owner: str = "A",
                 non_owner_state: str = "non-optimized", iqn_per: str = "portal",
                 implicit_after_commands: int = 0, transition_time: float = 0.0) -> ServerSpec:
    """The quick form: one target, LUNs numbered from 0. Each LUN is PATH, PATH:SIZE (created when
    missing) or mem:SIZE, optionally followed by ``,KEY=VALUE`` options (see the top of this module).

    With the default profile ``portal`` every portal is in one portal group (tag 1). Any other profile
    splits the portals between controllers A and B: a portal may name its controller (``B=127.0.0.2:0``);
    when none does, the first half (rounded up) goes to A and the rest to B (``--portal P1 --portal P2``:
    P1 on A, P2 on B)."""
    lun_specs = [_quick_lun(i, text) for i, text in enumerate(luns)]
    if not portals:
        raise ConfigError("--portal", "at least one portal is required")
    named: list[tuple[str | None, tuple[str, int]]] = []
    for i, text in enumerate(portals):
        ctrl, eq, rest = text.partition("=")
        if eq:
            named.append((_controller_name(f"--portal[{i}]", ctrl), parse_portal(f"--portal[{i}]", rest)))
        else:
            named.append((None, parse_portal(f"--portal[{i}]", text)))
    check_iqn("--iqn", iqn)
    table: dict[str, Any] = {"profile": profile, "owner": owner, "non_owner_state": non_owner_state,
                             "iqn_per": iqn_per, "implicit_after_commands": implicit_after_commands,
                             "transition_time": transition_time}
    if profile == "portal" and all(c is None for c, _ in named):
        base = TargetSpec(iqn, "", (PortalGroupSpec(1, tuple(p for _, p in named)),), tuple(lun_specs))
        return ServerSpec((_profile(base, table, (), "--profile"),))
    if any(c is None for c, _ in named) and any(c is not None for c, _ in named):
        raise ConfigError("--portal", "name the controller of every portal (A=ADDR:PORT) or of none")
    groups: dict[str, list[tuple[str, int]]] = {}
    if named[0][0] is None:
        half = (len(named) + 1) // 2
        for i, (_, p) in enumerate(named):
            groups.setdefault("A" if i < half or len(named) == 1 else "B", []).append(p)
    else:
        for c, p in named:
            assert c is not None
            groups.setdefault(c, []).append(p)
    controllers = tuple(ControllerSpec(name, tuple(ps)) for name, ps in sorted(groups.items()))
    base = TargetSpec(iqn, "", (), tuple(lun_specs))
    return ServerSpec((_profile(base, table, controllers, "--profile"),))
