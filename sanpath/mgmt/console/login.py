"""The console's login, needed when it is bound off loopback (where it is served over TLS only).

A person signs in with an API token (``sanpath pool token-create NAME`` makes one; the store keeps its
digest only). The console then hands the browser a random session cookie (HttpOnly, Secure,
SameSite=Strict) that it keeps in memory for ``LIFETIME`` seconds; the token itself is never stored in the
browser. Every other request without a live session is refused with 401.

On loopback no login is asked, as for the root-only unix socket; reach it from elsewhere through an SSH
tunnel. Either way every POST must carry htmx's ``HX-Request`` header: a page on another site cannot set
it without a CORS preflight, which the console never grants, so no other site can drive it."""

from __future__ import annotations

import secrets
import time

COOKIE = "sanpath_console"
LIFETIME = 8 * 3600.0


class Sessions:
    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def open(self) -> str:
        now = time.monotonic()
        self._until = {s: t for s, t in self._until.items() if t > now}
        session = secrets.token_urlsafe(32)
        self._until[session] = now + LIFETIME
        return session

    def valid(self, session: str | None) -> bool:
        return bool(session) and self._until.get(session or "", 0.0) > time.monotonic()

    def close(self, session: str | None) -> None:
        self._until.pop(session or "", None)


def is_open(path: str) -> bool:
    return path == "/login" or path.startswith("/static/")
