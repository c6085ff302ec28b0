"""The CLI over a daemon process's API: the listings (table and JSON), the probe stages with XenServer's
XML, create, unplug and destroy, and errors that say what failed and what to do, with exit code 2 for
bad input and 1 for a failed operation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from sanpath.target.spawn import serve_target
from sanpath.testing.daemon import Daemon, serve_daemon

IQN = "iqn.2026-12.org.sanpath.test:cli"


def sanpath(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SANPATH_API": f"unix:{d.api}"}
    return subprocess.run([sys.executable, "-m", "sanpath", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_workflow_from_the_command_line(tmp_path: Path) -> None:
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", "mem:16MiB") as array, serve_daemon("--name", "cli-host") as d:
        hosts = json.loads(sanpath(d, "host", "list", "--format", "json").stdout)
        assert [(h["name_label"], h["live"], h["multipath_handle"]) for h in hosts] == [("cli-host", True, "dmp")]
        table = sanpath(d, "host", "show").stdout.splitlines()
        assert table[0].split() == ["NAME", "UUID", "IQN", "ENABLED", "MAINTENANCE", "MULTIPATHING", "HANDLER", "LIVE"]
        assert table[1].split()[0] == "cli-host" and table[1].split()[2] == d.iqn

        bad = sanpath(d, "pif", "set-purpose", "nosuch0", "storage")
        assert bad.returncode == 2 and "HANDLE_INVALID" in bad.stderr and "lo" in bad.stderr
        assert sanpath(d, "pif", "set-purpose", "lo", "storage").returncode == 0
        pifs = {p["device"]: p for p in json.loads(sanpath(d, "pif", "list", "--format", "json").stdout)}
        assert pifs["lo"]["purpose"] == "storage" and "127.0.0.1/8" in pifs["lo"]["addresses"]

        first = array.portals[0]
        xml = sanpath(d, "sr", "probe", "--target", first, "--format", "xml")
        assert xml.returncode == 0, xml.stderr
        assert xml.stdout.startswith('<?xml version="1.0" ?>\n<iscsi-target-iqns>\n\t<TGT>\n\t\t<Index>0</Index>')
        tgts = ET.fromstring(xml.stdout).findall("TGT")
        assert [t.findtext("TargetIQN") for t in tgts] == [IQN, IQN, "*"]
        listing = sanpath(d, "sr", "probe", "--target", first)
        assert "(* logs in to every IQN listed" in listing.stdout
        luns = json.loads(sanpath(d, "sr", "probe", "--target", first, "--iqn", IQN, "--format", "json").stdout)
        [scsi_id] = [lun["SCSIid"] for lun in luns["luns"]]

        wrong = sanpath(d, "sr", "create", "--name", "x", "--target", first, "--iqn", IQN, "--scsi-id", "3600bad")
        assert wrong.returncode == 2
        assert f"ConfigSCSIid (107): no LUN 3600bad behind {IQN}; found {scsi_id}" in wrong.stderr
        assert "what to do: Pick one of the LUNs listed" in wrong.stderr

        made = sanpath(d, "sr", "create", "--name", "cli-sr", "--target", first, "--iqn", IQN, "--scsi-id", scsi_id)
        assert made.returncode == 0, made.stderr
        sr_uuid = made.stdout.strip()
        pbds = sanpath(d, "pbd", "list", "--sr", sr_uuid)
        assert "2 of 2 (2 sessions)" in pbds.stdout, pbds.stdout
        [pbd] = json.loads(sanpath(d, "pbd", "list", "--format", "json").stdout)
        assert {p["name"].split("->")[0] for p in pbd["other_config"]["paths"]} == {"127.0.0.1"}  # bound to lo
        assert not any(p["routed"] for p in pbd["other_config"]["paths"])

        busy = sanpath(d, "sr", "destroy", sr_uuid)
        assert busy.returncode == 1 and "SR_HAS_PLUGGED_PBD" in busy.stderr and "pbd unplug" in busy.stderr
        assert sanpath(d, "pbd", "unplug", pbd["uuid"]).returncode == 0
        assert sanpath(d, "sr", "destroy", sr_uuid).returncode == 0
        assert json.loads(sanpath(d, "sr", "list", "--format", "json").stdout) == []


def test_no_daemon_and_no_pool_are_explained(tmp_path: Path) -> None:
    env = {**os.environ, "SANPATH_STATE_DIR": str(tmp_path / "state"), "SANPATH_RUN_DIR": str(tmp_path / "run")}
    out = subprocess.run([sys.executable, "-m", "sanpath", "host", "list", "--api", f"unix:{tmp_path}/none.sock"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert "cannot reach the host daemon" in out.stderr and "sanpath host serve" in out.stderr
    db = f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}"
    out = subprocess.run([sys.executable, "-m", "sanpath", "host", "serve", "--db", db], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 1 and "POOL_NOT_INITIALISED" in out.stderr and "sanpath pool create" in out.stderr
    key = str(tmp_path / "pool.key")
    made = subprocess.run([sys.executable, "-m", "sanpath", "pool", "create", "--db", db, "--key-file", key],
                          capture_output=True, text=True, env=env, timeout=60)
    assert made.returncode == 0 and len(made.stdout.strip()) == 36
    again = subprocess.run([sys.executable, "-m", "sanpath", "pool", "create", "--db", db, "--key-file", key + "2"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 2 and "holds pool" in again.stderr
    wrong_key = str(tmp_path / "other.key")
    subprocess.run([sys.executable, "-m", "sanpath", "pool", "create", "--db",
                    f"sqlite+aiosqlite:///{tmp_path / 'other.db'}", "--key-file", wrong_key], env=env, timeout=60)
    out = subprocess.run([sys.executable, "-m", "sanpath", "host", "serve", "--db", db, "--pool-key", wrong_key],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "POOL_KEY_INVALID" in out.stderr
