"""The console bound off loopback: a namespace of the test's own with 198.18.0.1 on its loopback device, a
daemon serving the console there. It refuses plain HTTP and every request without a sign-in; a known API
token signs in, and the session cookie it gives then opens the pages."""

from __future__ import annotations

import http.client
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from sanpath.lab.netns import Ledger, ip, socket_in
from sanpath.testing.daemon import serve_daemon
from sanpath.testing.tls import self_signed
from tests.helpers.gates import require_lab

ADDRESS, PORT = "198.18.0.1", 8443


@pytest.fixture
def namespace() -> Iterator[str]:
    require_lab()
    ledger = Ledger()
    name = f"sp-console-{os.getpid()}"
    ledger.add_netns(name)
    try:
        ip(name, "address", "add", f"{ADDRESS}/32", "dev", "lo")
        yield name
    finally:
        assert ledger.teardown() == []


class InNamespace(http.client.HTTPSConnection):
    """HTTPS from inside the namespace (the socket is made there; this process stays where it is)."""

    def __init__(self, ns: str, context: ssl.SSLContext) -> None:
        super().__init__(ADDRESS, PORT, context=context, timeout=10)
        self.ns = ns

    def connect(self) -> None:
        sock = socket_in(self.ns)
        sock.settimeout(10)
        sock.connect((ADDRESS, PORT))
        assert self._context is not None  # type: ignore[attr-defined]
        self.sock = self._context.wrap_socket(sock, server_hostname=ADDRESS)  # type: ignore[attr-defined]


def request(ns: str, tls: ssl.SSLContext, method: str, path: str, headers: dict[str, str] | None = None,
            body: str | None = None) -> tuple[int, dict[str, str], str]:
    conn = InNamespace(ns, tls)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


def test_the_console_off_loopback_asks_for_a_sign_in(namespace: str, tmp_path: Path) -> None:
    cert, key = self_signed(str(tmp_path), ADDRESS)
    tls = ssl.create_default_context(cafile=cert)
    with serve_daemon("--console", f"{ADDRESS}:{PORT}", "--tls-cert", cert, "--tls-key", key, "--name", "h1",
                      prefix=["ip", "netns", "exec", namespace]) as d:
        assert d.console == f"https://{ADDRESS}:{PORT}/"
        token = d.call("POST", "/tokens", {"name_label": "console"})["token"]
        form = {"Content-Type": "application/x-www-form-urlencoded", "HX-Request": "true"}

        status, headers, _ = request(namespace, tls, "GET", "/", {"Accept": "text/html"})
        assert status == 303 and headers["location"] == "/login"  # a browser is sent to the sign-in
        for method, path, extra in (("GET", "/tree", {}), ("GET", "/events", {}), ("GET", f"/hosts/{d.uuid}", {}),
                                    ("POST", f"/hosts/{d.uuid}/maintenance", form)):
            status, _, text = request(namespace, tls, method, path, extra, "mode=enter" if extra else None)
            assert status == 401 and "sign in" in text, (method, path, status, text)
        assert d.call("GET", f"/hosts/{d.uuid}")["maintenance_mode"] is False
        status, _, text = request(namespace, tls, "GET", "/login")
        assert status == 200 and "API token" in text

        status, _, text = request(namespace, tls, "POST", "/login", form, "token=not-a-token")
        assert status == 401 and "not known" in text
        status, headers, _ = request(namespace, tls, "POST", "/login", form, f"token={token}")
        assert status == 204 and headers["hx-redirect"] == "/"
        cookie = headers["set-cookie"]
        for flag in ("HttpOnly", "Secure", "SameSite=strict"):
            assert flag.lower() in cookie.lower(), cookie
        session = cookie.split(";", 1)[0]
        assert token not in cookie  # the browser holds a session, never the token
        status, _, text = request(namespace, tls, "GET", "/tree", {"Cookie": session})
        assert status == 200 and "h1" in text

        raw = socket_in(namespace)  # clear text gets no page: the console speaks TLS only
        raw.settimeout(5)
        raw.connect((ADDRESS, PORT))
        raw.sendall(b"GET /tree HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = raw.recv(4096)
        except (ConnectionError, TimeoutError):
            answer = b""
        raw.close()
        assert not answer.startswith(b"HTTP/"), answer[:80]
