"""The advisor on a live pool (``GET /doctor``): gather the facts from here, check them, and raise a message
for each error-level finding (once: an unacknowledged message for the same rule and subject is not
raised again)."""

from __future__ import annotations

from typing import Any

from ..errors import XenError
from ..poolkey import PoolKey
from ..store import Store
from ..store.model import Host
from . import check, gather, report
from .finding import Finding, Severity

MESSAGE = "MULTIPATH_ADVISOR_ERROR"
PRIORITY = 2  # XenServer's scale: 1 data loss imminent ... 5 informational; a broken rule risks service


async def pool_report(store: Store, key: PoolKey, local: Host, host: str | None = None) -> dict[str, Any]:
    if host is not None:  # matched here, not in a query: any text may come in, NUL bytes too
        names = [h.name_label for h in await store.hosts() if host in (h.uuid, h.name_label)]
        if not names:
            raise XenError("HANDLE_INVALID", f"no host {host!r} in this pool", "host", host,
                           advice="Give a host's name or uuid (sanpath host list).")
        host = names[0]
    facts = await gather.pool(store, key, local)
    findings = check(facts, host)
    await _raise(store, [f for f in findings if f.severity == Severity.ERROR])
    return report(findings)


async def _raise(store: Store, errors: list[Finding]) -> None:
    if not errors:
        return
    raised = {(m.body.get("rule"), m.body.get("subject")) for m in await store.messages(name=MESSAGE)
              if not m.acknowledged}
    pool = await store.pool()
    for f in errors:
        if (f.rule, f.subject) in raised:
            continue
        await store.add_message(MESSAGE, PRIORITY, "pool", pool.uuid if pool else "", f.to_json(),
                                f"[{f.rule}] {f.subject}: {f.message}. Fix: {f.fix}")
