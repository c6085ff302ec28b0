"""The resolved settings one multipath device runs with (plain values; ``config.py`` explains where each
came from and produces this)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    path_grouping_policy: str = "multibus"  # multibus | failover | group_by_prio (the seed: multibus)
    path_selector: str = "round-robin 0"
    rr_min_io: int = 1
    path_checker: str = "tur"
    prio: str = "const"
    handler: str = "dmp"  # dmp | rdac (XenServer's multipathhandle)
    failback: str = "immediate"  # immediate | manual | followover | seconds as digits
    no_path_retry: str = "queue"  # fail | queue | N polling intervals
    polling_interval: float = 1.0
    nop_interval: float = 0.25  # path liveness: see config.py for why these are tighter than open-iscsi's
    nop_timeout: float = 0.5
    command_timeout: float = 30.0
    marginal_failures: int = 3  # a path that fails this often within marginal_window...
    marginal_window: float = 60.0
    marginal_hold: float = 30.0  # ...is held out (marginal) this long after it comes back
    relogin_backoff: float = 0.5  # first wait before logging a faulty path in again; doubles to 8 s

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
