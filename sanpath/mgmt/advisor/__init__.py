"""The advisor (``sanpath doctor``): the design guide's rules, checked against a live host and pool or,
before anything is set up, against this machine's network and an array.

Facts are gathered apart from the rules (``gather.py`` builds a ``Facts`` from netlink, the store,
discovery and INQUIRY); each rule is a pure function of them, one module per rule, named by its id."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import (
    bonding,
    controller_per_subnet,
    handler,
    management_interface,
    multihome,
    path_count,
    pool_consistency,
    portal_mode,
    separate_subnets,
    timeouts,
    unique_iqn,
    wildcard,
)
from .facts import Facts
from .finding import Finding, Severity

RULES: dict[str, Callable[[Facts], list[Finding]]] = {m.ID: m.check for m in (
    separate_subnets, controller_per_subnet, management_interface, bonding, unique_iqn, portal_mode, wildcard,
    handler, pool_consistency, multihome, path_count, timeouts)}


def check(facts: Facts, host: str | None = None) -> list[Finding]:
    """Every rule's findings, worst first (then in rule order); with ``host``, only that host's and the
    pool-wide ones."""
    found = [f for rule in RULES.values() for f in rule(facts)]
    if host is not None:
        found = [f for f in found if f.host in ("", host)]
    order = list(RULES)
    return sorted(found, key=lambda f: (-f.severity, order.index(f.rule)))


def worst(findings: Sequence[Finding]) -> Severity:
    """The exit code: 0 clean, 1 warnings, 2 errors."""
    return max((f.severity for f in findings), default=Severity.OK)


def report(findings: Sequence[Finding]) -> dict[str, Any]:
    """The JSON form (``--format json`` and ``GET /doctor``); documented in docs/doctor.md."""
    counts = {s.label: sum(1 for f in findings if f.severity == s) for s in Severity}
    return {"status": worst(findings).label, "counts": counts, "rules": list(RULES),
            "findings": [f.to_json() for f in findings]}


def render_report(report: dict[str, Any]) -> str:
    """``report``'s text: errors, then warnings, then notes, each finding with the guide's place, the
    evidence and, under it, the fix."""
    lines: list[str] = []
    for label, title in (("error", "Errors"), ("warning", "Warnings"), ("ok", "Notes")):
        group = [f for f in report["findings"] if f["severity"] == label]
        if not group:
            continue
        lines.append(f"{title} ({len(group)})")
        for f in group:
            guide = f["guide"]
            lines.append(f"  [{f['rule']}] {f['subject']}: {f['message']}")
            lines.append(f"      guide: chapter {guide['chapter']}, \"{guide['section']}\"")
            for key, value in f["evidence"].items():
                lines.append(f"      {key}: {_show(value)}")
            lines.append(f"      fix: {f['fix']}")
        lines.append("")
    counts = report["counts"]
    lines.append(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['ok']} note(s): "
                 f"{report['status']}")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_show(v) for v in value) or "-"
    return str(value)
