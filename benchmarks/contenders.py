"""The targets a benchmark compares ("contenders"): each is started on the same backing file and named by a URL.

tgtd serves the file as LUN 1 (its LUN 0 is the controller); the sanpath target numbers LUNs from 0.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from sanpath.target.spawn import serve_target
from sanpath.testing.tgtd import run_tgtd

IQN_TGTD = "iqn.2026-11.org.sanpath.bench:tgtd"
IQN_SANPATH = "iqn.2026-11.org.sanpath.bench:sanpath"


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    url: str
    log: Callable[[], str]  # the target's log so far, for failure reports


@contextmanager
def tgtd(path: str) -> Iterator[Contender]:
    with run_tgtd(path, iqn=IQN_TGTD) as t:
        yield Contender("tgtd", t.url(1), t.log)


@contextmanager
def sanpath(path: str) -> Iterator[Contender]:
    with serve_target("--iqn", IQN_SANPATH, "--portal", "127.0.0.1:0", "--lun", path) as t:
        yield Contender("sanpath", t.url(0), t.log)


STARTERS: dict[str, Callable[[str], AbstractContextManager[Contender]]] = {"tgtd": tgtd, "sanpath": sanpath}


def verify(contender: Contender, path: str) -> str | None:
    """Compare the whole LUN with the backing file (``qemu-img compare``): None when identical, else
    why not. Checks that a target which reads fast also reads the right bytes."""
    if shutil.which("qemu-img") is None:
        return "not verified: qemu-img missing (Debian packages qemu-utils, qemu-block-extra)"
    cmd = ["qemu-img", "compare", "-f", "raw", "-F", "raw", path, contender.url]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    if proc.returncode == 0:
        return None
    return f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-1000:]}"
