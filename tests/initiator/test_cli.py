"""``sanpath discover``, ``sanpath luns`` and ``sanpath bench`` as a user runs them, against a target
process: output in both formats, CHAP secrets from files and the environment, exit codes, and bad input
answered with a message and exit code 2, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sanpath.initiator.device import ScsiDevice
from sanpath.initiator.session import Session, SessionConfig
from sanpath.target.spawn import RunningTarget, serve_target

from ..conftest import IQN

CHAP_IQN = "iqn.2026-11.org.sanpath.test:chap"
SECRET = "initiator-secret-1"
TARGET_SECRET = "target-secret-22"
KEYS = ("rw", "bs", "qd", "seconds", "bytes", "iops", "mbps", "lat_us", "errors", "verify_failures", "max_stall_ms")


def sanpath(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SANPATH_")}
    return subprocess.run([sys.executable, "-m", "sanpath", *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean, **(env or {})})


def split(portal: str) -> tuple[str, int]:
    host, _, port = portal.rpartition(":")
    return host, int(port)


@pytest.fixture
def chap_target(tmp_path: Path) -> Iterator[RunningTarget]:
    """One portal, one 8 MiB LUN, mutual CHAP: user alice / SECRET, target answers as array / TARGET_SECRET."""
    (tmp_path / "target.secret").write_text(TARGET_SECRET + "\n")
    cfg = tmp_path / "array.toml"
    cfg.write_text(f'''
[[target]]
iqn = "{CHAP_IQN}"
chap = {{ user = "alice", secret = "{SECRET}", mutual_user = "array", mutual_secret_file = "{tmp_path}/target.secret" }}
[[target.portal_group]]
tag = 1
portals = ["127.0.0.1:0"]
[[target.lun]]
id = 0
memory = "8MiB"
''')
    with serve_target("--config", str(cfg)) as t:
        yield t


# --- discover ------------------------------------------------------------------------------------


def test_discover_table_two_portals(target_process: RunningTarget) -> None:
    proc = sanpath("discover", ",".join(target_process.portals))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["ADDRESS", "PORT", "TPGT", "IQN"]
    rows = sorted(tuple(line.split()) for line in lines[1:])
    want = sorted((*split(p), 1, IQN) for p in target_process.portals)
    assert rows == [(h, str(p), str(t), i) for h, p, t, i in want]
    assert proc.stderr == ""


def test_discover_json(target_process: RunningTarget) -> None:
    proc = sanpath("discover", ",".join(target_process.portals), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["errors"] == []
    assert sorted(out["targets"], key=lambda r: r["address"]) == [
        {"address": h, "port": p, "tpgt": 1, "iqn": IQN} for h, p in sorted(map(split, target_process.portals))]


def test_discover_one_dead_portal(target_process: RunningTarget, unused_tcp_port: int) -> None:
    dead = f"127.0.0.1:{unused_tcp_port}"
    proc = sanpath("discover", f"{target_process.portals[0]},{dead}", "--format", "json")
    assert proc.returncode == 0, proc.stderr  # one portal answered
    out = json.loads(proc.stdout)
    assert len(out["targets"]) == 2
    assert [e["portal"] for e in out["errors"]] == [dead]
    assert dead in proc.stderr and "cannot connect" in proc.stderr
    proc = sanpath("discover", dead)
    assert proc.returncode == 1 and dead in proc.stderr and "Traceback" not in proc.stderr


# --- luns ----------------------------------------------------------------------------------------


async def _scsi_ids(target: RunningTarget) -> list[str]:
    host, port = split(target.portals[0])
    session = await Session.open(SessionConfig(host, port, target.iqn))
    try:
        return [await (await ScsiDevice(session, n).open()).scsi_id() for n in (0, 1)]
    finally:
        await session.logout()


@pytest.mark.parametrize("lun_part", ["", "/0"])
def test_luns_table(target_process: RunningTarget, lun_part: str) -> None:
    proc = sanpath("luns", f"iscsi://{target_process.portals[1]}/{IQN}{lun_part}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["LUN", "TYPE", "SIZE", "VENDOR", "PRODUCT", "SERIAL", "SCSIID"]
    ids = asyncio.run(_scsi_ids(target_process))
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[2], r[-1]) for r in rows] == [("0", "disk", "64MiB", ids[0]), ("1", "disk", "16MiB", ids[1])]


def test_luns_json(target_process: RunningTarget) -> None:
    proc = sanpath("luns", target_process.url(0), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ids = asyncio.run(_scsi_ids(target_process))
    assert [(o["lun"], o["type"], o["size"], o["block_size"], o["scsi_id"]) for o in out] == [
        (0, "disk", 64 << 20, 512, ids[0]), (1, "disk", 16 << 20, 512, ids[1])]
    assert all(o["vendor"] and o["product"] and o["serial"] for o in out)
    assert out[0]["serial"] != out[1]["serial"]


# --- CHAP ----------------------------------------------------------------------------------------


def test_chap_secret_from_file(chap_target: RunningTarget, tmp_path: Path) -> None:
    secret = tmp_path / "chap.secret"
    secret.write_text(SECRET + "\n")  # the trailing newline of `echo` is not part of the secret
    tsecret = tmp_path / "target.secret"
    url = f"iscsi://{chap_target.portals[0]}/{CHAP_IQN}"
    proc = sanpath("luns", url, "--chap-user", "alice", "--chap-secret-file", str(secret),
                   "--target-chap-user", "array", "--target-chap-secret-file", str(tsecret))
    assert proc.returncode == 0, proc.stderr
    assert "8MiB" in proc.stdout
    proc = sanpath("luns", url, "--chap-user", "alice", "--chap-secret-file", str(secret))  # one-way
    assert proc.returncode == 0, proc.stderr


def test_chap_secret_from_env(chap_target: RunningTarget) -> None:
    url = f"iscsi://{chap_target.portals[0]}/{CHAP_IQN}"
    env = {"SANPATH_CHAP_SECRET": SECRET, "SANPATH_TARGET_CHAP_SECRET": TARGET_SECRET}
    proc = sanpath("luns", url, "--chap-user", "alice", "--target-chap-user", "array", env=env)
    assert proc.returncode == 0, proc.stderr
    proc = sanpath("bench", url + "/0", "--chap-user", "alice", "--rw", "randrw", "--time", "1", "--verify",
                   "--format", "json", "-q", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verify_failures"] == 0


def test_chap_in_url(chap_target: RunningTarget) -> None:
    proc = sanpath("luns", f"iscsi://alice%{SECRET}@{chap_target.portals[0]}/{CHAP_IQN}/0")
    assert proc.returncode == 0, proc.stderr
    proc = sanpath("luns", f"iscsi://alice@{chap_target.portals[0]}/{CHAP_IQN}/0", env={"SANPATH_CHAP_SECRET": SECRET})
    assert proc.returncode == 0, proc.stderr


def test_chap_refused(chap_target: RunningTarget) -> None:
    url = f"iscsi://{chap_target.portals[0]}/{CHAP_IQN}"
    proc = sanpath("luns", url)
    assert proc.returncode == 1 and "CHAP" in proc.stderr and "Traceback" not in proc.stderr
    proc = sanpath("luns", url, "--chap-user", "alice", env={"SANPATH_CHAP_SECRET": "wrong-secret-xyz"})
    assert proc.returncode == 1 and "authentication failure" in proc.stderr
    proc = sanpath("luns", url, "--chap-user", "alice", "--target-chap-user", "array",
                   env={"SANPATH_CHAP_SECRET": SECRET, "SANPATH_TARGET_CHAP_SECRET": "not-the-target-one"})
    assert proc.returncode == 1 and "mutual CHAP secret" in proc.stderr
    assert "not-the-target-one" not in proc.stderr + proc.stdout


# --- bench ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rw", ["read", "write", "randread", "randwrite", "randrw"])
def test_bench_verify_every_mode(target_process: RunningTarget, rw: str) -> None:
    proc = sanpath("bench", target_process.url(1), "--rw", rw, "--bs", "8k", "--qd", "8", "--time", "1",
                   "--size", "4MiB", "--verify", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["errors"], out["verify_failures"], out["rw"], out["bs"], out["qd"]) == (0, 0, rw, 8192, 8)
    assert out["ios"] > 0 and out["verify_reads"] > 0 and out["verify"] is True
    if rw in ("read", "randread", "randrw"):
        assert "writing the region first" in proc.stderr


def test_bench_json_schema_and_progress(target_process: RunningTarget) -> None:
    proc = sanpath("bench", target_process.url(0), "--rw", "randread", "--bs", "4KiB", "--qd", "4", "--time", "2",
                   "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(KEYS) <= set(out)
    assert set(out["lat_us"]) >= {"p50", "p99", "max"}
    for key in ("iops", "mbps", "seconds", "max_stall_ms"):
        assert isinstance(out[key], float | int) and out[key] >= 0
    assert out["bytes"] == out["ios"] * 4096 and out["region_size"] == 64 << 20
    assert out["lat_us"]["p50"] <= out["lat_us"]["p99"] <= out["lat_us"]["max"]
    # not a terminal: plain progress lines, no carriage returns
    progress = [line for line in proc.stderr.splitlines() if "IOPS" in line]
    assert progress and "\r" not in proc.stderr


def test_bench_text_summary(target_process: RunningTarget) -> None:
    proc = sanpath("bench", target_process.url(1), "--rw", "write", "--bs", "64k", "--qd", "2", "--time", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("write: bs=64KiB qd=2") and "IOPS" in proc.stdout and "latency us" in proc.stdout
    assert proc.stderr == ""


# --- bad input: a message and exit code 2, never a traceback ------------------------------------------


@pytest.mark.parametrize(("args", "words"), [
    (["luns", "http://127.0.0.1/iqn.x/0"], "not an iSCSI URL"),
    (["luns", "iscsi://127.0.0.1:3260"], "names no target"),
    (["bench", f"iscsi://127.0.0.1/{IQN}"], "expected iscsi://"),
    (["bench", f"iscsi://127.0.0.1/{IQN}/0", "--bs", "4q"], "is not a size"),
    (["bench", f"iscsi://127.0.0.1/{IQN}/0", "--bs", "-4k"], "--bs"),
    (["bench", f"iscsi://127.0.0.1/{IQN}/0", "--qd", "0"], "--qd"),
    (["bench", f"iscsi://127.0.0.1/{IQN}/0", "--rw", "trim"], "--rw"),
    (["luns", f"iscsi://127.0.0.1/{IQN}", "--chap-user", "u", "--chap-secret-file", "/nonexistent/secret"],
     "cannot read /nonexistent/secret"),
    (["luns", f"iscsi://127.0.0.1/{IQN}", "--chap-user", "u"], "needs a secret"),
    (["luns", f"iscsi://127.0.0.1/{IQN}", "--chap-secret", "x"], "No such option"),
    (["luns", f"iscsi://127.0.0.1/{IQN}", "--chap-secret-file", "/etc/hostname"], "needs --chap-user"),
    (["luns", f"iscsi://u%short@127.0.0.1/{IQN}"], "at least 12"),
    (["luns", f"iscsi://127.0.0.1/{IQN}", "--target-chap-user", "t"], "needs initiator CHAP"),
    (["discover", "127.0.0.1:99999"], "out of range"),
    (["discover", ","], "no portal"),
])
def test_bad_input(args: list[str], words: str) -> None:
    proc = sanpath(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_bs_for_the_lun(target_process: RunningTarget) -> None:
    """Known only once the LUN is open: still bad input."""
    proc = sanpath("bench", target_process.url(1), "--bs", "1000", "--time", "1")
    assert proc.returncode == 2 and "multiple of the block size 512" in proc.stderr
    proc = sanpath("bench", target_process.url(1), "--size", "4k", "--bs", "4k", "--qd", "8", "--verify")
    assert proc.returncode == 2 and "--verify needs" in proc.stderr and "Traceback" not in proc.stderr


def test_unreachable_and_missing_target(target_process: RunningTarget, unused_tcp_port: int) -> None:
    proc = sanpath("luns", f"iscsi://127.0.0.1:{unused_tcp_port}/{IQN}")
    assert proc.returncode == 1 and "cannot connect" in proc.stderr and "Traceback" not in proc.stderr
    proc = sanpath("bench", f"iscsi://{target_process.portals[0]}/iqn.2026-11.org.sanpath:nothere/0", "--time", "1")
    assert proc.returncode == 1 and "nothere" in proc.stderr and "Traceback" not in proc.stderr
