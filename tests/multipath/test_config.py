"""Configuration: precedence and origins, every key's parser/printer round trip, built-in device
sections, and errors that name the key."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from sanpath.errors import ConfigError
from sanpath.multipath import config as C
from sanpath.multipath.keys import PROGRAM
from sanpath.multipath.policy import SETTINGS, Policy

FILE = """
[defaults]
no_path_retry = "fail"
rr_min_io = 2
polling_interval = "2s"

[[device]]
name = "Our DataCore"
vendor = "^DataCore"
no_path_retry = 12
rr_min_io = 5

[overrides]
nop_timeout = 2
"""


@pytest.fixture
def conf_file(tmp_path: Path) -> str:
    p = tmp_path / "multipath.toml"
    p.write_text(FILE)
    return str(p)


def test_precedence_and_origins(conf_file: str) -> None:
    cfg = C.load(conf_file)
    r = cfg.resolve("DataCore", "SANsymphony", {"rr_min_io": "7"})
    assert r["command_timeout"].origin == C.DEFAULT  # nothing set it
    assert r["polling_interval"].value == 2.0 and r["polling_interval"].origin.kind == "config file"
    assert r["failback"].value == "30" and r["failback"].origin.kind == "built-in device section"
    assert r["no_path_retry"].value == "12" and r["no_path_retry"].origin.kind == "device section"
    assert r["nop_timeout"].value == 2.0 and r["nop_timeout"].origin.kind == "overrides"
    assert r["rr_min_io"].value == 7 and r["rr_min_io"].origin == C.COMMAND_LINE
    # An unmatched LUN sees the file's [defaults] and [overrides], no device section.
    other = cfg.resolve("LIO-ORG", "disk")
    assert other.value("no_path_retry") == "fail" and other.value("rr_min_io") == 2
    assert other.value("path_selector") == "queue-length 0"  # built-in LIO-ORG section


def test_each_level_beats_the_one_below() -> None:
    levels = [
        ("default", None),
        ("config file", '[defaults]\nrr_min_io = 2\n'),
        ("built-in device section", None),  # EqualLogic sets rr_min_io 3
        ("device section", '[[device]]\nvendor = "EQLOGIC"\nrr_min_io = 4\n'),
        ("overrides", '[overrides]\nrr_min_io = 5\n'),
    ]
    text = "".join(t for _, t in levels if t)
    r = C.loads(text).resolve("EQLOGIC", "100E-00", {"rr_min_io": 6})
    assert (r.value("rr_min_io"), r["rr_min_io"].origin.kind) == (6, "command line")
    r = C.loads(text).resolve("EQLOGIC", "100E-00")
    assert (r.value("rr_min_io"), r["rr_min_io"].origin.kind) == (5, "overrides")
    no_overrides = text.replace("[overrides]\nrr_min_io = 5\n", "")
    r = C.loads(no_overrides).resolve("EQLOGIC", "100E-00")
    assert (r.value("rr_min_io"), r["rr_min_io"].origin.kind) == (4, "device section")
    r = C.loads('[defaults]\nrr_min_io = 2\n').resolve("EQLOGIC", "100E-00")
    assert (r.value("rr_min_io"), r["rr_min_io"].origin.kind) == (3, "built-in device section")
    r = C.loads('[defaults]\nrr_min_io = 2\n').resolve("SANPATH", "VIRTUAL-DISK")
    assert (r.value("rr_min_io"), r["rr_min_io"].origin.kind) == (2, "config file")
    assert C.MultipathConfig().resolve().value("rr_min_io") == 1


def test_later_device_sections_win() -> None:
    text = ('[[device]]\nname = "first"\nvendor = "ACME"\nrr_min_io = 2\nfailback = "manual"\n'
            '[[device]]\nname = "second"\nvendor = "AC"\nproduct = "^BOX"\nrr_min_io = 3\n')
    r = C.loads(text).resolve("ACME", "BOX 9")
    assert str(r["rr_min_io"].origin) == 'device section "second"'
    assert str(r["failback"].origin) == 'device section "first"'
    assert C.loads(text).resolve("ACME", "TUB").value("rr_min_io") == 2  # product does not match "second"


def test_describe_lines(conf_file: str) -> None:
    lines = C.load(conf_file).resolve("DataCore", "SANsymphony").describe()
    assert len(lines) == len(C.KEYS)
    by_key = {line.split(" = ")[0]: line for line in lines}
    assert by_key["no_path_retry"].split() == ["no_path_retry", "=", "12", "(device", "section", '"Our',
                                               'DataCore"', "in", f"{conf_file})"]
    assert by_key["path_grouping_policy"].endswith('(built-in device section "DataCore")')
    assert by_key["polling_interval"].endswith(f"(config file {conf_file} [defaults])")
    assert by_key["nop_interval"].split() == ["nop_interval", "=", "0.25s", "(default)"]
    assert str(C.Setting("no_path_retry", "queue", C.Origin("device section", "DataCore"))) == \
        'no_path_retry = queue  (device section "DataCore")'


def test_defaults_are_the_policy_defaults() -> None:
    r = C.MultipathConfig().resolve("NOBODY", "NOTHING")
    assert r.policy() == Policy()
    assert list(SETTINGS) == [f.name for f in fields(Policy)][:-1] and set(SETTINGS) == set(C.KEYS)
    assert {k: getattr(Policy(), k) for k in SETTINGS} == {k: key.default for k, key in C.KEYS.items()}
    assert all(s.origin == C.DEFAULT for s in r.settings.values())


def test_a_resolved_policy_records_where_each_value_came_from() -> None:
    conf = C.loads('[defaults]\npolling_interval = "2s"\n', "mp.toml")
    p = conf.resolve("DataCore", "x", {"rr_min_io": "4"}).policy()
    assert (p.polling_interval, str(p.origin("polling_interval"))) == (2.0, "config file mp.toml [defaults]")
    assert (p.failback, str(p.origin("failback"))) == ("30", 'built-in device section "DataCore"')
    assert (p.rr_min_io, p.origin("rr_min_io")) == (4, C.COMMAND_LINE)
    assert p.origin("nop_timeout") == C.DEFAULT
    assert p == replace(Policy(), polling_interval=2.0, failback="30", rr_min_io=4,
                        path_grouping_policy="failover")  # origins are not part of the value


def test_a_policy_built_in_code_says_so() -> None:
    p = Policy(rr_min_io=3)
    assert (p.origin("rr_min_io"), p.origin("prio")) == (PROGRAM, C.DEFAULT)
    assert str(p.origin("rr_min_io")) == "set by the program"


def test_rdac_arrays_get_rdac_settings() -> None:
    for vendor, product in (("DELL", "MD3200i"), ("LSI", "INF-01-00")):
        p = C.MultipathConfig().resolve(vendor, product).policy()
        assert (p.handler, p.prio, p.path_checker, p.path_grouping_policy) == ("rdac", "rdac", "rdac",
                                                                               "group_by_prio")
        assert (p.failback, p.no_path_retry) == ("immediate", "30")
    assert C.MultipathConfig().resolve("DELL", "PERC H730").value("handler") == "dmp"
    assert C.MultipathConfig().resolve("NETAPP  ", "LUN C-Mode        ").value("no_path_retry") == "queue"


# --- parsers and printers ---------------------------------------------------------------------------

SAMPLES: dict[str, list[Any]] = {
    "polling_interval": [1, 0.25, "500ms", "2s", "1m", " 3 "],
    "path_grouping_policy": ["multibus", "failover", "group_by_prio", "MULTIBUS"],
    "path_selector": ["round-robin 0", "queue-length 0", "service-time 0", "round-robin", "service-time  0"],
    "rr_min_io": [1, 1000, "3"],
    "path_checker": ["tur", "readsector0", "nop", "rdac", "directio"],
    "prio": ["const", "alua", "rdac"],
    "handler": ["dmp", "rdac", "mpp", "1 rdac", "1 alua", "0", 0],
    "failback": ["immediate", "manual", "followover", 10, "0", "15s"],
    "no_path_retry": ["fail", "queue", 10, "5", 0],
    "nop_interval": [0.5, "100ms"],
    "nop_timeout": [1, "1.5s"],
    "busy_silence": [0, 0.05, "50ms"],
    "busy_nop_timeout": [0.1, "250ms"],
    "command_timeout": [30, "45s"],
    "marginal_failures": [3, "1"],
    "marginal_window": [60, "2m"],
    "marginal_hold": [0, 30, "0s"],
    "relogin_backoff": [0.5, ".25"],
}


def test_every_key_has_samples() -> None:
    assert set(SAMPLES) == set(C.KEYS)


@pytest.mark.parametrize("name", sorted(C.KEYS))
def test_round_trip(name: str) -> None:
    key = C.KEYS[name]
    assert key.parse(name, key.show(key.default)) == key.default
    for raw in SAMPLES[name]:
        value = key.parse(name, raw)
        assert key.parse(name, key.show(value)) == value, (raw, value, key.show(value))


def test_normalised_values() -> None:
    assert C.KEYS["polling_interval"].parse("k", "500ms") == 0.5
    assert C.KEYS["path_selector"].parse("k", "round-robin") == "round-robin 0"
    assert C.KEYS["handler"].parse("k", "mpp") == "rdac"
    assert C.KEYS["path_checker"].parse("k", "directio") == "readsector0"
    assert C.KEYS["no_path_retry"].parse("k", 0) == "fail"
    assert C.KEYS["failback"].parse("k", "15s") == "15"


BAD: list[tuple[str, Any, str]] = [
    ("polling_interval", 0, "more than 0"),
    ("polling_interval", "fast", "not a duration"),
    ("polling_interval", True, "not a duration"),
    ("marginal_hold", -1, "at least 0"),
    ("rr_min_io", 0, "too small"),
    ("rr_min_io", 1.5, "not a whole number"),
    ("rr_min_io", "many", "not a whole number"),
    ("path_grouping_policy", "group_by_serial", "use one of multibus, failover, group_by_prio"),
    ("path_selector", "least-pending 0", "use one of round-robin 0"),
    ("path_checker", "emc_clariion", "use one of tur, readsector0, nop, rdac"),
    ("prio", "emc", "use one of const, alua, rdac"),
    ("handler", "1 emc", "use one of dmp, rdac"),
    ("failback", "later", "immediate, manual, followover or a number of seconds"),
    ("failback", -5, "a number of seconds"),
    ("no_path_retry", "forever", "use fail, queue or a number of polling intervals"),
    ("nop_timeout", "-1s", "not a duration"),
]


@pytest.mark.parametrize(("name", "raw", "words"), BAD)
def test_bad_values_name_the_key(name: str, raw: Any, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        C.MultipathConfig().resolve("X", "Y", {name: raw})
    assert info.value.key == f"command line {name}"


def test_file_errors_name_file_section_and_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[[device]]\nname = "box"\nvendor = "ACME"\nrr_min_io = 0\n')
    with pytest.raises(ConfigError) as info:
        C.load(str(p))
    assert info.value.key == f'{p}: device[0] "box".rr_min_io'
    with pytest.raises(ConfigError, match=r"defaults\.polling_interval: 'soon' is not a duration"):
        C.loads('[defaults]\npolling_interval = "soon"\n')


@pytest.mark.parametrize(("text", "key", "words"), [
    ('[defaults]\npoling_interval = 1\n', "defaults.poling_interval", "did you mean polling_interval"),
    ('[defaults]\nwibble = 1\n', "defaults.wibble", "known keys: polling_interval"),
    ('[default]\nrr_min_io = 1\n', "default", "unknown section"),
    ('defaults = 3\n', "defaults", "as a table"),
    ('[device]\nvendor = "x"\n', "device", r"\[\[device\]\]"),
    ('[[device]]\nproduct = "x"\n', "device[0] vendor", "needs a vendor"),
    ('[[device]]\nvendor = "(unclosed"\n', 'device[0] "(unclosed".vendor', "not a valid regular expression"),
    ('[[device]]\nvendor = 3\n', "device[0] name", "need a string"),
    ('[defaults]\nhandler = "dmp"\nhardware_handler = "rdac"\n', "defaults.hardware_handler", "given twice"),
    ('[defaults\n', "config", "not valid TOML"),
])
def test_structure_errors(text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        C.loads(text)
    assert info.value.key == key


def test_alias_hardware_handler() -> None:
    r = C.loads('[defaults]\nhardware_handler = "1 rdac"\n').resolve()
    assert r["handler"].value == "rdac" and r["hardware_handler"].value == "rdac"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as info:
        C.load(str(tmp_path / "missing.toml"))
    assert info.value.key == str(tmp_path / "missing.toml")


def test_command_line_assignments() -> None:
    assert C.parse_assignments(["no_path_retry=fail", " hardware_handler = rdac "]) == {
        "no_path_retry": "fail", "handler": "rdac"}
    r = C.MultipathConfig().resolve("X", "Y", C.parse_assignments(["polling_interval=250ms"]))
    assert r["polling_interval"].value == 0.25 and str(r["polling_interval"].origin) == "command line"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        C.parse_assignments(["no_path_retry"])
    with pytest.raises(ConfigError, match="did you mean no_path_retry"):
        C.parse_assignments(["no_path_rety=1"])
