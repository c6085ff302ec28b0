"""libiscsi's SCSI/iSCSI conformance suite (iscsi-test-cu) against sanpath file LUNs: every test of the
ALL family runs with zero failures, and the only tests that skip are the sanitize tests (they need
--allow-sanitize) and the removable-medium tests (sanpath's LUs are not removable).

The suite runs against a LUN with 4 KiB physical blocks under 512-byte logical blocks (LOGICAL
BLOCKS PER PHYSICAL BLOCK EXPONENT 3), so that the unaligned UNMAP tests run (they skip when LBPPB < 2),
with the MultipathIO and Reserve6 suites given a second URL through the second portal. Two tests run
against LUNs of their own, each a run of one test:
- GetLBAStatus.UnmapSingle, against a LUN whose physical block is its logical block: it asks GET LBA
  STATUS for LBA i+1 and wants the first descriptor to start at i+LBPPB, which only holds for LBPPB 1
  (libiscsi 1.19 test_get_lba_status_unmap_single.c; SBC-3 starts the first descriptor at the
  requested LBA);
- ReadOnly.ReadOnlySBC, against a read-only LUN (it skips on a writable one).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sanpath.target.spawn import RunningTarget, serve_target
from tests.helpers.gates import require_peer

IQN = "iqn.2026-11.org.sanpath.test:conformance"
_SUMMARY = re.compile(r"^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", re.MULTILINE)

# the only skips allowed, and why they cannot run here
SANITIZE = ("BlockErase", "BlockEraseReserved", "CryptoErase", "CryptoEraseReserved", "ExitFailureMode",
            "InvalidServiceAction", "Overwrite", "OverwriteReserved", "Readonly", "Reservations", "Reset")
REMOVABLE = ("Simple", "Eject", "ITNexusLoss", "Logout", "WarmReset", "ColdReset", "LUNReset", "2ITNexuses")
ALLOWED_SKIPS: dict[str, str] = {
    **{f"Sanitize.{t}": "needs --allow-sanitize" for t in SANITIZE},
    **{f"PreventAllow.{t}": "the medium is not removable" for t in REMOVABLE},
    "StartStopUnit.Simple": "the medium is not removable",
}
LUN_PLAIN, LUN_READ_ONLY = 1, 2
ELSEWHERE = {"GetLBAStatus.UnmapSingle": LUN_PLAIN, "ReadOnly.ReadOnlySBC": LUN_READ_ONLY}


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """One ``iscsi-test-cu`` run: its summary line, the tests that failed and those that skipped."""

    total: int
    ran: int
    passed: int
    failed: int
    tests: tuple[str, ...]  # SUITE.TEST of each test that ran
    failures: tuple[str, ...]
    skips: dict[str, str]  # SUITE.TEST -> the reason it printed
    output: str

    @property
    def summary(self) -> str:
        return f"tests {self.total} ran {self.ran} passed {self.passed} failed {self.failed}"


def read_results(out: str) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """The tests that ran, those that failed, and SUITE.TEST -> reason for each that printed
    ``[SKIPPED]``, from verbose output: a test's output follows its ``  Test: NAME ...`` line under its
    ``Suite: NAME`` line, and ends with ``passed`` or ``FAILED`` (alone, or at the end of that line)."""
    tests: list[str] = []
    failed: list[str] = []
    skips: dict[str, str] = {}
    suite = ""
    for line in out.splitlines():
        if m := re.match(r"^Suite: (\S+)", line):
            suite = m.group(1)
            continue
        if m := re.match(r"^\s+Test: (\S+) \.\.\.(.*)$", line):
            tests.append(f"{suite}.{m.group(1)}")
            line = m.group(2)
        if not tests:
            continue
        for reason in re.findall(r"\[SKIPPED\]\s*(.*)", line):
            skips.setdefault(tests[-1], reason.strip())
        if line.strip() == "FAILED" and tests[-1] not in failed:
            failed.append(tests[-1])
    return tuple(tests), tuple(failed), skips


def run_suite(tests: str | Path, *urls: str) -> SuiteRun:
    """``iscsi-test-cu --dataloss --test=TESTS`` (a pattern, or a file of patterns one per line)."""
    proc = subprocess.run(["iscsi-test-cu", "--dataloss", f"--test={tests}", "--verbose", *urls],
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    m = _SUMMARY.search(out)
    assert m, f"no summary in iscsi-test-cu output:\n{out[-3000:]}"
    total, ran, passed, failed, _ = (int(x) for x in m.groups())
    tests, failures, skips = read_results(out)
    return SuiteRun(total, ran, passed, failed, tests, failures, skips, out)


def all_tests() -> list[str]:
    """Every test of the ALL family as SUITE.TEST, in the suite's order (``iscsi-test-cu -l``)."""
    out = subprocess.run(["iscsi-test-cu", "-l"], capture_output=True, text=True, timeout=60).stdout
    return [line[len("ALL."):] for line in out.split() if line.startswith("ALL.") and line.count(".") == 2]


@pytest.fixture(scope="module")
def array(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTarget]:
    require_peer("iscsi-test-cu", package="libiscsi-bin")
    d = tmp_path_factory.mktemp("conformance")
    read_only = d / "read-only.img"
    with open(read_only, "wb") as f:
        f.truncate(16 << 20)
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", f"{d / 'lun0.img'}:128MiB,physical_block_size=4KiB",
                      "--lun", f"{d / 'lun1.img'}:16MiB",
                      "--lun", f"{read_only},read_only=true") as t:
        yield t
        assert t.process.poll() is None, f"the target died during the suite:\n{t.log()[-3000:]}"


def test_iscsi_test_cu_all_passes(array: RunningTarget, tmp_path: Path) -> None:
    names = all_tests()
    suites = dict.fromkeys(name.split(".")[0] for name in names)
    patterns = []  # whole suites where possible: a line per test makes a suite (and a login) per test
    for suite in suites:
        tests = [n for n in names if n.startswith(f"{suite}.")]
        kept = [n for n in tests if n not in ELSEWHERE]
        patterns += [f"ALL.{suite}"] if kept == tests else [f"ALL.{n}" for n in kept]
    listing = tmp_path / "tests.txt"
    listing.write_text("\n".join(patterns) + "\n")
    runs = {"LBPPB 8": run_suite(listing, array.url(0), array.url(0, 1))}
    for name, lun in ELSEWHERE.items():
        runs[name] = run_suite(f"ALL.{name}", array.url(lun))
    for label, run in runs.items():
        print(f"iscsi-test-cu --dataloss ({label}): {run.summary}; skipped: {sorted(run.skips) or 'none'}")
        (tmp_path / f"iscsi-test-cu {label}.txt").write_text(run.output)
        assert run.failed == 0, f"{label}: failed {run.failures}"
        assert run.ran == run.total
    assert sum(run.total for run in runs.values()) == len(names) >= 230
    main = runs["LBPPB 8"]
    assert set(main.skips) <= set(ALLOWED_SKIPS), {t: r for t, r in main.skips.items() if t not in ALLOWED_SKIPS}
    for name in ELSEWHERE:
        assert runs[name].total == 1 and not runs[name].skips, runs[name].output[-2000:]
    assert sorted(main.tests + tuple(ELSEWHERE)) == sorted(names)
    for needs_lbppb in ("WriteSame10.UnmapUnaligned", "WriteSame16.UnmapUnaligned", "WriteSame10.InvalidDataOutSize",
                        "WriteSame16.InvalidDataOutSize", "CompareAndWrite.InvalidDataOutSize"):
        assert needs_lbppb in main.tests and needs_lbppb not in main.skips


def test_multipath_io_suite_runs_over_two_portals(tmp_path: Path) -> None:
    """On a LUN of its own: MultipathIO.CompareAndWrite zeroes blocks 0-255 and then compares blocks 0-256,
    so it needs block 256 to be zero still (libiscsi 1.19 test_multipathio_compareandwrite.c)."""
    require_peer("iscsi-test-cu", package="libiscsi-bin")
    with serve_target("--iqn", IQN, "--portal", "127.0.0.1:0", "--portal", "127.0.0.2:0",
                      "--lun", f"{tmp_path / 'lun.img'}:16MiB") as t:
        run = run_suite("ALL.MultipathIO", t.url(0), t.url(0, 1))
    assert run.failed == 0, f"failed: {run.failures}"
    assert run.total == run.ran == run.passed == 4
    assert not run.skips, run.output
