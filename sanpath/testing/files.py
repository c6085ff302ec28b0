"""Test data on disk: random images and their checksums, for round trips through real programs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MiB = 1 << 20


def random_image(path: Path, size: int) -> None:
    """``size`` bytes of random data (a multiple of 4 MiB)."""
    with path.open("wb") as f:
        for _ in range(size // (4 * MiB)):
            f.write(os.urandom(4 * MiB))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()
