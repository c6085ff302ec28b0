"""The command window of a session (RFC 7143 §4.2.2.1), for both roles: CmdSN, ExpCmdSN, MaxCmdSN and
StatSN. Sans-IO; the sessions own one each.

- ``IssueWindow`` is the initiator's: which CmdSN the next command takes, whether the window has room,
  and what the target's ExpCmdSN / MaxCmdSN / StatSN say.
- ``OrderWindow`` is the target's: commands are delivered in CmdSN order whatever order they arrive
  in; ones ahead of a gap wait, ones outside the window are refused. MaxCmdSN opens as tasks complete,
  which is what bounds a session's memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from .serial import sn_le, sn_lt

_MASK = 0xFFFFFFFF
C = TypeVar("C")


class IssueWindow:
    """The initiator's view: CmdSN to use next, the target's ExpCmdSN and MaxCmdSN, and ExpStatSN."""

    __slots__ = ("cmdsn", "expcmdsn", "expstatsn", "maxcmdsn")

    def __init__(self) -> None:
        self.cmdsn = 0
        self.expcmdsn = 0
        self.maxcmdsn = 0
        self.expstatsn = 0

    def logged_in(self, *, expcmdsn: int, maxcmdsn: int, expstatsn: int) -> None:
        """The final Login Response's numbers (§11.13): commands start at its ExpCmdSN."""
        self.cmdsn = self.expcmdsn = expcmdsn
        self.maxcmdsn = maxcmdsn
        self.expstatsn = expstatsn

    @property
    def open(self) -> bool:
        """Whether a non-immediate command may be sent now (CmdSN <= MaxCmdSN)."""
        return not sn_lt(self.maxcmdsn, self.cmdsn)

    def take(self) -> int:
        """The CmdSN of a non-immediate command being sent; the next one gets the following number."""
        sn = self.cmdsn
        self.cmdsn = (sn + 1) & _MASK
        return sn

    def status(self, statsn: int) -> None:
        """A PDU carrying status arrived with this StatSN."""
        self.expstatsn = (statsn + 1) & _MASK

    def update(self, expcmdsn: int, maxcmdsn: int) -> bool:
        """ExpCmdSN and MaxCmdSN from the target; returns whether the window grew."""
        if sn_lt(maxcmdsn, (expcmdsn - 1) & _MASK):
            return False  # §4.2.2.1: both values are ignored when MaxCmdSN < ExpCmdSN - 1
        if sn_lt(self.expcmdsn, expcmdsn):
            self.expcmdsn = expcmdsn
        if sn_lt(self.maxcmdsn, maxcmdsn):
            self.maxcmdsn = maxcmdsn
            return True
        return False


class OrderWindow(Generic[C]):
    """The target's view: ExpCmdSN, MaxCmdSN (``size`` commands at most outstanding) and StatSN.

    ``arrive(cmdsn, command)`` yields the commands that may be delivered now, in CmdSN order: this one
    and any that were waiting behind it. ``skip(cmdsn)`` counts a CmdSN as received without delivering
    it (a command aborted before it arrived, §11.6.1 b)."""

    def __init__(self, *, expcmdsn: int, statsn: int, size: int) -> None:
        self.expcmdsn = expcmdsn
        self.statsn = statsn
        self.size = size
        self.outstanding = 0  # commands delivered and not yet ended: they hold the window shut
        self.waiting: dict[int, C | None] = {}  # CmdSN -> command ahead of a gap (None: skipped)

    @property
    def maxcmdsn(self) -> int:
        return (self.expcmdsn + self.size - self.outstanding - 1) & _MASK

    def next_statsn(self) -> int:
        """The StatSN for a PDU carrying status; the next one gets the following number."""
        sn = self.statsn
        self.statsn = (sn + 1) & _MASK
        return sn

    def within(self, cmdsn: int) -> bool:
        return sn_le(self.expcmdsn, cmdsn) and sn_le(cmdsn, self.maxcmdsn)

    def arrive(self, cmdsn: int, command: C) -> Iterator[C]:
        """Deliverable commands after ``command`` arrived (the caller has checked ``within``)."""
        if cmdsn != self.expcmdsn:
            if self.waiting.get(cmdsn, command) is not None:  # a skipped CmdSN stays skipped
                self.waiting[cmdsn] = command
            return
        self.expcmdsn = (cmdsn + 1) & _MASK
        yield command
        yield from self._drain()

    def skip(self, cmdsn: int) -> Iterator[C]:
        """Count ``cmdsn`` as received without delivering it; yields what that unblocks."""
        self.waiting[cmdsn] = None
        yield from self._drain()

    def _drain(self) -> Iterator[C]:
        while self.expcmdsn in self.waiting:
            nxt = self.waiting.pop(self.expcmdsn)
            self.expcmdsn = (self.expcmdsn + 1) & _MASK
            if nxt is not None:
                yield nxt
