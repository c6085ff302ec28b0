"""MULTIPATH_PERIODIC_ALERT, XenServer's path-count alert, as a structured record: raised when a PBD's
active path count first drops below its max, again every alert period while it stays below, and once
when it recovers. The record (host, PBD, SR, SCSIid, current, max, state) is the message's body; its
text is only a rendering of it, so that no client has to parse a sentence (XenCenter matches one that
names "120 seconds", and breaks when the period changes).

``PathAlerts`` decides when, from the counts alone (no I/O); the host daemon's reporter feeds it and
writes the messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAME = "MULTIPATH_PERIODIC_ALERT"
PRIORITY = 3  # XenServer's: on the pool
PERIOD = 120.0  # seconds between repeats while a count stays below its max
PERIOD_KEY = "multipath_alert_period"  # pool other-config: the period in seconds
DEGRADED, RECOVERED = "degraded", "recovered"


@dataclass
class _Below:
    raised: float  # when the last alert for it was raised
    current: int
    maximum: int


class PathAlerts:
    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        self._below: dict[str, _Below] = {}

    def counts(self, pbd: str, current: int, maximum: int, now: float) -> str | None:
        """A PBD's new counts; returns the state to raise now (DEGRADED on the first drop, RECOVERED when
        back at the max), else None."""
        below = self._below.get(pbd)
        if current < maximum:
            if below is None:
                self._below[pbd] = _Below(now, current, maximum)
                return DEGRADED
            below.current, below.maximum = current, maximum
            return None
        if below is not None:
            del self._below[pbd]
            return RECOVERED
        return None

    def due(self, now: float) -> list[tuple[str, int, int]]:
        """The PBDs still below their max whose period has passed since their last alert: (pbd, current,
        max), each marked raised now."""
        out = []
        for pbd, below in self._below.items():
            if now - below.raised >= self.period:
                below.raised = now
                out.append((pbd, below.current, below.maximum))
        return out

    def forget(self, pbd: str) -> None:
        """The PBD is unplugged: its counts are gone, and so is the alert."""
        self._below.pop(pbd, None)


def record(*, host: str, host_name: str, pbd: str, sr: str, sr_name: str, scsi_id: str, current: int,
           maximum: int, state: str, period: float) -> dict[str, Any]:
    return {"host": host, "host_name": host_name, "pbd": pbd, "sr": sr, "sr_name": sr_name, "SCSIid": scsi_id,
            "current": current, "max": maximum, "state": state, "period": period}


def render(body: dict[str, Any]) -> str:
    counts = f"{body['current']} of {body['max']} paths active"
    where = (f"host {body['host_name']}: PBD {body['pbd']} of SR {body['sr_name'] or body['sr']} "
             f"(SCSIid {body['SCSIid']})")
    if body["state"] == RECOVERED:
        return f"{where}: recovered, {counts}"
    return f"{where}: {counts}; repeated every {body['period']:g} s while a path is missing"
