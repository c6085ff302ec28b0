"""Write data transfer (RFC 7143 §11.7, §11.8), both halves side by side, sans-IO.

- ``data_out_sequence``: the initiator's Data-Out PDUs for one sequence, unsolicited (TTT ffffffffh)
  or answering an R2T.
- ``WritePlan``: the target's plan for one write command: which bytes come unsolicited (immediate data,
  then up to FirstBurstLength unless InitialR2T=Yes), which it must solicit with R2Ts of at most
  MaxBurstLength, at most MaxOutstandingR2T at a time, and whether each Data-Out arrived in order
  (DataPDUInOrder=Yes, DataSequenceInOrder=Yes: contiguous offsets, DataSN from 0 in each sequence).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .constants import RESERVED_TAG


def data_out_sequence(offset: int, length: int, segment: int) -> Iterator[tuple[int, int, bool, int]]:
    """``(offset, length, final, DataSN)`` of each Data-Out PDU carrying ``[offset, offset+length)`` in
    PDUs of at most ``segment`` bytes (the target's MaxRecvDataSegmentLength)."""
    end = offset + length
    datasn = 0
    while offset < end:
        n = min(segment, end - offset)
        yield offset, n, offset + n == end, datasn
        offset += n
        datasn += 1


@dataclass(slots=True)
class _Burst:
    """One R2T's sequence: where it starts, how long it is, how much arrived, the DataSN expected next."""

    offset: int
    length: int
    got: int = 0
    datasn: int = 0


@dataclass(slots=True)
class WritePlan:
    """What of one write command's Expected Data Transfer Length has arrived and what is still owed."""

    edtl: int
    unsolicited_end: int  # data below this offset arrives without an R2T
    received: int = 0  # bytes accepted so far
    next_r2t: int = 0  # the next offset to solicit
    r2tsn: int = 0  # R2TSN of the next R2T
    unsolicited_got: int = 0  # unsolicited Data-Out bytes received (after the immediate data)
    unsolicited_datasn: int = 0
    immediate: int = 0
    bursts: dict[int, _Burst] = field(default_factory=dict)  # TTT -> an R2T not yet fully answered

    @classmethod
    def start(cls, edtl: int, immediate: int, *, initial_r2t: bool, first_burst_length: int) -> WritePlan:
        end = immediate if initial_r2t else min(first_burst_length, edtl)
        return cls(edtl, end, received=immediate, next_r2t=end, immediate=immediate)

    @property
    def complete(self) -> bool:
        return self.received == self.edtl

    @property
    def to_solicit(self) -> int:
        """Bytes not yet asked for with an R2T (nor sent unsolicited)."""
        return self.edtl - self.next_r2t

    def solicit(self, ttts: Iterator[int], *, max_burst_length: int,
                max_outstanding_r2t: int) -> list[tuple[int, int, int, int]]:
        """The R2Ts to send now: ``(TTT, R2TSN, offset, length)``, within MaxOutstandingR2T."""
        out = []
        while self.next_r2t < self.edtl and len(self.bursts) < max_outstanding_r2t:
            length = min(max_burst_length, self.edtl - self.next_r2t)
            ttt = next(ttts)
            self.bursts[ttt] = _Burst(self.next_r2t, length)
            out.append((ttt, self.r2tsn, self.next_r2t, length))
            self.r2tsn += 1
            self.next_r2t += length
        return out

    def knows(self, ttt: int) -> bool:
        return ttt == RESERVED_TAG or ttt in self.bursts

    def accept(self, ttt: int, offset: int, datasn: int, length: int, final: bool) -> tuple[int, int] | None:
        """Account one Data-Out of ``length`` bytes (the caller has checked ``knows(ttt)``). Returns None
        when it arrived in order, else the (offset, DataSN) that was expected (§11.7.5)."""
        if ttt == RESERVED_TAG:
            expect_offset = self.immediate + self.unsolicited_got
            expect_sn = self.unsolicited_datasn
            if offset + length > self.unsolicited_end:
                expect_offset = -1
            self.unsolicited_got += length
            self.unsolicited_datasn += 1
        else:
            burst = self.bursts[ttt]
            expect_sn = burst.datasn
            burst.got += length
            burst.datasn += 1
            in_burst = burst.got <= burst.length and (burst.got == burst.length or not final)
            expect_offset = burst.offset + burst.got - length if in_burst else -1
            if burst.got >= burst.length:
                del self.bursts[ttt]
        if offset != expect_offset or datasn != expect_sn:
            return expect_offset, expect_sn
        self.received += length
        if self.complete:
            self.bursts.clear()
        return None
