"""``sanpath lab``: up in one process, status/pull/restore/shape/exec/down from others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sanpath.cli.main import cli
from sanpath.lab import netns
from tests.helpers.gates import require_lab


def sanpath(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "sanpath", "lab", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "SANPATH_LAB_DIR": str(tmp_path)})
    if check:
        assert proc.returncode == 0, f"sanpath lab {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


def test_lab_commands_across_processes(tmp_path: Path) -> None:
    require_lab()
    name = "clitest"
    up = sanpath(tmp_path, "up", "--name", name, "--subnets", "1", "--shape", "1gbit", "--format", "json")
    try:
        built = json.loads(up.stdout)
        assert [r["link"] for r in built["links"]] == ["host-mgmt", "host-s1", "ctlA-s1", "ctlB-s1"]
        assert all(r["state"] == "UP" for r in built["links"])
        again = sanpath(tmp_path, "up", "--name", name, check=False)
        assert again.returncode == 1 and "already up" in again.stderr

        sanpath(tmp_path, "pull", "--name", name, "ctlB-s1")
        sanpath(tmp_path, "shape", "--name", name, "host-s1", "100mbit")
        st = json.loads(sanpath(tmp_path, "status", "--format", "json").stdout)
        assert [x["name"] for x in st] == [name]
        rows = {r["link"]: r for r in st[0]["links"]}
        assert rows["ctlB-s1"]["pulled"] == "switch"
        assert rows["host-s1"]["shaped"]["rate"] == "100mbit"
        assert "pulled (switch)" in sanpath(tmp_path, "status", "--name", name).stdout

        sanpath(tmp_path, "restore", "--name", name, "ctlB-s1")
        sanpath(tmp_path, "unshape", "--name", name, "host-s1")
        out = sanpath(tmp_path, "exec", "--name", name, "host", "--", "ip", "-br", "address").stdout
        assert "198.18.1.10/24" in out and "198.18.0.10/24" in out

        bad = sanpath(tmp_path, "pull", "--name", name, "host-s9", check=False)
        assert bad.returncode == 2 and "no link 'host-s9'" in bad.stderr
    finally:
        down = sanpath(tmp_path, "down", "--name", name, check=False)
    assert down.returncode == 0, down.stderr
    assert not any(n.startswith(f"sanpath-{built['id']}-") for n in netns.list_netns())
    assert not (tmp_path / f"{name}.json").exists()
    assert sanpath(tmp_path, "status").stdout.strip() == "no lab is up"
    missing = sanpath(tmp_path, "down", "--name", name, check=False)
    assert missing.returncode == 2 and "no lab named" in missing.stderr


@pytest.mark.parametrize("command", [["up"], ["down"], ["pull", "host-s1"], ["status"]])
def test_not_root_is_a_clear_error(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(cli, ["lab", *command])
    assert result.exit_code == 2
    assert "needs root" in result.output
