"""``sanpath demo --lab`` (issues 7 and 18): the whole system demo (host daemon, store, console, the guide's
steps) on the namespace lab with a real cable pull passes, and the lab is always torn down, also when the
demo is stopped with SIGTERM or Ctrl-C part-way.

The end-to-end tests need root and iproute2 (skip locally without them, fail under CI=true); the
argument checks run anywhere.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sanpath.cli.main import cli
from sanpath.errors import ConfigError
from sanpath.lab import netns
from sanpath.workload.demo_lab import check_cable
from tests.helpers.gates import require_lab

NAMESPACE = re.compile(r"\((sanpath-([0-9a-f]+)-array)\)")


def demo_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "sanpath", "demo", "--lab", *args]


def lab_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "SANPATH_LAB_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}


def assert_torn_down(output: str, tmp_path: Path) -> None:
    m = NAMESPACE.search(output)
    assert m, output
    assert not [n for n in netns.list_netns() if n.startswith(f"sanpath-{m.group(2)}-")]
    assert list(tmp_path.iterdir()) == [], "the lab's state file was left behind"


def test_demo_on_the_lab_pulls_a_cable_and_loses_nothing(tmp_path: Path) -> None:
    require_lab()
    proc = subprocess.run(demo_argv("--seconds", "8"), capture_output=True, text=True, timeout=300,
                          env=lab_env(tmp_path))
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-3000:]
    # four portals (A and B on both subnets), discovered from controller A of each subnet
    for portal in ("198.18.1.1:3260", "198.18.1.2:3260", "198.18.2.1:3260", "198.18.2.2:3260"):
        assert f"iqn.2026-11.org.sanpath:demo ({portal})" in out
    # the guide's steps in order, through the host daemon in the host namespace
    steps = [out.index(f"\n{n}. ") for n in range(1, 8)]
    assert steps == sorted(steps), out
    assert "host daemon: host demo-host" in out
    assert "demo-host: 4 of 4 paths active (4 iSCSI sessions)" in out
    # the real cable pull, its alert, the restore and the recovery alert
    assert "ip link set p-host-s1 down" in out
    assert re.search(r"after \d+ ms: .*: 2 of 4 paths active", out), out
    assert "host-s1 plugged back in" in out
    assert re.search(r"after \d+ ms: .*: recovered, 4 of 4 paths active", out), out
    # the summary comes last, after the teardown
    assert out.index("torn down") < out.index("summary: ")
    assert "0 errors, 0 verify failures" in out
    assert "failover seen, failback seen" in out
    assert out.rstrip().endswith("PASS: nothing lost")
    assert_torn_down(out, tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_demo_tears_the_lab_down(sig: signal.Signals, tmp_path: Path) -> None:
    require_lab()
    proc = subprocess.Popen(demo_argv("--seconds", "20"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=lab_env(tmp_path))
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:  # stop it mid-load, with the daemon and the data path running
            seen.append(line)
            if line.startswith(">>> lab: `ip link set"):  # the cable is pulled
                break
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = "".join(seen) + rest
    assert proc.returncode == (128 + signal.SIGTERM if sig == signal.SIGTERM else 130), out + err
    assert "torn down" in out or "the lab is down" in err, out + err
    assert "PASS" not in out
    assert_torn_down(out, tmp_path)
    # the host side, stopped by the driver, still cleaned up its daemon's store and run directory
    store = re.search(r"SQLite store in (\S+)", out)
    assert store and not os.path.exists(store.group(1)), out


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(cli, ["demo", "--lab"])
    assert result.exit_code == 2
    assert "needs root" in result.output


@pytest.mark.parametrize("cable", ["host-mgmt", "host-s9", "ctlC-s1"])
def test_only_a_storage_cable_of_the_lab_can_be_pulled(cable: str) -> None:
    with pytest.raises(ConfigError, match=cable):
        check_cable(cable)
