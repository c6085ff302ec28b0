"""The backing file every contender serves: random bytes (not a sparse file, so no target can skip
reading holes), written just before the run and deleted after it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_CHUNK = 8 * 2**20


@contextmanager
def random_backing_file(size: int, *, directory: str | None = None) -> Iterator[str]:
    """A temporary file of ``size`` random bytes (os.urandom), removed with its directory on exit."""
    if size % _CHUNK:
        raise ValueError(f"backing file size {size} must be a multiple of {_CHUNK} bytes")
    with tempfile.TemporaryDirectory(prefix="sanpath-bench-", dir=directory) as tmp:
        path = os.path.join(tmp, "lun.img")
        with open(path, "wb") as f:
            for _ in range(size // _CHUNK):
                f.write(os.urandom(_CHUNK))
            f.flush()
            os.fsync(f.fileno())
        yield path
