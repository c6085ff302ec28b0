"""The namespace lab end to end: the reference topology, a sanpath target in the array namespace, the
initiator (sanpath discover, libiscsi's iscsi-ls) in the host namespace, cable pulls, and teardown.

Needs root and iproute2: skips locally without them, fails under CI=true.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from sanpath.lab import Lab, NetnsError, Topology, netns
from sanpath.target.spawn import serve_target
from tests.helpers.gates import require_lab, require_peer
from tests.helpers.lab import running_lab

IQN = "iqn.2026-11.org.sanpath.test:lab-array"
INITIATOR = "iqn.2026-11.org.sanpath.test:lab-host"


def wait_reachable(lab: Lab, address: str, timeout: float = 5.0) -> bool:
    """A restored cable needs a moment: the carrier settles and the host re-resolves the neighbour."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.reachable("host", address, timeout=0.5):
            return True
    return False


def assert_gone(lab: Lab) -> None:
    assert lab.leftovers() == []
    assert not Path(lab.state_path).exists()
    root_links = {d["ifname"] for d in json.loads(netns.ip(None, "-j", "link", "show"))}
    names = {x.name for x in lab.topology.links} | {x.port for x in lab.topology.links}
    assert not root_links & names, "a lab interface leaked into the root namespace"


def test_target_in_array_initiator_in_host_cable_pull_and_restore(tmp_path: Path) -> None:
    require_lab()
    require_peer("iscsi-ls", package="libiscsi-bin")
    with running_lab(subnets=2, state_dir=str(tmp_path)) as lab:
        topo = lab.topology
        portals = [p for _, p in topo.portals()]
        args = ["--iqn", IQN, *(a for p in portals for a in ("--portal", p)), "--lun", "mem:64MiB"]
        with serve_target(*args, prefix=lab.prefix("array")) as target:
            assert sorted(target.portals) == sorted(portals)
            a1, b1, a2 = topo.controller_address("A", 1), topo.controller_address("B", 1), \
                topo.controller_address("A", 2)

            # SendTargets from the host namespace names every portal of the array
            out = lab.exec_in("host", [sys.executable, "-m", "sanpath", "discover", "--initiator-name", INITIATOR,
                                       "--format", "json", a1]).stdout
            listing = json.loads(out)
            assert listing["errors"] == []
            assert sorted(f"{r['address']}:{r['port']}" for r in listing["targets"]) == sorted(portals), out
            assert {r["iqn"] for r in listing["targets"]} == {IQN}

            # libiscsi logs in through every portal it discovered and sees the LUN behind each
            ls = lab.exec_in("host", ["iscsi-ls", "-i", INITIATOR, "-s", f"iscsi://{a1}"]).stdout
            assert f"Target:{IQN}" in ls, ls
            for p in portals:
                assert f"Portal:{p}," in ls, ls
            assert ls.count("Lun:0") == len(portals), ls

            # pull controller A's cable on subnet 1: exactly that portal goes dark
            lab.pull("ctlA-s1")
            assert lab.status()["links"][2]["pulled"] == "switch"
            assert not lab.reachable("host", a1, timeout=0.5)
            assert lab.reachable("host", b1) and lab.reachable("host", a2)
            # the host's NIC is fine: a controller cable was pulled, not the host's
            assert netns.link_show(lab.ns("host"), "host-s1")["operstate"] == "UP"
            lab.restore("ctlA-s1")
            assert wait_reachable(lab, a1)

            # the host's own cable on subnet 2, pulled at the switch: its NIC loses carrier
            lab.pull("host-s2")
            deadline = time.monotonic() + 3
            while "NO-CARRIER" not in netns.link_show(lab.ns("host"), "host-s2")["flags"]:
                assert time.monotonic() < deadline, "host-s2 kept its carrier after its cable was pulled"
                time.sleep(0.05)
            assert not lab.reachable("host", a2, timeout=0.5)
            assert lab.reachable("host", a1)
            lab.restore("host-s2")
            assert wait_reachable(lab, a2)

            # the NIC end: an administrator downs host-s1; the subnet is unreachable at once
            lab.pull("host-s1", end="nic")
            assert not lab.reachable("host", b1, timeout=0.5)
            lab.restore("host-s1")
            assert wait_reachable(lab, b1)
            # and a controller NIC downed and restored gets its source route back
            lab.pull("ctlB-s1", end="nic")
            assert not lab.reachable("host", b1, timeout=0.5)
            lab.restore("ctlB-s1")
            assert wait_reachable(lab, b1)
    assert_gone(lab)


def test_teardown_on_error_stops_processes_inside_and_removes_everything(tmp_path: Path) -> None:
    require_lab()
    with pytest.raises(RuntimeError, match="boom"), running_lab(subnets=1, state_dir=str(tmp_path)) as lab:
        lab.popen_in("array", ["sleep", "60"])
        # a process the lab did not start itself (orphaned into the namespace) is stopped too
        lab.exec_in("host", ["sh", "-c", "sleep 60 >/dev/null 2>&1 &"])
        assert netns.netns_pids(lab.ns("host"))
        assert Path(lab.state_path).exists()
        raise RuntimeError("boom")
    assert_gone(lab)


def test_down_from_another_lab_object_removes_what_up_made(tmp_path: Path) -> None:
    require_lab()
    path = str(tmp_path / "x.json")
    lab = Lab(topology=Topology(subnets=1, controllers=1), state_path=path).up()
    try:
        with pytest.raises(NetnsError, match="already up"):
            Lab(lab.name, state_path=path).up()
        again = Lab.load(lab.name, state_path=path)
        assert again.id == lab.id and again.topology == lab.topology
        again.pull("ctlA-s1")
        assert Lab.load(lab.name, state_path=path).pulled == {"ctlA-s1": "switch"}
        again.down()
        assert_gone(lab)
    finally:
        if lab.leftovers():
            lab.down()


def test_ctrl_c_while_building_removes_what_was_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_lab()

    def interrupted(self: Lab, timeout: float = 5.0) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Lab, "wait_links", interrupted)
    lab = Lab(topology=Topology(subnets=1), state_path=str(tmp_path / "lab.json"))
    with pytest.raises(KeyboardInterrupt):
        lab.up()
    assert_gone(lab)
