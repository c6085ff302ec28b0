"""libiscsi's command-line tools against the sanpath target: discovery, INQUIRY, READ CAPACITY 16."""

from __future__ import annotations

import re
import subprocess

from sanpath.target.spawn import RunningTarget
from tests.helpers.gates import require_peer


def run(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def run_bytes(*args: str) -> bytes:
    """iscsi-inq prints binary designators as raw bytes."""
    proc = subprocess.run(args, capture_output=True, timeout=60)
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}: {proc.stdout!r}{proc.stderr!r}"
    return proc.stdout


def test_iscsi_ls_lists_target_portals_and_luns(target_process: RunningTarget) -> None:
    require_peer("iscsi-ls", package="libiscsi-bin")
    out = run("iscsi-ls", "-s", f"iscsi://{target_process.portals[0]}")
    assert f"Target:{target_process.iqn}" in out
    for portal in target_process.portals:
        assert f"Portal:{portal},1" in out
    luns = re.findall(r"Lun:(\d+)\s+Type:(\S+).*?\(Size:(\S+)\)", out)
    # iscsi-ls logs in through every portal it discovered and lists the LUNs seen there
    assert [(n, t) for n, t, _ in luns] == [("0", "DIRECT_ACCESS"), ("1", "DIRECT_ACCESS")] * 2, out


def test_iscsi_inq_standard_and_device_identification(target_process: RunningTarget) -> None:
    require_peer("iscsi-inq", package="libiscsi-bin")
    out = run("iscsi-inq", target_process.url(0))
    assert "Peripheral Device Type:DIRECT_ACCESS" in out or "DIRECT_ACCESS" in out, out
    assert "SANPATH" in out
    vpd = run_bytes("iscsi-inq", "-e", "1", "-c", "131", target_process.url(0))  # -c takes decimal: 0x83
    assert b"Page Code:(0x83) DEVICE_IDENTIFICATION" in vpd, vpd
    assert b"Association:(0) LOGICAL_UNIT\nDesignator Type:(3) NAA" in vpd, vpd
    assert b"Designator Type:(4) RELATIVE_TARGET_PORT" in vpd
    assert b"Designator Type:(5) TARGET_PORT_GROUP" in vpd
    assert f"Designator:[{target_process.iqn},t,0x0001]".encode() in vpd
    naa = vpd.split(b"Designator Type:(3) NAA\n", 1)[1]
    assert naa.startswith(b"Designator:[") and len(naa) > len(b"Designator:[]\n")
    # the same LUN through the second portal has the same identity
    vpd2 = run_bytes("iscsi-inq", "-e", "1", "-c", "131", target_process.url(0, portal=1))
    assert vpd2.split(b"Designator Type:(3) NAA\n", 1)[1] == naa
    # and the other LUN has another one
    vpd3 = run_bytes("iscsi-inq", "-e", "1", "-c", "131", target_process.url(1))
    assert vpd3.split(b"Designator Type:(3) NAA\n", 1)[1] != naa


def test_iscsi_readcapacity16_reports_size(target_process: RunningTarget) -> None:
    require_peer("iscsi-readcapacity16", package="libiscsi-bin")
    out = run("iscsi-readcapacity16", target_process.url(0))
    assert re.search(r"Total size:\s*67108864", out), out
    out1 = run("iscsi-readcapacity16", target_process.url(1))
    assert re.search(r"Total size:\s*16777216", out1), out1
