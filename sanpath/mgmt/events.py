"""The pool's server-sent events (``GET /events``), for the CLI's ``alerts --follow`` and the console.

- ``event: message``: each new message, as any host of the pool writes it, with the message's JSON.
- ``event: state`` (asked for with ``state``): something a console shows changed in the store: a host
  (live, maintenance mode, multipathing, handler) or a PBD (attached, path counts, sessions, error). The
  data names what changed; a client reads the rows again.

The store is polled (every ``POLL`` seconds for messages, ``STATE_POLL`` for state), so the stream works
the same on SQLite and PostgreSQL and across hosts. While the store is away the stream waits for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .errors import XenError
from .maintenance import in_maintenance
from .store import Store
from .store.model import Message
from .workflow import live

POLL = 0.2  # seconds between looks for new messages while a client listens
STATE_POLL = 0.5  # seconds between looks at the hosts' and PBDs' rows, when state is asked for
KEEPALIVE = 15.0
LOOKBACK = 5.0  # seconds: a message stamped a little before the newest one sent is still sent


def message_json(m: Message) -> dict[str, Any]:
    return {"uuid": m.uuid, "name": m.name, "priority": m.priority, "class": m.obj_class, "obj_uuid": m.obj_uuid,
            "timestamp": m.timestamp, "body": m.body, "text": m.text, "acknowledged": m.acknowledged}


async def snapshot(store: Store) -> dict[str, tuple[Any, ...]]:
    """What a console shows of each host and PBD, keyed by uuid: a change of any part is a state event."""
    now = await store.now()
    out: dict[str, tuple[Any, ...]] = {}
    for h in await store.hosts():
        out[h.uuid] = ("host", live(h, now), in_maintenance(h), h.enabled, h.multipathing, h.multipath_handle,
                       h.iqn, h.name_label)
    for p in await store.pbds():
        counts = tuple(sorted((k, str(v)) for k, v in p.other_config.items() if k.startswith("mpath-")))
        out[p.uuid] = ("pbd", p.plugged, p.currently_attached, counts, p.other_config.get("iscsi_sessions"),
                       (p.error or {}).get("error"))
    return out


def _changed(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


async def stream(store: Store, disconnected: Callable[[], Awaitable[bool]], since: float | None,
                 priority: int | None, state: bool) -> AsyncIterator[bytes]:
    """The event stream's bytes until the client leaves (``disconnected``)."""
    mark = since if since is not None else await store.now()
    seen: dict[str, float] = {}  # sent, by timestamp: messages of several hosts may land a little late
    quiet = state_due = 0.0
    last: dict[str, tuple[Any, ...]] | None = None
    yield b": sanpath events\n\n"
    while not await disconnected():
        try:
            new = [m for m in await store.messages(since=mark, priority=priority) if m.uuid not in seen]
            rows = await snapshot(store) if state and state_due <= 0 else None
        except XenError as e:
            if e.name != "STORE_UNREACHABLE":
                raise
            new, rows = [], None  # the store is away: the stream waits for it
        for m in new:
            seen[m.uuid] = m.timestamp
            yield f"id: {m.uuid}\nevent: message\ndata: {json.dumps(message_json(m))}\n\n".encode()
        if new:
            mark = max(mark, new[-1].timestamp - LOOKBACK)
            seen = {u: t for u, t in seen.items() if t >= mark}
            quiet = 0.0
        if rows is not None:
            state_due = STATE_POLL
            if last is not None and (changed := _changed(last, rows)):
                yield f"event: state\ndata: {json.dumps({'changed': changed})}\n\n".encode()
                quiet = 0.0
            last = rows
        quiet += POLL
        state_due -= POLL
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield b": keepalive\n\n"
        await asyncio.sleep(POLL)
