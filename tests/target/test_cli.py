"""`sanpath target serve`: config errors name the key and exit non-zero; SIGTERM stops cleanly with the
backing file flushed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sanpath.target.spawn import lines_until, serve_target
from sanpath.testing.rawinit import login


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sanpath", "target", "serve", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("toml", "key"), [
    ('[[target]]\niqn = "iqn.2026-11.org.x:a"\nportal_group = []\nbogus = 1\n', "target[0].bogus"),
    ('[[target]]\niqn = "not-an-iqn"\nportal_group = []\n', "target[0].iqn"),
    ('[[target]]\niqn = "iqn.2026-11.org.x:a"\n[[target.portal_group]]\ntag = 1\nportals = ["300.1.1.1"]\n',
     "target[0].portal_group[0].portals[0]"),
    ('[[target]]\niqn = "iqn.2026-11.org.x:a"\nportal_group = []\n[[target.lun]]\nid = 0\nmemory = "1000"\n',
     "target[0].lun[0].size"),
    ('[[target]]\niqn = "iqn.2026-11.org.x:a"\nportal_group = []\nchap = { user = "u", secret = "short" }\n',
     "target[0].chap.secret"),
    ("[server]\ncmd_window = 0\n", "server.cmd_window"),
    ("this is not toml", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "array.toml"
    path.write_text(toml)
    proc = serve("--config", str(path))
    assert proc.returncode == 2
    assert key in proc.stderr, proc.stderr


def test_quick_form_errors() -> None:
    proc = serve("--iqn", "iqn.2026-11.org.x:a", "--portal", "127.0.0.1:99999", "--lun", "mem:1MiB")
    assert proc.returncode == 2 and "--portal[0]" in proc.stderr
    proc = serve("--iqn", "iqn.2026-11.org.x:a", "--portal", "127.0.0.1:0", "--lun", "/nonexistent/x.img")
    assert proc.returncode == 2 and "--lun[0]" in proc.stderr and "PATH:SIZE" in proc.stderr
    proc = serve("--iqn", "iqn.2026-11.org.x:a", "--portal", "127.0.0.1:0", "--lun", "mem:1MiB",
                 "--lun", "mem:1MiB,physical_block_size=3KiB")
    assert proc.returncode == 2 and "--lun[1].physical_block_size" in proc.stderr, proc.stderr


def test_config_file_serves_and_sigterm_flushes(tmp_path: Path) -> None:
    img = tmp_path / "lun.img"
    cfg = tmp_path / "array.toml"
    cfg.write_text(f'''
[[target]]
iqn = "iqn.2026-11.org.sanpath.test:cfg"
[[target.portal_group]]
tag = 7
portals = ["127.0.0.1:0"]
[[target.lun]]
id = 3
path = "{img}"
size = "4MiB"
''')
    pattern = bytes(range(256)) * 2

    async def write_block(host: str, port: int) -> None:
        s = await login(host, port, "iqn.2026-11.org.sanpath.test:cfg")
        cdb = bytes([0x2A, 0, 0, 0, 0, 5, 0, 0, 1, 0])  # WRITE(10) LBA 5, 1 block
        status, _, _ = await s.command(cdb, lun=3, write=pattern)
        assert status == 0
        await s.close()

    with serve_target("--config", str(cfg)) as t:
        host, port = t.portals[0].rsplit(":", 1)
        asyncio.run(write_block(host, int(port)))
        assert os.path.getsize(img) == 4 << 20
        t.process.send_signal(signal.SIGTERM)
        assert t.process.wait(timeout=20) == 0
    with open(img, "rb") as f:
        f.seek(5 * 512)
        assert f.read(512) == pattern


def test_serve_target_reports_a_target_that_exits_before_ready(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.img")
    with pytest.raises(RuntimeError, match="exited") as e, serve_target("--iqn", "iqn.2026-11.org.x:a",
                                                                        "--lun", missing):
        pass
    assert "missing.img" in str(e.value)  # the target's own complaint, from its log


def test_waiting_for_the_ready_line_is_bounded() -> None:
    """A child that prints nothing must not block the caller past the deadline."""
    read, write = os.pipe()
    try:
        assert list(lines_until(read, time.monotonic() + 0.2)) == []
    finally:
        os.close(read)
        os.close(write)
