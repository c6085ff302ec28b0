"""libiscsi's SCSI/iSCSI conformance suite (iscsi-test-cu) against a sanpath file LUN: zero failures,
with the MultipathIO suite given a second URL through the second portal of the same LUN."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sanpath.target.spawn import serve_target
from tests.helpers.gates import require_peer

IQN = "iqn.2026-11.org.sanpath.test:conformance"
_SUMMARY = re.compile(r"^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", re.MULTILINE)


def run_suite(tmp_path: Path, test: str) -> tuple[int, int, int, int, str]:
    """(total, ran, passed, failed, output) of ``iscsi-test-cu --dataloss --test=TEST``."""
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", f"{tmp_path / 'lun.img'}:128MiB") as t:
        proc = subprocess.run(["iscsi-test-cu", "--dataloss", f"--test={test}", "-n", t.url(0), t.url(0, 1)],
                              capture_output=True, text=True, timeout=600)
        assert t.process.poll() is None, f"the target died during the suite:\n{t.log()[-3000:]}"
    out = proc.stdout + proc.stderr
    m = _SUMMARY.search(out)
    assert m, f"no summary in iscsi-test-cu output:\n{out[-3000:]}"
    total, ran, passed, failed, _ = (int(x) for x in m.groups())
    (tmp_path / "iscsi-test-cu.txt").write_text(out)
    return total, ran, passed, failed, out


def failures(out: str) -> list[str]:
    return re.findall(r"^Suite (\S+), Test (\S+) had failures:", out, re.MULTILINE)


def test_iscsi_test_cu_all_passes(tmp_path: Path) -> None:
    require_peer("iscsi-test-cu", package="libiscsi-bin")
    total, ran, passed, failed, out = run_suite(tmp_path, "ALL")
    print(f"iscsi-test-cu --dataloss --test=ALL: tests {total} ran {ran} passed {passed} failed {failed}")
    assert failed == 0, f"failed: {failures(out)}"
    assert ran == total and total >= 200


def test_multipath_io_suite_runs_over_two_portals(tmp_path: Path) -> None:
    require_peer("iscsi-test-cu", package="libiscsi-bin")
    total, ran, passed, failed, out = run_suite(tmp_path, "ALL.MultipathIO")
    assert failed == 0, f"failed: {failures(out)}"
    assert total == ran == passed == 4
    assert "multipath" not in out.lower() or "[SKIPPED]" not in out, "MultipathIO tests were skipped:\n" + out
