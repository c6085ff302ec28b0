"""Sequence number comparison for CmdSN, StatSN and friends: RFC 1982 serial number arithmetic with
SERIAL_BITS = 32, as RFC 7143 §4.2.2.1 requires. Shared by the initiator and the target."""

from __future__ import annotations


def sn_lt(a: int, b: int) -> bool:
    """a < b in serial arithmetic (undefined pairs, exactly 2**31 apart, compare as not less)."""
    return a != b and ((a < b and b - a < 0x80000000) or (a > b and a - b > 0x80000000))


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)
