"""The host daemon as a process, on both stores, against a sanpath array process with two portals:

- a portal black-holed before the plug: the plug completes with [1, 2] and becomes [2, 2] by itself
  once the portal answers again (no command);
- kill -9 of the daemon during verified I/O through the SR's export: no error, no verify failure; the
  restarted daemon adopts the running data-path process and starts no second one;
- kill -9 of the data-path process: the daemon restarts it and records the restart as a message.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from sanpath.export.nbd.client import NbdClient
from sanpath.target import control as target_control
from sanpath.target.spawn import serve_target
from sanpath.testing.daemon import Daemon, datapath_pids, serve_daemon, start_daemon
from sanpath.testing.waiting import wait_until_sync
from sanpath.workload.bench import Bench, BenchResult, BenchSpec

IQN = "iqn.2026-12.org.sanpath.test:daemon"


def pool_args(store_url: str, tmp_path: Path) -> list[str]:
    """SQLite: the embedded default (no arguments; the pool is made in the state directory). PostgreSQL:
    the pool made by ``sanpath pool create``, joined with --db and --pool-key."""
    if store_url.startswith("sqlite"):
        return []
    key = str(tmp_path / "pool.key")
    out = subprocess.run([sys.executable, "-m", "sanpath", "pool", "create", "--db", store_url, "--key-file", key],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert os.stat(key).st_mode & 0o777 == 0o600
    return ["--db", store_url, "--pool-key", key]


def counts(d: Daemon, pbd: str) -> str:
    p = d.call("GET", f"/pbds/{pbd}")
    return str(next((v for k, v in p["other_config"].items() if k.startswith("mpath-")), ""))


def bench_in_thread(socket_path: str, name: str, seconds: float) -> tuple[threading.Thread, list[BenchResult]]:
    results: list[BenchResult] = []

    async def run() -> None:
        client = await NbdClient.connect_unix(socket_path, name)
        try:
            results.append(await Bench(client, BenchSpec(rw="randrw", bs=4096, qd=8, seconds=seconds, verify=True,
                                                         size=16 << 20, seed=7)).run())
        finally:
            await client.close()

    thread = threading.Thread(target=lambda: asyncio.run(run()))
    thread.start()
    return thread, results


def test_the_daemon_keeps_a_pbd_plugged_through_faults_and_its_own_death(store_url: str, tmp_path: Path) -> None:
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", f"{tmp_path / 'lun0.img'}:64MiB") as array, \
            serve_daemon(*pool_args(store_url, tmp_path), "--name", "h1") as daemon:
        assert os.stat(daemon.api).st_mode & 0o777 == 0o600  # the API socket: root (its owner) only
        assert os.stat(os.path.dirname(daemon.api)).st_mode & 0o777 == 0o700
        first, second = array.portals
        fault = target_control.call(array.control, {"op": "fault", "kind": "blackhole", "portal": second})["fault"]
        [lun] = daemon.call("POST", "/sr/probe", {"target": first, "targetIQN": IQN})["luns"]
        sr = daemon.call("POST", "/srs", {"name_label": "sr", "target": first, "targetIQN": IQN,
                                          "SCSIid": lun["SCSIid"]})
        [pbd] = sr["pbds"]
        assert pbd["currently_attached"] and counts(daemon, pbd["uuid"]) == "[1, 2]"
        assert [p["logged_in"] for p in pbd["other_config"]["paths"]] == [True, False]
        target_control.call(array.control, {"op": "restore", "id": fault["id"]})
        wait_until_sync(lambda: counts(daemon, pbd["uuid"]) == "[2, 2]", "the restored portal logged in by itself")

        [pid] = datapath_pids(daemon.run_dir)
        nbd = pbd["nbd"].split("socket=", 1)[1]
        thread, results = bench_in_thread(nbd, lun["SCSIid"], seconds=8)
        wait_until_sync(lambda: int(daemon.call("GET", f"/pbds/{pbd['uuid']}")["other_config"]["nbd_clients"]) == 1,
                        "the bench connected")
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait()
        with start_daemon(*_same_args(store_url, tmp_path), "--name", "h1",
                          state_dir=daemon.state_dir, run_dir=daemon.run_dir) as again:
            thread.join(timeout=120)
            assert not thread.is_alive()
            [result] = results
            assert result.ios > 0 and result.errors == 0 and result.verify_failures == 0, result
            assert datapath_pids(again.run_dir) == [pid]  # adopted, never a second process
            messages = again.call("GET", "/messages")
            assert any(m["name"] == "PBD_DATAPATH_ADOPTED" and m["obj_uuid"] == pbd["uuid"] for m in messages)
            assert again.call("GET", f"/pbds/{pbd['uuid']}")["currently_attached"]

            os.kill(pid, signal.SIGKILL)
            wait_until_sync(lambda: datapath_pids(again.run_dir) not in ([], [pid]), "the data path restarted")
            wait_until_sync(lambda: again.call("GET", f"/pbds/{pbd['uuid']}")["currently_attached"]
                            and counts(again, pbd["uuid"]) == "[2, 2]", "the PBD attached again")
            restarts: list[dict[str, Any]] = [m for m in again.call("GET", "/messages")
                                              if m["name"] == "PBD_DATAPATH_RESTARTED"]
            assert [m["obj_uuid"] for m in restarts] == [pbd["uuid"]]
            assert len(datapath_pids(again.run_dir)) == 1


def _same_args(store_url: str, tmp_path: Path) -> list[str]:
    """The restarted daemon's arguments: the same store and key as the first one's."""
    if store_url.startswith("sqlite"):
        return []
    return ["--db", store_url, "--pool-key", str(tmp_path / "pool.key")]
