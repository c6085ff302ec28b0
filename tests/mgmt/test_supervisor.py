"""One data-path process per PBD, one daemon per host: the locks that make it so."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sanpath.mgmt.errors import XenError
from sanpath.mgmt.serve import lock_daemon
from sanpath.mgmt.supervisor import Supervisor, held
from sanpath.testing.mgmt import short_dir


@pytest.fixture
def run_dir() -> Iterator[str]:
    path = short_dir("sp-sup-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hold(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


async def test_a_pbd_whose_lock_is_held_gets_no_second_process(run_dir: str) -> None:
    supervisor = Supervisor(run_dir)
    lock = supervisor.lock_path("p1")
    assert not held(lock) and supervisor.gone("p1")
    fd = hold(lock)  # as a data-path process that is still logging in holds it
    try:
        assert held(lock) and not supervisor.gone("p1")
        with pytest.raises(XenError, match="has a data-path process already") as e:
            await supervisor.start("p1", {"paths": []})
        assert e.value.name == "ISCSIQueryDaemon"
        [adopted] = await supervisor.adopt()  # adopted even though it does not answer yet
        assert (adopted.pbd, adopted.pid) == ("p1", 0)
        assert await supervisor.status("p1") is None and "p1" in supervisor.running  # alive, not answering
    finally:
        os.close(fd)
    assert supervisor.gone("p1")
    assert await supervisor.status("p1") is None and "p1" not in supervisor.running  # gone: forgotten


def test_the_data_path_process_refuses_a_held_lock(tmp_path: Path) -> None:
    lock = str(tmp_path / "pbd-x.lock")
    fd = hold(lock)
    try:
        spec = {"pbd": "x", "scsi_id": "3600", "paths": [], "initiator_name": "iqn.2026-12.com.example:h",
                "nbd": str(tmp_path / "n.sock"), "control": str(tmp_path / "c.sock"), "lock": lock}
        out = subprocess.run([sys.executable, "-m", "sanpath.host.pbd"], input=json.dumps(spec) + "\n",
                             capture_output=True, text=True, timeout=60)
    finally:
        os.close(fd)
    assert out.returncode == 1
    answer = json.loads(out.stdout)
    assert answer["ready"] is False and "has a data-path process already" in answer["message"]


def test_one_daemon_per_runtime_directory(run_dir: str) -> None:
    fd = lock_daemon(run_dir)
    try:
        with pytest.raises(XenError, match="runs already") as e:
            lock_daemon(run_dir)
        assert e.value.name == "HOST_DAEMON_RUNNING"
    finally:
        os.close(fd)
    os.close(lock_daemon(run_dir))  # free again once the first one is gone


def test_a_runtime_directory_open_to_others_is_refused(run_dir: str) -> None:
    os.chmod(run_dir, 0o755)
    with pytest.raises(XenError, match="not ours alone"):
        Supervisor(run_dir)
