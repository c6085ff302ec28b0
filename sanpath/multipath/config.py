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

The keys themselves (parser, printer, default and help of each, and why some defaults differ from
multipath-tools and open-iscsi) are in ``keys.py``; ``policy.Policy`` takes its defaults from them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .keys import ALIASES, COMMAND_LINE, DEFAULT, KEYS, Key, Origin, Setting, canonical_key, parse_values
from .policy import SETTINGS, Policy

__all__ = ["ALIASES", "BUILTIN_DEVICES", "COMMAND_LINE", "DEFAULT", "KEYS", "DeviceSection", "Key",
           "MultipathConfig", "Origin", "ResolvedConfig", "Setting", "canonical_key", "load", "loads", "parse",
           "parse_assignments", "parse_values", "policy_source"]


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
        """The values a multipath device runs with, each with its origin."""
        return Policy(**{key: self.value(key) for key in SETTINGS},
                      origins={key: self[key].origin for key in SETTINGS})


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
