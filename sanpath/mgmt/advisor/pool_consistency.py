"""pool-consistency: multipathing, and the handler, the same on every host of the pool (the guide: if you
enable multipathing, do so on all hosts). A host that differs gets one path where the others get all of
them, or drives an RDAC pair against the others' ownership moves."""

from __future__ import annotations

from .facts import Facts
from .finding import STORAGE_TRAFFIC, Finding, Severity

ID = "pool-consistency"


def check(facts: Facts) -> list[Finding]:
    hosts = [h for h in facts.hosts if h.multipathing is not None]
    out = []
    on = sorted(h.name for h in hosts if h.multipathing)
    off = sorted(h.name for h in hosts if not h.multipathing)
    if on and off:
        out.append(Finding(
            ID, Severity.ERROR, STORAGE_TRAFFIC, "pool",
            f"multipathing is on for {', '.join(on)} but off for {', '.join(off)}",
            "Make it the same on every host: `sanpath pool set-multipathing on` does it host by host, each in "
            "maintenance mode.", {"on": on, "off": off}))
    handlers: dict[str, list[str]] = {}
    for h in hosts:
        if h.multipathing:
            handlers.setdefault(h.handler, []).append(h.name)
    if len(handlers) > 1:
        out.append(Finding(
            ID, Severity.ERROR, STORAGE_TRAFFIC, "pool",
            "the hosts run different multipath handlers: "
            + "; ".join(f"{k} on {', '.join(sorted(v))}" for k, v in sorted(handlers.items())),
            "Use one handler on every host: `sanpath pool set-multipathing on --handler HANDLER`.",
            {"handlers": {k: sorted(v) for k, v in handlers.items()}}))
    return out
