"""The multipath keys: for each multipath.conf-style key its parser, printer, default and help (``KEYS``),
and ``Origin``/``Setting``, the record of where a resolved value came from. ``config.py`` reads files
and resolves keys for a LUN; ``policy.Policy`` takes its defaults from ``KEYS``.

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
- ``busy_silence`` 0.05 s and ``busy_nop_timeout`` 0.1 s: a connection with commands in flight that
  has gone silent is suspect at once, not after ``nop_interval``. Under load a target sends something
  every few microseconds to milliseconds; 50 ms of silence with work outstanding means the line, or the
  target, has stopped. The NOP-Out that goes out then is answered by any live target, however slow its
  disks (a NOP needs no backend), and any byte at all counts as the answer, so the 0.1 s only has to
  cover a LAN round trip and a scheduling delay. A pull on the far side of the switch is then found
  within about 0.15 s under load. Raise both for links with more latency, or for a target that can stop
  answering NOP-Outs for longer than that while it works.
- ``rr_min_io`` 1, not 1000: vendors advise switching path every I/O for iSCSI round robin.
- ``no_path_retry`` queue and ``failback`` immediate: the seed's active-active multibus with paths
  that come and go; XenServer's shipped ``failback 10`` / ``no_path_retry 10`` can be set in a file.

- ``relogin_backoff`` 0.25 s: a dead path's portal is tried four times a second for as long as it fails
  for a passing reason (no connection, target not found: an array restarting), so the path is back within
  a quarter second of its portal accepting logins. An attempt on a dead portal costs one SYN or a refused
  connection. Only a refusal that will not pass by itself backs off (``monitor`` module).

Not offered: ``dev_loss_tmo`` and ``fast_io_fail_tmo``. In Linux they govern when the SCSI layer fails
I/O on, and then deletes, a device whose transport is gone. A sanpath path is an object that stays and
logs in again (``relogin_backoff``), so nothing is ever deleted, and its I/O fails over as soon as
liveness (``nop_timeout``), the link's state or the checker declares it dead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .checkers import CHECKERS
from .handlers import HANDLERS
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

    KINDS = ("default", "config file", "built-in device section", "device section", "overrides", "command line",
             "program")

    def __str__(self) -> str:
        where = f" in {self.source}" if self.source else ""
        if self.kind in ("built-in device section", "device section"):
            return f'{self.kind} "{self.section}"{where}'
        if self.kind == "config file":
            return f"config file {self.source} [defaults]" if self.source else "config file [defaults]"
        if self.kind == "overrides":
            return f"[overrides]{where}"
        if self.kind == "program":
            return "set by the program"
        return self.kind


DEFAULT = Origin("default")
COMMAND_LINE = Origin("command line")
PROGRAM = Origin("program")  # a Policy built in code (tests, tools) with a value not resolved from config


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
    Key("handler", "dmp", choice(HANDLERS, {"mpp": "rdac", "1 rdac": "rdac", "0": "dmp", "1 alua": "dmp",
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
    Key("busy_silence", 0.05, seconds(allow_minimum=True), show_seconds,
        "with commands in flight, a NOP-Out goes out after this long without a byte from the target "
        "(0: off; see the module notes)..."),
    Key("busy_nop_timeout", 0.1, seconds(), show_seconds,
        "...and the connection is dead when nothing arrives this long after it"),
    Key("command_timeout", 30.0, seconds(), show_seconds,
        "a SCSI command is aborted and retried on another path after this long"),
    Key("marginal_failures", 3, integer(1), show_text,
        "a path failing this often within marginal_window is marginal (flapping)..."),
    Key("marginal_window", 60.0, seconds(), show_seconds, "...the window for counting failures..."),
    Key("marginal_hold", 30.0, seconds(allow_minimum=True), show_seconds,
        "...and is held out of service this long after it comes back"),
    Key("relogin_backoff", 0.25, seconds(), show_seconds,
        "wait between attempts to log a dead path in again; doubles (up to 8 s) only after the array "
        "refused the login for a reason that will not pass by itself (authentication, another LUN)"),
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
