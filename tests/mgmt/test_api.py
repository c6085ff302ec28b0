"""The API of a daemon process over TCP (TLS, bearer token), on both stores: schemathesis over its own
/openapi.json finds no 5xx (valid and invalid requests alike); TCP without the token gets 401; and a CHAP
secret given to sr create appears in no response, no log line, and no process's arguments or environment.

Requests that would make the daemon connect somewhere (sr probe, sr create) have their ``target`` forced
to a closed port on loopback, so that no generated address is ever a destination."""

from __future__ import annotations

import contextlib
import glob
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from sanpath.target.spawn import serve_target
from sanpath.testing.daemon import Daemon, datapath_pids, serve_daemon
from sanpath.testing.tls import self_signed

IQN = "iqn.2026-12.org.sanpath.test:api"
USER, SECRET = "api-host", "chap-secret-never-shown-4711"
NETWORK_OPERATIONS = {("POST", "/sr/probe"), ("POST", "/srs")}
STREAMS = {("GET", "/events")}  # never ends: tested in test_events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tcp:
    def __init__(self, daemon: Daemon, url: str, cert: str, token: str) -> None:
        self.daemon, self.url, self.cert, self.token = daemon, url, cert, token
        self.tls = ssl.create_default_context(cafile=cert)


@pytest.fixture
def tcp_daemon(store_url: str, tmp_path: Path) -> Iterator[Tcp]:
    cert, key = self_signed(str(tmp_path))
    port = free_port()
    args = ["--api-tcp", f"127.0.0.1:{port}", "--tls-cert", cert, "--tls-key", key]
    if not store_url.startswith("sqlite"):
        import asyncio

        from sanpath.mgmt.poolkey import PoolKey
        from sanpath.mgmt.store import Store

        async def make_pool() -> None:
            store = await Store.open(store_url)
            await store.create_pool("p", PoolKey.create(str(tmp_path / "pool.key")))
            await store.close()

        asyncio.run(make_pool())
        args += ["--db", store_url, "--pool-key", str(tmp_path / "pool.key")]
    with serve_daemon(*args, "--name", "api-host") as d:
        token = d.call("POST", "/tokens", {"name_label": "schemathesis"})["token"]
        assert token not in json.dumps(d.call("GET", "/tokens"))
        yield Tcp(d, f"https://127.0.0.1:{port}", cert, token)


def test_tcp_without_the_token_is_refused(tcp_daemon: Tcp) -> None:
    with httpx.Client(base_url=tcp_daemon.url, verify=tcp_daemon.tls) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": tcp_daemon.token}):
            r = c.get("/hosts", headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "UNAUTHORIZED"
        r = c.get("/hosts", headers={"Authorization": f"Bearer {tcp_daemon.token}"})
        assert r.status_code == 200 and r.json()[0]["name_label"] == "api-host"
    with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):  # never in clear
        httpx.get(tcp_daemon.url.replace("https", "http") + "/hosts", timeout=5).raise_for_status()


def test_schemathesis_finds_no_server_error(tcp_daemon: Tcp) -> None:
    auth = {"Authorization": f"Bearer {tcp_daemon.token}"}
    schema = schemathesis.openapi.from_url(f"{tcp_daemon.url}/openapi.json", headers=auth, verify=tcp_daemon.cert)
    dead = free_port()
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 15
    operations = [op for op in operations if (op.method.upper(), op.path) not in STREAMS]
    failures: list[str] = []
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            with contextlib.suppress(Unsatisfiable):  # no invalid form exists for some operations
                _fuzz(op, mode, auth, tcp_daemon.cert, dead, failures)
    assert failures == [], tcp_daemon.daemon.log()[-6000:]  # the daemon's traceback of a 500


def _fuzz(op: Any, mode: GenerationMode, auth: dict[str, str], cert: str, dead: int, failures: list[str]) -> None:
    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        if (op.method.upper(), op.path) in NETWORK_OPERATIONS and isinstance(case.body, dict):
            case.body["target"] = f"127.0.0.1:{dead}"
        if isinstance(case.body, dict) and isinstance(case.body.get("timeout"), int | float):
            case.body["timeout"] = min(case.body["timeout"], 1)  # a wait for NBD clients to leave
        r = case.call(headers=auth, verify=cert, timeout=60)
        if r.status_code >= 500 and not _expected_5xx(r):
            failures.append(f"{op.method.upper()} {op.path} {case.body!r} -> {r.status_code} {r.text[:300]}")

    run()


def _expected_5xx(r: Any) -> bool:
    """A 502/503 carrying one of our errors is an answer about the array (ISCSIDiscovery on the closed
    port, HOST_OFFLINE), not a server failure; an unhandled exception is a bare 500."""
    try:
        body = r.json()
    except ValueError:
        return False
    return r.status_code in (502, 503) and isinstance(body, dict) and body.get("error") in (
        "ISCSIDiscovery", "ISCSITarget", "ISCSILogin", "HOST_OFFLINE")


def test_a_chap_secret_is_never_shown_logged_or_passed_in_arguments(tcp_daemon: Tcp, tmp_path: Path) -> None:
    toml = tmp_path / "array.toml"
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    toml.write_text(f'''
[[target]]
iqn = "{IQN}"
chap = {{ user = "{USER}", secret_file = "{secret_file}" }}
[[target.portal_group]]
tag = 1
portals = ["127.0.0.1:0"]
[[target.lun]]
id = 0
memory = "8MiB"
''')
    d = tcp_daemon.daemon
    with serve_target("--config", str(toml)) as array:
        creds = {"chapuser": USER, "chappassword": SECRET}
        [lun] = d.call("POST", "/sr/probe", {"target": array.portals[0], "targetIQN": IQN, **creds})["luns"]
        created = d.client.post("/srs", json={"name_label": "chap", "target": array.portals[0], "targetIQN": IQN,
                                              "SCSIid": lun["SCSIid"], **creds})
        assert created.status_code == 200 and created.json()["pbds"][0]["currently_attached"], created.text
        seen = [created.text] + [d.client.get(p).text for p in ("/srs", "/pbds", "/messages", "/hosts", "/pifs")]
        with httpx.Client(base_url=tcp_daemon.url, verify=tcp_daemon.tls,
                          headers={"Authorization": f"Bearer {tcp_daemon.token}"}) as c:
            seen += [c.get(p).text for p in ("/srs", "/pbds")]
        logs = [d.log()] + [Path(p).read_text(errors="replace") for p in glob.glob(f"{d.run_dir}/pbd-*")
                            if p.endswith((".log", ".err"))]
        assert len(logs) == 3
        procs = [_proc_text(pid) for pid in [d.process.pid, *datapath_pids(d.run_dir)]]
        assert len(procs) == 2
        for text in seen + logs + procs:
            assert SECRET not in text
        assert "chap" in created.text  # the SR is there, with its user and a reference to the secret
        for p in created.json()["pbds"]:
            d.call("POST", f"/pbds/{p['uuid']}/unplug")


def _proc_text(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read()
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = f.read()
    return (cmd + b"\n" + env).decode(errors="replace")
