"""Gatekeeping and fixtures for tests that run in the namespace lab (root and iproute2 needed).

``require_lab`` skips with the reason when the lab cannot run here, and fails under ``CI=true``, in the
same spirit as ``require_peer``: CI can never pass by skipping the lab.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ..lab import Lab, Topology
from .peers import require_peer


def require_lab() -> None:
    require_peer("ip", "tc", package="iproute2")
    if os.geteuid() != 0:
        message = "the namespace lab needs root (network namespaces, veth, bridges, tc)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


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
