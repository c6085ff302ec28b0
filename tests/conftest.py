"""Shared fixtures: a sanpath target process on loopback with a file LUN and a memory LUN."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sanpath.target.spawn import RunningTarget, serve_target

IQN = "iqn.2026-11.org.sanpath.test:array"


@pytest.fixture
def target_process(tmp_path: Path) -> Iterator[RunningTarget]:
    """A target with two portals (127.0.0.1 and 127.0.0.2, free ports), LUN 0 a 64 MiB file,
    LUN 1 a 16 MiB memory LUN."""
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", f"{tmp_path / 'lun0.img'}:64MiB", "--lun", "mem:16MiB") as t:
        yield t
