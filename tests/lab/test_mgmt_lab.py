"""The SR workflow end to end in the namespace lab (issue 15's acceptance): the host daemon runs in the
lab's host namespace (a management NIC and two storage NICs on two subnets), its storage PIFs are marked,
and against tgtd (portal mode) and the sanpath array in each profile (portal; multi-iqn through ``*``;
alua; rdac) it walks the probe stages, creates the SR, and the PBD plugs with ``mpath-<SCSIid>`` =
``[4, 4]``: each storage NIC to both controllers' portals on its subnet. qemu-img then writes a random
image through the SR's NBD export, libiscsi (qemu-img's iscsi:// driver) reads it back through one path
from the host namespace, and the checksums are equal.

Needs root and iproute2 (fails under CI=true without them), qemu-img with the iscsi driver, and tgtd for
its case."""

from __future__ import annotations

import hashlib
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sanpath.lab import Lab
from sanpath.target import control as target_control
from sanpath.target.spawn import serve_target
from sanpath.testing.daemon import Daemon, serve_daemon
from sanpath.testing.tgtd import run_tgtd
from sanpath.testing.waiting import wait_until_sync
from tests.helpers.gates import require_lab, require_peer
from tests.helpers.lab import running_lab

IQN = "iqn.2026-12.org.sanpath.test:lab-mgmt"
SIZE = 32 << 20


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab()
    with running_lab(subnets=2, controllers=2, state_dir=str(tmp_path_factory.mktemp("lab"))) as lab:
        yield lab


@pytest.fixture(scope="module")
def daemon(lab: Lab) -> Iterator[Daemon]:
    with serve_daemon("--name", "xs1", prefix=lab.prefix("host")) as d:
        pifs = {p["device"]: p for p in d.call("GET", "/pifs")}
        assert {"host-mgmt", "host-s1", "host-s2"} <= set(pifs), pifs
        assert pifs["host-s1"]["addresses"] == [f"{lab.topology.host_address(1)}/24"]
        d.call("POST", "/pifs/host-mgmt/purpose", {"purpose": "management"})
        for nic in ("host-s1", "host-s2"):
            d.call("POST", f"/pifs/{nic}/purpose", {"purpose": "storage"})
        yield d


def controller_portals(lab: Lab) -> list[str]:
    return [p for _, p in lab.topology.portals()]


def walk_the_workflow(lab: Lab, d: Daemon, targets: str, iqn: str, expect_iqns: set[str], read_lun: int,
                      tmp_path: Path) -> None:
    """Probe, create, check the PBD, write through the export, read back through controller A's portal on
    subnet 1 (with the IQN discovery found there)."""
    stage1 = d.call("POST", "/sr/probe", {"target": targets})
    assert stage1["stage"] == "iqns"
    a1 = lab.topology.controller_address("A", 1)
    read_iqn = next(r["iqn"] for r in stage1["iqns"] if r["address"] == a1)
    root = ET.fromstring(stage1["xml"])
    assert {t.findtext("TargetIQN") for t in root.findall("TGT")} == expect_iqns | {"*"}
    assert root.findall("TGT")[-1].findtext("IPAddress") == targets
    luns = d.call("POST", "/sr/probe", {"target": targets, "targetIQN": iqn})["luns"]
    [lun] = [x for x in luns if x["size"] == SIZE]
    sr = d.call("POST", "/srs", {"name_label": f"lab {iqn}", "target": targets, "targetIQN": iqn,
                                 "SCSIid": lun["SCSIid"]})
    [pbd] = sr["pbds"]
    try:
        assert pbd["currently_attached"], pbd
        oc = pbd["other_config"]
        assert oc[f"mpath-{lun['SCSIid']}"] == "[4, 4]", oc
        assert oc["iscsi_sessions"] == "4"
        sources = {p["name"].split("->")[0] for p in oc["paths"]}
        assert sources == {lab.topology.host_address(1), lab.topology.host_address(2)}
        assert not any(p["routed"] for p in oc["paths"])
        socket_path = pbd["nbd"].split("socket=", 1)[1]
        image = tmp_path / "random.img"
        image.write_bytes(os.urandom(SIZE))
        subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(image), pbd["nbd"]],
                       check=True, timeout=120, capture_output=True)
        assert os.path.exists(socket_path)
        back = tmp_path / "back.img"
        url = f"iscsi://{a1}:3260/{read_iqn}/{read_lun}"
        lab.exec_in("host", ["qemu-img", "convert", "-f", "raw", "-O", "raw", url, str(back)], timeout=120)
        assert hashlib.sha256(back.read_bytes()).hexdigest() == hashlib.sha256(image.read_bytes()).hexdigest()
    finally:
        d.call("POST", f"/pbds/{pbd['uuid']}/unplug", {"force": True})
        d.call("POST", f"/srs/{sr['uuid']}/forget")


def test_tgtd_portal_mode(lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    require_peer("tgtd", "tgtadm", package="tgt")
    require_peer("qemu-img", package="qemu-utils")
    backing = tmp_path / "lun.img"
    with open(backing, "wb") as f:
        f.truncate(SIZE)
    with run_tgtd(str(backing), iqn=IQN, portals=controller_portals(lab), prefix=lab.prefix("array")) as t:
        # tgtd's SendTargets names only the portal asked: the SR is given every address, as the seed says
        targets = ",".join(p.split(":")[0] for p in t.portals)
        walk_the_workflow(lab, daemon, targets, IQN, {IQN}, 1, tmp_path)


PROFILES: dict[str, dict[str, Any]] = {
    "portal": {"args": [], "iqn": IQN},
    "multi-iqn": {"args": ["--profile", "multi-iqn"], "iqn": "*"},
    "alua": {"args": ["--profile", "alua", "--non-owner-state", "standby"], "iqn": IQN},
    "rdac": {"args": ["--profile", "rdac"], "iqn": IQN},
}


@pytest.mark.parametrize("profile", list(PROFILES))
def test_sanpath_array(lab: Lab, daemon: Daemon, tmp_path: Path, profile: str) -> None:
    require_peer("qemu-img", package="qemu-utils")
    case = PROFILES[profile]
    portals = controller_portals(lab)
    args = ["--iqn", IQN, *case["args"], *(a for p in portals for a in ("--portal", p)),
            "--lun", f"{tmp_path / 'lun.img'}:{SIZE}"]
    with serve_target(*args, prefix=lab.prefix("array")) as t:
        iqns = set(t.iqns)
        # a multi-IQN array needs every address entered; the others answer with every portal on one
        targets = ",".join(p.split(":")[0] for p in t.portals) if profile == "multi-iqn" else portals[0].split(":")[0]
        walk_the_workflow(lab, daemon, targets, case["iqn"], iqns, 0, tmp_path)


def test_a_portal_black_holed_before_plug_comes_back_by_itself(lab: Lab, daemon: Daemon) -> None:
    """Controller B's portal on subnet 2 accepts TCP and never answers while the SR is created: the plug
    completes with [3, 4]; once it answers again the path logs in by itself and the count is [4, 4]."""
    portals = controller_portals(lab)
    with serve_target("--iqn", IQN, *(a for p in portals for a in ("--portal", p)), "--lun", f"mem:{SIZE}",
                      prefix=lab.prefix("array")) as t:
        dead = f"{lab.topology.controller_address('B', 2)}:3260"
        fault = target_control.call(t.control, {"op": "fault", "kind": "blackhole", "portal": dead})["fault"]
        target = portals[0].split(":")[0]
        [lun] = daemon.call("POST", "/sr/probe", {"target": target, "targetIQN": IQN})["luns"]
        sr = daemon.call("POST", "/srs", {"name_label": "bh", "target": target, "targetIQN": IQN,
                                          "SCSIid": lun["SCSIid"]})
        [pbd] = sr["pbds"]
        key = f"mpath-{lun['SCSIid']}"
        try:
            assert pbd["currently_attached"] and pbd["other_config"][key] == "[3, 4]", pbd
            missing = [p["name"] for p in pbd["other_config"]["paths"] if not p["logged_in"]]
            assert missing == [f"{lab.topology.host_address(2)}->{dead}/{IQN}"]
            target_control.call(t.control, {"op": "restore", "id": fault["id"]})
            wait_until_sync(lambda: daemon.call("GET", f"/pbds/{pbd['uuid']}")["other_config"][key] == "[4, 4]",
                            "the restored portal logged in by itself")
        finally:
            daemon.call("POST", f"/pbds/{pbd['uuid']}/unplug", {"force": True})
            daemon.call("POST", f"/srs/{sr['uuid']}/forget")
