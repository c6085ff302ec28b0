"""Byte counts for people: ``human_size`` (binary units, one decimal unless exact)."""

from __future__ import annotations


def human_size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f}{unit}" if n % (1 << shift) == 0 else f"{v:.1f}{unit}"
    return f"{n}B"
