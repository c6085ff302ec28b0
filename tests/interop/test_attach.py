"""``sanpath attach`` end to end with real programs: a sanpath array process with two portals, the attach
service exporting the multipathed LUN over NBD, and qemu-img, qemu-io, nbdinfo and nbdcopy using it;
libiscsi reads the LUN back over a single path to prove what landed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from sanpath.target.spawn import RunningTarget, serve_target, terminate
from sanpath.testing.files import sha256
from sanpath.testing.waiting import wait_until_sync
from tests.helpers.gates import require_peer

IQN = "iqn.2026-11.org.sanpath.test:attach"
SIZE = 1 << 30


@dataclass
class Attached:
    process: subprocess.Popen[str]
    uri: str
    control: str
    socket: str


@contextmanager
def attach(target: RunningTarget, tmp: Path) -> Iterator[Attached]:
    sock, control = str(tmp / "nbd.sock"), str(tmp / "attach.sock")
    first = target.portals[0]
    proc = subprocess.Popen([sys.executable, "-m", "sanpath", "attach", "--target", first, "--iqn", IQN,
                             "--nbd", f"unix:{sock}", "--control", control,
                             "--set", "nop_interval=0.25", "--set", "nop_timeout=0.5", "--set", "polling_interval=0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        m = re.match(r"sanpath attach ready: (\S+) \((\d+) of (\d+) paths active\)", line)
        assert m, f"no ready line: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        assert m.group(2) == m.group(3) == "2"
        yield Attached(proc, m.group(1), control, sock)
    finally:
        terminate(proc, grace=30)


def run(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc.stdout




def status(control: str) -> dict:  # type: ignore[type-arg]
    return json.loads(run(sys.executable, "-m", "sanpath", "status", "--control", control, "--format", "json"))




@pytest.fixture
def array(tmp_path: Path) -> Iterator[RunningTarget]:
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", f"{tmp_path / 'lun.img'}:{SIZE}", "--control", str(tmp_path / "target.sock")) as t:
        yield t


def test_qemu_img_into_the_export_and_back_over_one_libiscsi_path(array: RunningTarget, tmp_path: Path) -> None:
    require_peer("qemu-img", package="qemu-utils")
    src, back, back2 = tmp_path / "src.img", tmp_path / "back.img", tmp_path / "back2.img"
    with open(src, "wb") as f:
        for _ in range(SIZE >> 20):
            f.write(os.urandom(1 << 20))
    with attach(array, tmp_path) as a:
        run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), a.uri)
        run("qemu-img", "convert", "-f", "raw", "-O", "raw", array.url(0, portal=1), str(back))
        assert sha256(back) == sha256(src)
        # and the reverse: written over one iSCSI path, read through the multipathed export
        (tmp_path / "src.img").unlink()
        run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(back), array.url(0, portal=0))
        run("qemu-img", "convert", "-f", "raw", "-O", "raw", a.uri, str(back2))
        assert sha256(back2) == sha256(back)
        st = status(a.control)
        assert st["paths_active"] == 2 and all(p["ios"] > 0 for g in st["groups"] for p in g["paths"])


def test_nbdinfo_and_nbdcopy(array: RunningTarget, tmp_path: Path) -> None:
    require_peer("nbdinfo", "nbdcopy", package="libnbd-bin")
    with attach(array, tmp_path) as a:
        info = json.loads(run("nbdinfo", "--json", a.uri))
        export = info["exports"][0]
        assert export["export-size"] == SIZE
        assert export["block_size_minimum"] == 512 and export["block_size_maximum"] >= 1 << 20
        src, back = tmp_path / "src.img", tmp_path / "back.img"
        with open(src, "wb") as f:
            for _ in range(SIZE >> 20):
                f.write(os.urandom(1 << 20))
        run("nbdcopy", str(src), a.uri)
        run("nbdcopy", a.uri, str(back))
        assert sha256(back) == sha256(src)


def test_qemu_io_patterns_verify_while_a_path_is_pulled(array: RunningTarget, tmp_path: Path) -> None:
    require_peer("qemu-io", package="qemu-utils")
    with attach(array, tmp_path) as a:
        target_control = str(tmp_path / "target.sock")
        victim = array.portals[1]
        run(sys.executable, "-m", "sanpath", "target", "fault", "--control", target_control, "blackhole",
            "--portal", victim, "--after-seconds", "1")
        for i in range(12):  # a pattern per MiB, while the path dies (after about 1 s) and stays dead
            run("qemu-io", "-f", "raw", "-c", f"write -P 0x{i + 0x10:02x} {i}M 1M", a.uri)
        wait_until_sync(lambda: status(a.control)["paths_active"] == 1, "the pulled path to fail")
        run(sys.executable, "-m", "sanpath", "target", "fault", "--control", target_control, "restore", "all")
        wait_until_sync(lambda: status(a.control)["paths_active"] == 2, "the path to come back")
        for i in range(12):
            out = run("qemu-io", "-f", "raw", "-c", f"read -P 0x{i + 0x10:02x} {i}M 1M", a.uri)
            assert "Pattern verification failed" not in out
        events = [e["kind"] for e in status(a.control)["events"]]
        assert "failed" in events and "reinstated" in events
        a.process.send_signal(signal.SIGTERM)
        assert a.process.wait(timeout=30) == 0  # drained, flushed, logged out
