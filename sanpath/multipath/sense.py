"""Sense data that says "this path works, but cannot carry I/O as things stand" (a ghost path), shared
by the checkers, path discovery and the I/O path, so that all three read the array alike."""

from __future__ import annotations

from ..scsi.constants import SenseKey
from ..scsi.sense import parse_sense

TRANSITIONING = (SenseKey.NOT_READY, 0x04, 0x0A)  # ALUA transitioning (SPC-4 5.15.2.6): wait, retry

GHOST_SENSE: dict[tuple[int, int, int], str] = {
    TRANSITIONING: "ALUA transitioning",
    (SenseKey.NOT_READY, 0x04, 0x0B): "ALUA standby",
    (SenseKey.NOT_READY, 0x04, 0x0C): "ALUA unavailable",
    (SenseKey.ILLEGAL_REQUEST, 0x94, 0x01): "LUN not owned by this controller (RDAC passive path)",
}


def sense_triple(sense: bytes | memoryview) -> tuple[int, int, int] | None:
    """(sense key, ASC, ASCQ) of fixed or descriptor sense data, or None if unreadable."""
    try:
        s = parse_sense(sense)
    except Exception:
        return None
    return s.key, s.asc, s.ascq


def ghost_reason(sense: bytes | memoryview) -> str | None:
    triple = sense_triple(sense)
    return GHOST_SENSE.get(triple) if triple is not None else None
