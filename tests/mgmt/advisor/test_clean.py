"""The seed's clean topology yields no warning and no error, and its facts survive JSON both ways."""

from __future__ import annotations

import json

from sanpath.mgmt.advisor import RULES, check, render_report, report, worst
from sanpath.mgmt.advisor.facts import Facts
from sanpath.mgmt.advisor.finding import Severity

from .seed import clean


def test_the_clean_topology_has_no_warning_or_error() -> None:
    found = check(clean())
    assert worst(found) == Severity.OK
    assert [f.rule for f in found] == ["portal-mode"]  # the one note: portal mode, good


def test_facts_round_trip_through_json() -> None:
    facts = clean()
    assert Facts.from_json(json.loads(json.dumps(facts.to_json()))) == facts


def test_the_report_is_stable_json_and_text_groups_by_severity() -> None:
    r = report(check(clean()))
    assert list(r) == ["status", "counts", "rules", "findings"]
    assert r["status"] == "ok" and r["counts"] == {"ok": 1, "warning": 0, "error": 0} and r["rules"] == list(RULES)
    [f] = r["findings"]
    assert list(f) == ["rule", "severity", "guide", "host", "subject", "message", "evidence", "fix"]
    assert f["guide"] == {"chapter": 2, "section": "Configuring iSCSI Software Initiator Multipathing"}
    text = render_report(r)
    assert text.startswith("Notes (1)\n  [portal-mode]") and "fix: " in text
    assert text.endswith("0 error(s), 0 warning(s), 1 note(s): ok")
