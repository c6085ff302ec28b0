"""``sanpath alerts [--follow]``: the pool's alerts (messages of priority 3 or more urgent: path counts
below their max, data-path restarts, failed replugs), oldest first; with --follow, new ones as any host
of the pool raises them (the API's server-sent events)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ..mgmt.client import ApiClient, api_option, emit, format_option, run

ALERT_PRIORITY = 3
COLUMNS = [("TIME", lambda m: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["timestamp"]))),
           ("NAME", lambda m: m["name"]), ("PRIORITY", lambda m: m["priority"]), ("TEXT", lambda m: m["text"])]


def _line(m: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(m, sort_keys=True)
    return "  ".join(str(get(m)) for _, get in COLUMNS)


@click.command("alerts")
@click.option("--follow", "-f", is_flag=True, help="Then print new alerts as they are raised, until interrupted.")
@click.option("--since", type=float, default=0.0, help="Only alerts from this time on (seconds since the epoch).")
@api_option
@format_option("table", "json")
def alerts(follow: bool, since: float, api: str | None, fmt: str) -> None:
    """The pool's alerts; with --format json one record per alert (with --follow: one JSON line each)."""

    def go() -> None:
        client = ApiClient(api)
        past = client.call("GET", "/messages", params={"since": since, "priority": ALERT_PRIORITY})
        if not follow:
            emit(past, fmt, COLUMNS)
            return
        for m in past:
            click.echo(_line(m, fmt))
        start = past[-1]["timestamp"] if past else None
        seen = {m["uuid"] for m in past}
        try:
            for event, m in client.events("/events", params={"priority": ALERT_PRIORITY, "since": start}):
                if event == "message" and m["uuid"] not in seen:
                    click.echo(_line(m, fmt))
        except KeyboardInterrupt:
            pass

    run("alerts", go)
