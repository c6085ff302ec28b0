"""The control socket and `sanpath target fault/status` against a `sanpath target serve` process: the
socket is private, a fault shows on the sanpath initiator, status reports counters, restore undoes it."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sanpath.aio import within
from sanpath.errors import ConnectionLost
from sanpath.initiator.device import ScsiDevice
from sanpath.initiator.discovery import discover
from sanpath.initiator.session import Session, SessionConfig
from sanpath.target.control import call
from sanpath.target.spawn import serve_target

IQN = "iqn.2026-11.org.sanpath.test:ctl"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sanpath", "target", *args], capture_output=True, text=True,
                          timeout=60)


async def session(portal: str, iqn: str = IQN) -> ScsiDevice:
    host, port = portal.rsplit(":", 1)
    s = await within(Session.open(SessionConfig(host, int(port), iqn, nop_interval=0, login_timeout=5)), 30)
    return await ScsiDevice(s, 0).open()


def test_fault_and_status_commands(tmp_path: Path) -> None:
    sock = str(tmp_path / "ctl.sock")
    with serve_target("--iqn", IQN, "--profile", "alua", "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", "mem:4MiB", "--control", sock) as t:
        assert t.control == sock
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        async def io_then_fault() -> None:
            dev = await session(t.portals[0])
            await dev.write(0, b"\x33" * 4096)
            proc = await asyncio.to_thread(cli, "fault", "--control", sock, "portal-down", "--portal", t.portals[0])
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.startswith("f1 portal-down active")
            with pytest.raises(ConnectionLost):
                await within(dev.read(0, 512), 30)
            with pytest.raises(ConnectionLost):
                await session(t.portals[0])
            other = await session(t.portals[1])
            assert await other.read(0, 4096) == b"\x33" * 4096
            await other.session.close()
            await dev.session.close()

        asyncio.run(io_then_fault())
        proc = cli("status", "--control", sock, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        st = json.loads(proc.stdout)
        down, up = st["portals"]
        assert not down["listening"] and down["commands"] >= 2 and down["bytes_in"] > 4096
        assert up["listening"] and up["commands"] >= 2
        assert st["arrays"][0]["luns"][0]["states"] == {"A": "active/optimized", "B": "active/non-optimized"}
        assert st["faults"][0]["kind"] == "portal-down"
        text = cli("status", "--control", sock).stdout
        assert "PORTAL" in text and "down" in text and "owner A" in text
        proc = cli("fault", "--control", sock, "restore", "all")
        assert proc.returncode == 0 and "f1" in proc.stdout

        async def back() -> None:
            dev = await session(t.portals[0])
            await dev.read(0, 512)
            await dev.session.close()

        asyncio.run(back())
        # errors a person can act on
        bad = cli("fault", "--control", sock, "blackhole")
        assert bad.returncode == 1 and "needs a portal" in bad.stderr
        bad = cli("fault", "--control", sock, "delay", "--portal", "127.0.0.9:1", "--seconds", "1")
        assert bad.returncode == 1 and "not a portal" in bad.stderr
        assert call(sock, {"op": "nonsense"})["ok"] is False
        assert call(sock, {"op": "move", "lun": 0, "controller": "B"}) == {"ok": True, "moved": True}
    missing = cli("status", "--control", sock)
    assert missing.returncode == 2 and "cannot reach" in missing.stderr


def test_multi_iqn_quick_form_serves_every_iqn(tmp_path: Path) -> None:
    with serve_target("--iqn", IQN, "--profile", "multi-iqn", "--iqn-per", "controller", "--portal", "127.0.0.1:0",
                      "--portal", "127.0.0.2:0", "--lun", "mem:4MiB", "--control", str(tmp_path / "c.sock")) as t:
        assert t.iqns == (f"{IQN}-a", f"{IQN}-b")

        async def check() -> None:
            host, port = t.portals[0].rsplit(":", 1)
            records, errors = await discover([(host, int(port))])
            assert not errors and {r.iqn for r in records} == set(t.iqns)

        asyncio.run(check())


def test_config_file_profiles(tmp_path: Path) -> None:
    cfg = tmp_path / "array.toml"
    cfg.write_text(f'''
[[target]]
iqn = "{IQN}"
profile = "rdac"
owner = "B"
[[target.controller]]
name = "A"
portals = ["127.0.0.1:0"]
[[target.controller]]
name = "B"
portals = ["127.0.0.2:0"]
[[target.lun]]
id = 0
memory = "4MiB"
''')
    with serve_target("--config", str(cfg), "--control", str(tmp_path / "c.sock")) as t:
        st = call(t.control, {"op": "status"})["status"]
        assert st["arrays"][0]["profile"] == "rdac" and st["arrays"][0]["luns"][0]["owner"] == "B"
    cfg.write_text(f'[[target]]\niqn = "{IQN}"\nprofile = "alua"\n[[target.controller]]\nname = "A"\n'
                   'portals = ["127.0.0.1:0"]\n')
    proc = cli("serve", "--config", str(cfg))
    assert proc.returncode == 2 and "target[0].controller" in proc.stderr and "two controllers" in proc.stderr
