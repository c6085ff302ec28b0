"""The tgtd harness (sanpath.testing.tgtd): a private tgtd that libiscsi's tools can see, log in to
(with and without CHAP), and that leaves nothing behind."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from sanpath.testing import tgtd as tgtd_module
from sanpath.testing.tgtd import ChapAccount, TgtdChap, TgtdUnavailableError, run_tgtd
from tests.helpers.gates import require_peer

SIZE = 16 * 1024 * 1024
PACKAGES = "tgt, libiscsi-bin"


def require_tgtd(*tools: str) -> None:
    require_peer("tgtd", "tgtadm", *tools, package=PACKAGES)
    if os.geteuid() != 0:
        message = "tgtd needs root"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture
def backing_file(tmp_path: Path) -> str:
    path = tmp_path / "lun1.img"
    with open(path, "wb") as f:
        f.truncate(SIZE)
    return str(path)


def test_iscsi_ls_sees_target_and_lun1(backing_file: str) -> None:
    require_tgtd("iscsi-ls")
    with run_tgtd(backing_file) as t:
        out = run("iscsi-ls", "-s", f"iscsi://{t.portal}").stdout
    assert f"Target:{t.iqn} Portal:{t.portal},1" in out, out
    luns = dict(re.findall(r"Lun:(\d+)\s+Type:(\S+)", out))
    assert luns == {"0": "STORAGE_ARRAY_CONTROLLER", "1": "DIRECT_ACCESS"}, out


def test_readcapacity16_gives_file_size(backing_file: str) -> None:
    require_tgtd("iscsi-readcapacity16")
    with run_tgtd(backing_file) as t:
        out = run("iscsi-readcapacity16", t.url(1)).stdout
    assert re.search(rf"Total size:\s*{SIZE}\b", out), out


def test_one_way_chap_refuses_anonymous_and_admits_account(backing_file: str) -> None:
    require_tgtd("iscsi-readcapacity16")
    chap = TgtdChap(ChapAccount("sanpath-in", "in-secret-0123456789"))
    with run_tgtd(backing_file, chap=chap) as t:
        anonymous = run("iscsi-readcapacity16", t.url(1), check=False)
        admitted = run("iscsi-readcapacity16", t.url(1, credentials=True))
        accounts = t.tgtadm("--mode", "target", "--op", "show")
    assert anonymous.returncode != 0, anonymous.stdout
    assert re.search(rf"Total size:\s*{SIZE}\b", admitted.stdout), admitted.stdout
    assert "sanpath-in" in accounts


def test_mutual_chap_binds_outgoing_account(backing_file: str) -> None:
    require_tgtd()
    chap = TgtdChap(ChapAccount("sanpath-in", "in-secret-0123456789"),
                    ChapAccount("sanpath-out", "out-secret-0123456789"))
    with run_tgtd(backing_file, chap=chap) as t:
        shown = t.tgtadm("--mode", "target", "--op", "show")
    account_info = shown.split("Account information:", 1)[1]
    assert "sanpath-in" in account_info
    assert re.search(r"sanpath-out\s*\(outgoing\)", account_info), account_info


def test_exit_leaves_nothing_behind_even_on_error(backing_file: str) -> None:
    require_tgtd()
    with pytest.raises(KeyError), run_tgtd(backing_file) as t:
        raise KeyError("the body failed")
    assert t.process.poll() is not None
    assert not os.path.exists(t.log_path)
    assert not os.path.exists(f"/var/run/tgtd/socket.{t.control_port}")
    assert not os.path.exists(f"/var/run/tgtd/socket.{t.control_port}.lock")
    host, port = t.portal.rsplit(":", 1)
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
        pass


def test_busy_port_is_a_clear_error(backing_file: str) -> None:
    require_tgtd()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(tgtd_module.TgtdPortalBusyError, match=f"127.0.0.1:{port}"), \
                run_tgtd(backing_file, port=port):
            pass


def test_not_root_is_a_clear_error(backing_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tgtd_module.shutil, "which", lambda cmd: f"/usr/sbin/{cmd}")
    monkeypatch.setattr(tgtd_module.os, "geteuid", lambda: 1000)
    with pytest.raises(TgtdUnavailableError, match="needs root"), run_tgtd(backing_file):
        pass


def test_missing_tgtd_is_a_clear_error(backing_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tgtd_module.shutil, "which", lambda cmd: None)
    with pytest.raises(TgtdUnavailableError, match="Debian package tgt"), run_tgtd(backing_file):
        pass
