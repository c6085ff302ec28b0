"""Multipath configuration that explains itself: a multipath.conf-like TOML file, built-in device
sections for the arrays XenServer ships settings for, and resolution of every key for one LUN into a
``Setting`` that says where its value came from (DESIGN.md rule 7).

File format::

    [defaults]                      # sanpath's built-in defaults replaced for every device
    polling_interval = 1            # seconds; also "500ms", "2s"
    path_selector = "round-robin 0"

    [[device]]                      # like multipath.conf's devices section
    name = "DataCore"               # optional label shown in describe(); the vendor text by default
    vendor = "DataCore"             # regular expressions searched in the INQUIRY vendor / product
    product = ".*"                  # (trailing blanks removed); product defaults to any
    path_grouping_policy = "failover"

    [overrides]                     # beats every device section (multipath-tools' overrides)
    no_path_retry = "fail"

Precedence, lowest first: built-in default < file ``[defaults]`` < built-in device section < file
``[[device]]`` section < ``[overrides]`` < command line. Device sections beat ``[defaults]`` as in
multipath-tools, because they carry what an array needs (an RDAC array needs the rdac checker whatever
the general default); ``[overrides]`` is the way to force a value on every array, and ``describe()``
shows which rule won. When several device sections match, later ones win key by key.

Why some defaults differ from multipath-tools and open-iscsi:

- ``polling_interval`` 1 s, not 5 s: the checker interval bounds how soon a repaired path rejoins, how
  soon an ALUA state change or ownership move is followed, and how soon a path that carries no I/O is
  found dead. multipath-tools' 5 s suits a kernel that fails paths on I/O errors by itself and may watch
  thousands of paths; sanpath watches a few paths per LUN, and a check is one small command on an open
  session (microseconds of CPU), so 1 s buys a much shorter recovery at no real cost.
- ``nop_interval`` 0.25 s and ``nop_timeout`` 0.5 s, not open-iscsi's 5 s / 5 s: a black-holed portal
  is then noticed within about 0.75 s instead of 5 to 10 s, the largest part of the 10 to 15 s I/O stall
  users see on a cable pull (PEERS.md); measured in the lab, the longest stall over 20 pulls stays under
  1 s with these values and reaches 1.7 s with 0.5 s / 1 s (BENCHMARKS.md, Multipath). It is safe because
  any PDU received counts as proof of life (a busy connection is never declared dead), a NOP-Out goes
  out only on a quiet connection, a LAN round trip is well under a millisecond, and a path wrongly
  failed costs a fence and a re-login, never data. Raise both for high-latency links.
- ``rr_min_io`` 1, not 1000: vendors advise switching path every I/O for iSCSI round robin.
- ``no_path_retry`` queue and ``failback`` immediate: the seed's active-active multibus with paths
  that come and go; XenServer's shipped ``failback 10`` / ``no_path_retry 10`` can be set in a file.

Not offered: ``dev_loss_tmo`` and ``fast_io_fail_tmo``. In Linux they govern when the SCSI layer fails
I/O on, and then deletes, a device whose transport is gone. A sanpath path is an object that stays and
logs in again with backoff (``relogin_backoff``), so nothing is ever deleted, and its I/O fails over as
soon as liveness (``nop_timeout``) or the checker declares it dead.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError
from .checkers import CHECKERS
from .policy import Policy
from .prioritizers import PRIORITIZERS
from .selectors import SELECTORS

# --- origins and settings ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value came from: ``kind`` is one of KINDS; ``section`` names the device section and
    ``source`` the file."""

    kind: str
    section: str = ""
    source: str = ""

    KINDS = ("default", "config file", "built-in device section", "device section", "overrides", "command line")

    def __str__(self) -> str:
        where = f" in {self.source}" if self.source else ""
        if self.kind in ("built-in device section", "device section"):
            return f'{self.kind} "{self.section}"{where}'
        if self.kind == "config file":
            return f"config file {self.source} [defaults]" if self.source else "config file [defaults]"
        if self.kind == "overrides":
            return f"[overrides]{where}"
        return self.kind


DEFAULT = Origin("default")
COMMAND_LINE = Origin("command line")


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    value: Any
    origin: Origin

    def __str__(self) -> str:
        return f"{self.key} = {KEYS[self.key].show(self.value)}  ({self.origin})"


# --- value parsers and printers -------------------------------------------------------------------

Parser = Callable[[str, object], Any]  # (where, raw value from TOML or the command line) -> value

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def seconds(minimum: float = 0.0, *, allow_minimum: bool = False) -> Parser:
    """A duration in seconds: a number, or text such as "0.5", "500ms", "2s", "1m"."""
    def parse(where: str, raw: object) -> float:
        if isinstance(raw, bool):
            raise ConfigError(where, f"{raw!r} is not a duration; write e.g. 1, 0.5, 500ms, 2s")
        if isinstance(raw, int | float):
            value = float(raw)
        else:
            m = _DURATION.match(str(raw))
            if not m:
                raise ConfigError(where, f"{raw!r} is not a duration; write e.g. 1, 0.5, 500ms, 2s")
            value = float(m.group(1)) * _UNIT[m.group(2)]
        if value < minimum or (value == minimum and not allow_minimum):
            relation = "at least" if allow_minimum else "more than"
            raise ConfigError(where, f"{raw!r}: must be {relation} {minimum:g} s")
        return value
    return parse


def show_seconds(value: Any) -> str:
    return f"{value:g}s"


def integer(minimum: int) -> Parser:
    def parse(where: str, raw: object) -> int:
        text = str(raw).strip()
        if isinstance(raw, bool) or not (isinstance(raw, int) or text.isdigit()):
            raise ConfigError(where, f"{raw!r} is not a whole number (at least {minimum})")
        value = int(text)
        if value < minimum:
            raise ConfigError(where, f"{value} is too small: at least {minimum}")
        return value
    return parse


def choice(values: Iterable[str], aliases: Mapping[str, str] | None = None) -> Parser:
    allowed = tuple(values)
    table = {v.lower(): v for v in allowed} | {k.lower(): v for k, v in (aliases or {}).items()}

    def parse(where: str, raw: object) -> str:
        text = " ".join(str(raw).split()).lower() if not isinstance(raw, bool) else None
        if text is None or text not in table:
            raise ConfigError(where, f"{raw!r}: use one of {', '.join(allowed)}")
        return table[text]
    return parse


def _keyword_or_count(keywords: tuple[str, ...], minimum: int, unit: str,
                      zero: str | None = None) -> Parser:
    """failback / no_path_retry: a keyword, or a number kept as its digits (as ``Policy`` holds it)."""
    def parse(where: str, raw: object) -> str:
        text = str(raw).strip().lower() if not isinstance(raw, bool) else ""
        if text in keywords:
            return text
        if text.endswith("s") and unit == "seconds" and text[:-1].strip().isdigit():
            text = text[:-1].strip()
        if text.isdigit():
            n = int(text)
            if n == 0 and zero is not None:
                return zero
            if n >= minimum:
                return str(n)
        raise ConfigError(where, f"{raw!r}: use {', '.join(keywords)} or a number of {unit} "
                                 f"(at least {minimum})")
    return parse


def show_text(value: Any) -> str:
    return str(value)


# --- the keys --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    default: Any
    parse: Parser
    show: Callable[[Any], str]
    help: str


_SELECTOR_NAMES = tuple(f"{n} 0" for n in SELECTORS)
_HANDLERS = ("dmp", "rdac")

KEYS: dict[str, Key] = {k.name: k for k in (
    Key("polling_interval", 1.0, seconds(), show_seconds,
        "seconds between path checks (multipath-tools: 5; see the module notes for why 1)"),
    Key("path_grouping_policy", "multibus", choice(("multibus", "failover", "group_by_prio")), show_text,
        "multibus: one group, I/O over every path (the seed); failover: one path at a time; "
        "group_by_prio: paths of equal priority together, best group carries I/O"),
    Key("path_selector", "round-robin 0",
        choice(_SELECTOR_NAMES, {n: f"{n} 0" for n in SELECTORS}), show_text,
        "which path of the active group takes the next I/O"),
    Key("rr_min_io", 1, integer(1), show_text, "round-robin: I/Os sent down a path before moving on"),
    Key("path_checker", "tur", choice(CHECKERS, {"directio": "readsector0"}), show_text,
        "how a path is checked: tur, readsector0 (a read: catches a dead backstore), nop (iSCSI "
        "ping only), rdac (VPD C9h ownership)"),
    Key("prio", "const", choice(PRIORITIZERS), show_text,
        "path priority for group_by_prio: const, alua (target port group state), rdac (ownership)"),
    Key("handler", "dmp", choice(_HANDLERS, {"mpp": "rdac", "1 rdac": "rdac", "0": "dmp", "1 alua": "dmp",
                                             "alua": "dmp"}), show_text,
        "XenServer's multipathhandle: dmp (generic; ALUA followed through prio/checker) or rdac "
        "(moves LUN ownership between RDAC controllers); 'mpp' is read as rdac"),
    Key("failback", "immediate", _keyword_or_count(("immediate", "manual", "followover"), 0, "seconds"),
        show_text, "return to a better group: immediate, manual, followover, or after N seconds"),
    Key("no_path_retry", "queue", _keyword_or_count(("fail", "queue"), 1, "polling intervals", zero="fail"),
        show_text, "with no usable path: fail I/O at once, queue it, or queue for N polling intervals"),
    Key("nop_interval", 0.25, seconds(), show_seconds,
        "iSCSI NOP-Out after this long without traffic on a path's connection"),
    Key("nop_timeout", 0.5, seconds(), show_seconds,
        "a path's connection is dead when nothing arrives this long after a NOP-Out"),
    Key("command_timeout", 30.0, seconds(), show_seconds,
        "a SCSI command is aborted and retried on another path after this long"),
    Key("marginal_failures", 3, integer(1), show_text,
        "a path failing this often within marginal_window is marginal (flapping)..."),
    Key("marginal_window", 60.0, seconds(), show_seconds, "...the window for counting failures..."),
    Key("marginal_hold", 30.0, seconds(allow_minimum=True), show_seconds,
        "...and is held out of service this long after it comes back"),
    Key("relogin_backoff", 0.5, seconds(), show_seconds,
        "first wait before logging a failed path in again; doubles up to 8 s"),
)}

ALIASES = {"hardware_handler": "handler"}
"""Other names accepted in files and on the command line (multipath.conf's spelling)."""


def canonical_key(where: str, name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in KEYS:
        close = difflib.get_close_matches(name, [*KEYS, *ALIASES], n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(KEYS)}"
        raise ConfigError(f"{where}{name}", f"unknown key{hint}")
    return name


def parse_values(where: str, table: Mapping[str, object], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Parse every key of ``table`` (but ``skip``); ``where`` prefixes error keys, e.g. "defaults."."""
    out: dict[str, Any] = {}
    ignored = set(skip)
    for raw_name, raw in table.items():
        if raw_name in ignored:
            continue
        name = canonical_key(where, raw_name)
        if name in out:
            raise ConfigError(f"{where}{raw_name}", f"{name} is given twice (once as {raw_name})")
        out[name] = KEYS[name].parse(f"{where}{raw_name}", raw)
    return out


# --- device sections ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceSection:
    name: str
    vendor: re.Pattern[str]
    product: re.Pattern[str]
    values: dict[str, Any]
    origin: Origin

    def matches(self, vendor: str, product: str) -> bool:
        return bool(self.vendor.search(vendor.rstrip()) and self.product.search(product.rstrip()))


def _regex(where: str, text: object) -> re.Pattern[str]:
    if not isinstance(text, str):
        raise ConfigError(where, f"{text!r}: need a regular expression as a string")
    try:
        return re.compile(text)
    except re.error as e:
        raise ConfigError(where, f"{text!r} is not a valid regular expression: {e}") from None


def device_section(where: str, table: Mapping[str, object], origin_kind: str, source: str = "") -> DeviceSection:
    if "vendor" not in table:
        raise ConfigError(f"{where}vendor", "every [[device]] needs a vendor regular expression")
    name = table.get("name", table["vendor"])
    if not isinstance(name, str):
        raise ConfigError(f"{where}name", f"{name!r}: need a string")
    label = f'{where}"{name}".' if where else ""
    return DeviceSection(name, _regex(f"{label}vendor", table["vendor"]),
                         _regex(f"{label}product", table.get("product", "")),
                         parse_values(label, table, skip=("name", "vendor", "product")),
                         Origin(origin_kind, name, source))


_RDAC = {"handler": "rdac", "prio": "rdac", "path_checker": "rdac", "path_grouping_policy": "group_by_prio",
         "failback": "immediate", "no_path_retry": 30}

BUILTIN_DEVICES: tuple[DeviceSection, ...] = tuple(
    device_section("", {"name": name, "vendor": vendor, "product": product, **values}, "built-in device section")
    for name, vendor, product, values in (
        # XenServer's shipped vendor sections (XENSERVER.md), in sanpath's key names.
        ("DataCore", "^DataCore", "", {"path_checker": "tur", "path_grouping_policy": "failover", "failback": 30}),
        ("Dell MD3xxx", "^DELL$", "^MD3", _RDAC),
        ("LSI/Engenio RDAC", "^(LSI|ENGENIO)$", "^INF-01-00", _RDAC),
        ("LIO-ORG", "^LIO-ORG$", "", {"prio": "alua", "path_grouping_policy": "multibus",
                                      "path_selector": "queue-length 0", "path_checker": "tur"}),
        ("EqualLogic", "^EQLOGIC$", "", {"path_grouping_policy": "multibus", "rr_min_io": 3}),
        ("NetApp", "^NETAPP$", "^LUN", {"path_checker": "tur", "no_path_retry": "queue"}),
        # sanpath's own target: every profile answers REPORT TARGET PORT GROUPS (the portal profile with
        # every port active/optimized, which makes one group), so alua + group_by_prio fits them all. (The
        # rdac profile answers INQUIRY as an LSI array, so the LSI/Engenio section above applies to it.)
        ("SANPATH", "^SANPATH$", "", {"prio": "alua", "path_grouping_policy": "group_by_prio",
                                      "path_checker": "tur"}),
    )
)


# --- resolution -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    """Every key's value for one LUN (by INQUIRY vendor and product), with its origin."""

    vendor: str
    product: str
    settings: dict[str, Setting]

    def __getitem__(self, key: str) -> Setting:
        return self.settings[ALIASES.get(key, key)]

    def value(self, key: str) -> Any:
        return self[key].value

    def describe(self) -> list[str]:
        """One line per key: ``no_path_retry = queue  (device section "DataCore")``."""
        shown = [(s.key, KEYS[s.key].show(s.value), s.origin) for s in self.settings.values()]
        width = max(len(k) + len(v) for k, v, _ in shown) + 3
        return [f"{f'{k} = {v}':<{width}}  ({o})" for k, v, o in shown]

    def policy(self) -> Policy:
        """The plain values a multipath device runs with."""
        return Policy(**{f.name: self.value(f.name) for f in fields(Policy)})


@dataclass(frozen=True, slots=True)
class MultipathConfig:
    defaults: dict[str, Any] = field(default_factory=dict)
    devices: tuple[DeviceSection, ...] = BUILTIN_DEVICES
    overrides: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def resolve(self, vendor: str = "", product: str = "", overrides: Mapping[str, object] | None = None
                ) -> ResolvedConfig:
        """The settings for a LUN whose INQUIRY says ``vendor``/``product``; ``overrides`` are the
        command line's (raw text or values; parsed and checked here)."""
        settings = {name: Setting(name, key.default, DEFAULT) for name, key in KEYS.items()}

        def apply(values: Mapping[str, Any], origin: Origin) -> None:
            for name, value in values.items():
                settings[name] = Setting(name, value, origin)

        apply(self.defaults, Origin("config file", source=self.source))
        for section in self.devices:
            if section.matches(vendor, product):
                apply(section.values, section.origin)
        apply(self.overrides, Origin("overrides", source=self.source))
        apply(parse_values("command line ", overrides or {}), COMMAND_LINE)
        return ResolvedConfig(vendor, product, settings)


def parse(data: Mapping[str, Any], source: str = "") -> MultipathConfig:
    """A configuration from parsed TOML; ``source`` (the file name) goes into origins and errors."""
    prefix = f"{source}: " if source else ""
    unknown = set(data) - {"defaults", "device", "overrides"}
    if unknown:
        raise ConfigError(f"{prefix}{sorted(unknown)[0]}", "unknown section; use [defaults], [[device]], [overrides]")
    tables: dict[str, Mapping[str, Any]] = {}
    for name in ("defaults", "overrides"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{prefix}{name}", f"write it as a table: [{name}]")
        tables[name] = table
    devices = data.get("device", [])
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise ConfigError(f"{prefix}device", "write device sections as [[device]] tables")
    return MultipathConfig(
        defaults=parse_values(f"{prefix}defaults.", tables["defaults"]),
        devices=BUILTIN_DEVICES + tuple(device_section(f"{prefix}device[{i}] ", d, "device section", source)
                                        for i, d in enumerate(devices)),
        overrides=parse_values(f"{prefix}overrides.", tables["overrides"]),
        source=source,
    )


def loads(text: str, source: str = "") -> MultipathConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source or "config", f"not valid TOML: {e}") from None
    return parse(data, source)


def load(path: str) -> MultipathConfig:
    """Read a configuration file (TOML, format in the module docstring)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, f"cannot read: {e.strerror}") from None
    return loads(text, path)


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Command-line ``KEY=VALUE`` items (e.g. ``--set no_path_retry=fail``) -> overrides for ``resolve``."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ConfigError(item, "write KEY=VALUE, e.g. no_path_retry=fail")
        out[canonical_key("command line ", name.strip())] = value.strip()
    return out


def policy_source(config_path: str | None, assignments: list[str]) -> Callable[[str, str], Policy]:
    """(vendor, product) -> Policy, from the built-in sections, the file and the command line."""
    conf = load(config_path) if config_path else parse({})
    overrides = parse_assignments(assignments)

    def policy_for(vendor: str, product: str) -> Policy:
        return conf.resolve(vendor, product, overrides).policy()

    policy_for("", "")  # bad keys or values fail here, before any login
    return policy_for
