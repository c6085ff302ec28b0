"""``sanpath doctor`` as a command: bad options exit 3 with what to do; with ``--links`` (a recorded
``ip -details -json address show``) against a target on loopback it prints the findings grouped by
severity with the fix under each, exits with the worst severity, and writes the facts it gathered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sanpath.mgmt.advisor.facts import Facts
from sanpath.target.spawn import RunningTarget

from ...conftest import IQN

DUMP = Path(__file__).with_name("data") / "ip-addr-bond-team.json"


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sanpath", "doctor", *args], capture_output=True, text=True,
                          timeout=120)


def test_standalone_options_without_a_target_are_refused() -> None:
    r = doctor("--iqn", IQN)
    assert r.returncode == 3 and "VALUE_INVALID" in r.stderr and "--iqn go with --target" in r.stderr
    assert "what to do: Add --target" in r.stderr
    r = doctor("--target", "127.0.0.1", "--links", str(DUMP))
    assert r.returncode == 3 and "--links needs --management" in r.stderr


def test_recorded_links_against_a_live_target(target_process: RunningTarget, tmp_path: Path) -> None:
    target = ",".join(target_process.portals)
    facts_file = tmp_path / "facts.json"
    r = doctor("--target", target, "--iqn", IQN, "--links", str(DUMP), "--management", "eth0",
               "--facts", str(facts_file))
    assert r.returncode == 1, r.stdout + r.stderr  # warnings: the bond and the team
    text = r.stdout
    assert text.index("Warnings (2)") < text.index("Notes (1)")
    assert "[bonding]" in text and "      fix: Take the NICs out of the bond" in text
    assert text.rstrip().endswith("0 error(s), 2 warning(s), 1 note(s): warning")
    facts = Facts.from_json(json.loads(facts_file.read_text()))
    [array] = facts.arrays
    assert {p.portal for p in array.portals} == set(target_process.portals) and array.luns
    assert facts.hosts[0].routes == ()  # recorded links: no route looked up here

    r = doctor("--target", target, "--iqn", IQN, "--links", str(DUMP), "--management", "eth0",
               "--format", "json")
    report = json.loads(r.stdout)
    assert r.returncode == 1 and report["status"] == "warning" and report["counts"]["warning"] == 2
