"""The resolved settings one multipath device runs with: one field per key of ``keys.KEYS``, with that
key's default (written there only), and where each value came from (``config.py`` resolves them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .keys import DEFAULT, KEYS, PROGRAM, Origin


def _default(key: str) -> Any:
    """The field for ``key``: its default from ``KEYS`` (the field must be named ``key``: checked below)."""
    return field(default=KEYS[key].default, metadata={"key": key})


@dataclass(frozen=True, slots=True)
class Policy:
    """Plain values (see ``KEYS[name].help`` for each); ``origins`` is where each value came from, when
    it was resolved from configuration. Two policies are equal when their values are."""

    path_grouping_policy: str = _default("path_grouping_policy")  # multibus | failover | group_by_prio
    path_selector: str = _default("path_selector")
    rr_min_io: int = _default("rr_min_io")
    path_checker: str = _default("path_checker")
    prio: str = _default("prio")
    handler: str = _default("handler")  # dmp | rdac (XenServer's multipathhandle)
    failback: str = _default("failback")  # immediate | manual | followover | seconds as digits
    no_path_retry: str = _default("no_path_retry")  # fail | queue | N polling intervals
    polling_interval: float = _default("polling_interval")
    nop_interval: float = _default("nop_interval")
    nop_timeout: float = _default("nop_timeout")
    busy_silence: float = _default("busy_silence")
    busy_nop_timeout: float = _default("busy_nop_timeout")
    command_timeout: float = _default("command_timeout")
    marginal_failures: int = _default("marginal_failures")
    marginal_window: float = _default("marginal_window")
    marginal_hold: float = _default("marginal_hold")
    relogin_backoff: float = _default("relogin_backoff")
    origins: Mapping[str, Origin] = field(default_factory=dict, compare=False)

    def origin(self, key: str) -> Origin:
        """Where ``key``'s value came from: as resolved; else the default when it is the default, else
        the program that built this policy."""
        recorded = self.origins.get(key)
        if recorded is not None:
            return recorded
        return DEFAULT if getattr(self, key) == KEYS[key].default else PROGRAM

    def values(self) -> dict[str, Any]:
        """Every setting's value by key (what ``Registry.make`` picks a plugin's options from)."""
        return {key: getattr(self, key) for key in SETTINGS}

    @property
    def failback_delay(self) -> float | None:
        """Seconds to wait before failing back, or None for manual/followover."""
        if self.failback == "immediate":
            return 0.0
        if self.failback.isdigit():
            return float(self.failback)
        return None

    @property
    def queue_intervals(self) -> int | None:
        """no_path_retry as a number of polling intervals; None = queue forever; 0 = fail at once."""
        if self.no_path_retry == "queue":
            return None
        if self.no_path_retry == "fail":
            return 0
        return int(self.no_path_retry)


SETTINGS = tuple(f.name for f in fields(Policy) if f.name != "origins")
"""The keys a Policy holds: every key of ``KEYS``, in the order of the fields."""

assert set(SETTINGS) == set(KEYS), "Policy needs one field per key of KEYS"
assert all(f.metadata.get("key") == f.name for f in fields(Policy) if f.name != "origins"), "field named as its key"
