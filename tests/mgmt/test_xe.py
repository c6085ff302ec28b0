"""The xe forms (``sanpath xe ...``) and the pool commands over a daemon process's API:

- the SR workflow through xe (sr-probe's errors 96 and 107 carrying the XML, sr-create, the lists with
  params= and --minimal, pbd-unplug/plug) gives the same records as the same workflow through sanpath's
  own commands;
- host-param-set multipathing is refused outside maintenance mode and works in it; host-disable and
  host-enable; host-param-get;
- ``sanpath host maintenance``, ``sanpath pool set-multipathing`` with its progress, and ``sanpath alerts
  --follow`` printing an alert (a data-path process killed and restarted) as the daemon raises it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

from sanpath.target.spawn import serve_target
from sanpath.testing.daemon import Daemon, datapath_pids, serve_daemon
from sanpath.testing.waiting import wait_until_sync

IQN = "iqn.2026-12.org.sanpath.test:xe"


def sanpath(d: Daemon, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SANPATH_API": f"unix:{d.api}", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sanpath", *args], capture_output=True, text=True, env=full,
                          timeout=120)


def xe(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return sanpath(d, "xe", *args)


def records(text: str) -> list[dict[str, str]]:
    """xe's record output parsed back: ``name ( RO): value`` lines, records split by blank lines."""
    out = []
    for block in text.strip("\n").split("\n\n"):
        rec = {}
        for line in block.splitlines():
            label, _, value = line.partition(": ")
            rec[label.split("(")[0].strip()] = value
        out.append(rec)
    return out


def comparable(sr: dict[str, Any]) -> dict[str, Any]:
    """An SR's record without what differs between two SRs on two LUNs of one array."""
    dc = {k: v for k, v in sr["device_config"].items() if k != "SCSIid"}
    sm = {k: v for k, v in sr["sm_config"].items() if k not in ("size",)}
    return {"type": sr["type"], "shared": sr["shared"], "device_config": dc, "sm_config": sm}


def test_the_workflow_through_xe_gives_the_same_records() -> None:
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", "mem:16MiB", "--lun", "mem:8MiB") as array, serve_daemon("--name", "xe-host") as d:
        target = ",".join(array.portals)
        stage1 = xe(d, "sr-probe", "type=lvmoiscsi", f"device-config:target={target}")
        assert stage1.returncode == 1
        assert stage1.stderr.startswith("Error code: SR_BACKEND_FAILURE_96\nError parameters: , The request is "
                                        "missing or has an incorrect target IQN parameter, <?xml version")
        assert "<iscsi-target-iqns>" in stage1.stderr and "<TargetIQN>*</TargetIQN>" in stage1.stderr
        stage2 = xe(d, "sr-probe", "type=lvmoiscsi", f"device-config:target={target}",
                    f"device-config:targetIQN={IQN}")
        assert stage2.returncode == 1 and "SR_BACKEND_FAILURE_107" in stage2.stderr
        assert "The SCSIid parameter is missing or incorrect" in stage2.stderr and "<iscsi-target>" in stage2.stderr
        luns = json.loads(sanpath(d, "sr", "probe", "--target", target, "--iqn", IQN, "--format", "json").stdout)
        big, small = (lun["SCSIid"] for lun in sorted(luns["luns"], key=lambda x: -x["size"]))
        stage3 = xe(d, "sr-probe", "type=lvmoiscsi", f"device-config:target={target}",
                    f"device-config:targetIQN={IQN}", f"device-config:SCSIid={big}")
        assert stage3.returncode == 0 and stage3.stdout.startswith('<?xml version="1.0" ?>\n<SRlist')

        secret = xe(d, "sr-create", "name-label=x", "device-config:chapuser=u", "device-config:chappassword=s")
        assert secret.returncode == 1 and "secret on the command line" in secret.stderr
        made = xe(d, "sr-create", "name-label=by-xe", "type=lvmoiscsi", "shared=true",
                  f"device-config:target={target}", f"device-config:targetIQN={IQN}", f"device-config:SCSIid={big}")
        assert made.returncode == 0, made.stderr
        xe_sr = made.stdout.strip()
        native = sanpath(d, "sr", "create", "--name", "by-sanpath", "--target", target, "--iqn", IQN,
                         "--scsi-id", small)
        assert native.returncode == 0, native.stderr
        ours = native.stdout.strip()
        by_xe, by_native = (d.call("GET", f"/srs/{u}") for u in (xe_sr, ours))
        assert comparable(by_xe) == comparable(by_native)
        assert [p["currently_attached"] for p in by_xe["pbds"]] == [p["currently_attached"] for p in by_native["pbds"]]

        listed = records(xe(d, "sr-list", "name-label=by-xe").stdout)
        assert listed == [{"uuid": xe_sr, "name-label": "by-xe", "name-description": "", "host": "<shared>",
                           "type": "lvmoiscsi", "content-type": "user"}]
        assert xe(d, "sr-list", "params=uuid", "--minimal").stdout.strip().split(",") == sorted(
            [xe_sr, ours], key=lambda u: d.call("GET", f"/srs/{u}")["name_label"])
        first = xe(d, "sr-list").stdout.splitlines()[0]
        assert first.startswith("uuid ( RO)") and first.index(":") == xe(d, "sr-list").stdout.splitlines()[1].index(":")
        [pbd] = records(xe(d, "pbd-list", f"sr-uuid={xe_sr}", "params=all").stdout)
        assert pbd["sr-uuid"] == xe_sr and pbd["host-uuid"] == d.uuid and pbd["currently-attached"] == "true"
        assert f"SCSIid: {big}" in pbd["device-config"]
        assert xe(d, "pbd-unplug", f"uuid={pbd['uuid']}").returncode == 0
        assert records(xe(d, "pbd-list", f"uuid={pbd['uuid']}", "params=currently-attached").stdout) == [
            {"currently-attached": "false"}]
        assert xe(d, "pbd-plug", f"uuid={pbd['uuid']}").returncode == 0
        assert d.call("GET", f"/pbds/{pbd['uuid']}")["currently_attached"]

        refused = xe(d, "host-param-set", f"uuid={d.uuid}", "multipathing=false")
        assert refused.returncode == 1 and refused.stderr.startswith("Error code: HOST_NOT_IN_MAINTENANCE_MODE")
        assert xe(d, "host-param-get", f"uuid={d.uuid}", "param-name=multipathing").stdout == "true\n"
        assert xe(d, "host-disable", f"uuid={d.uuid}").returncode == 0
        assert records(xe(d, "host-list", "params=enabled").stdout) == [{"enabled": "false"}]
        assert xe(d, "host-enable", f"uuid={d.uuid}").returncode == 0
        assert xe(d, "host-param-get", f"uuid={d.uuid}", "param-name=other-config",
                  "param-key=multipathhandle").stdout == "dmp\n"
        bad = xe(d, "sr-list", "colour=blue")
        assert bad.returncode == 1 and "unknown filter colour=" in bad.stderr


def test_maintenance_multipathing_and_alerts_from_the_command_line() -> None:
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", "mem:16MiB") as array, serve_daemon("--name", "cli-pool") as d:
        target = ",".join(array.portals)
        luns = json.loads(sanpath(d, "sr", "probe", "--target", target, "--iqn", IQN, "--format", "json").stdout)
        scsi_id = luns["luns"][0]["SCSIid"]
        assert sanpath(d, "sr", "create", "--name", "s", "--target", target, "--iqn", IQN,
                       "--scsi-id", scsi_id).returncode == 0

        follow = subprocess.Popen([sys.executable, "-m", "sanpath", "alerts", "--follow", "--format", "json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "SANPATH_API": f"unix:{d.api}"})
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        try:
            refused = sanpath(d, "host", "set-multipathing", "off")
            assert refused.returncode == 1 and "HOST_NOT_IN_MAINTENANCE_MODE" in refused.stderr
            assert "maintenance mode" in refused.stderr and "what to do:" in refused.stderr
            entered = sanpath(d, "host", "maintenance", "enter", "--timeout", "10")
            assert entered.returncode == 0, entered.stderr
            table = sanpath(d, "host", "list").stdout.splitlines()
            assert table[0].split()[3:5] == ["ENABLED", "MAINTENANCE"] and table[1].split()[3:5] == ["false", "true"]
            changed = sanpath(d, "host", "set-multipathing", "off", "--format", "json")
            assert changed.returncode == 0, changed.stderr
            assert json.loads(changed.stdout)["multipathing"] is False
            assert sanpath(d, "host", "maintenance", "exit").returncode == 0
            [pbd] = d.call("GET", "/pbds")
            assert pbd["other_config"][f"mpath-{scsi_id}"] == "[1, 1]"

            rolled = sanpath(d, "pool", "set-multipathing", "on")
            assert rolled.returncode == 0, rolled.stderr
            assert rolled.stderr.splitlines() == [f"cli-pool: {s}" for s in (
                "maintenance-enter", "set-multipathing", "maintenance-exit", "done")]
            assert d.call("GET", f"/pbds/{pbd['uuid']}")["other_config"][f"mpath-{scsi_id}"] == "[2, 2]"

            [pid] = datapath_pids(d.run_dir)
            os.kill(pid, signal.SIGKILL)
            wait_until_sync(lambda: any("PBD_DATAPATH_RESTARTED" in line for line in lines),
                            "sanpath alerts --follow to print the restart")
            alert = json.loads(next(line for line in lines if "PBD_DATAPATH_RESTARTED" in line))
            assert alert["obj_uuid"] == pbd["uuid"] and alert["priority"] == 3
        finally:
            follow.terminate()
            follow.wait(10)
        listed = json.loads(sanpath(d, "alerts", "--format", "json").stdout)
        assert [m["name"] for m in listed] == ["PBD_DATAPATH_RESTARTED"]
