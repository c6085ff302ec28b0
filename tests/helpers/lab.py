"""A namespace lab for the length of a test: ``running_lab`` (gated by ``require_lab``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sanpath.lab import Lab, Topology

from .gates import require_lab


@contextmanager
def running_lab(subnets: int = 2, controllers: int = 2, *, state_dir: str, shape: str | None = None,
                hosts: int = 1) -> Iterator[Lab]:
    """A lab that is up for the ``with`` block and torn down afterwards, even on errors and Ctrl-C;
    its state file goes to ``state_dir`` (a test's tmp_path), never to /run."""
    require_lab()
    lab = Lab(topology=Topology(subnets, controllers, hosts), state_path=os.path.join(state_dir, "lab.json"))
    lab.up(shape=shape)
    try:
        yield lab
    finally:
        lab.down()
