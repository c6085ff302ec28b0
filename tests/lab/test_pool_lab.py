"""A pool of three hosts in the namespace lab (issue 16's acceptance): three host namespaces, each with a
management NIC and two storage NICs on the seed's two switches to controllers A and B; one PostgreSQL
(from Debian's package, in a temporary directory) that every namespace reaches through its unix socket;
one daemon per host, all joined to the pool that ``sanpath pool create`` made; the sanpath array in its
multi-IQN profile (one IQN per portal) in the array namespace.

- With multipathing off on every host, ``sr create`` with ``*`` makes a PBD on each host at [1, 1]. The
  rolling ``pool set-multipathing on`` (host1 changed by hand first) then brings every PBD to [4, 4],
  multihomed, while verified I/O through host1's export runs with no error.
- A second SR created with multipathing on is at [4, 4] on each host at once.
- Pulling host2's first storage cable brings host2 to [2, 4] and raises MULTIPATH_PERIODIC_ALERT naming
  host2; host1 and host3 stay at [4, 4] with no alert. Plugging it back brings [4, 4] and the recovery.

Needs root, iproute2 and PostgreSQL (fails under CI=true without them). No timing is asserted: the
alert's latency is measured in benchmarks/mgmt.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sanpath.lab import Lab
from sanpath.lab.topology import host_nic, host_role
from sanpath.target.spawn import serve_target
from sanpath.testing.daemon import Daemon, serve_daemon
from sanpath.testing.nbdio import VerifiedIo
from sanpath.testing.postgres import PostgresCluster, postgres_cluster
from sanpath.testing.waiting import wait_until_sync
from tests.helpers.gates import require_lab, require_postgres
from tests.helpers.lab import running_lab

IQN = "iqn.2026-12.org.sanpath.test:lab-pool"
HOSTS = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab()
    with running_lab(subnets=2, controllers=2, hosts=HOSTS, state_dir=str(tmp_path_factory.mktemp("lab"))) as lab:
        yield lab


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    require_postgres()
    with postgres_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def daemons(lab: Lab, cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    url = cluster.create_database("labpool")
    key = str(tmp_path_factory.mktemp("pool") / "pool.key")
    made = subprocess.run([sys.executable, "-m", "sanpath", "pool", "create", "--db", url, "--key-file", key],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    with contextlib.ExitStack() as stack:
        out = []
        for n in range(1, HOSTS + 1):
            d = stack.enter_context(serve_daemon("--db", url, "--pool-key", key, "--name", f"host{n}",
                                                 prefix=lab.prefix(host_role(n))))
            d.call("POST", f"/pifs/{host_nic(n, None)}/purpose", {"purpose": "management"})
            for k in (1, 2):
                d.call("POST", f"/pifs/{host_nic(n, k)}/purpose", {"purpose": "storage"})
            out.append(d)
        yield out


def counts(d: Daemon, sr: str) -> dict[str, str]:
    """Per host name: the SR's PBD's mpath-<SCSIid>."""
    names = {h["uuid"]: h["name_label"] for h in d.call("GET", "/hosts")}
    return {names[p["host"]]: next((v for k, v in p["other_config"].items() if k.startswith("mpath-")), "-")
            for p in d.call("GET", f"/pbds?sr={sr}")}


def alerts(d: Daemon) -> list[dict[str, Any]]:
    return list(d.call("GET", "/messages?name=MULTIPATH_PERIODIC_ALERT"))


def test_a_pool_of_three_hosts(lab: Lab, daemons: list[Daemon], tmp_path: Path) -> None:
    h1 = daemons[0]
    assert sorted(h["name_label"] for h in h1.call("GET", "/hosts") if h["live"]) == ["host1", "host2", "host3"]
    for n in range(1, HOSTS + 1):  # multipathing off everywhere, as a pool set up without it
        for body in ({"mode": "enter"}, None, {"mode": "exit"}):
            path = f"/hosts/host{n}/maintenance" if body else f"/hosts/host{n}/multipathing"
            h1.call("POST", path, body or {"enabled": False})
    portals = [p for _, p in lab.topology.portals()]
    with serve_target("--iqn", IQN, "--profile", "multi-iqn", *(a for p in portals for a in ("--portal", p)),
                      "--lun", "mem:32MiB", "--lun", "mem:16MiB", prefix=lab.prefix("array")):
        targets = ",".join(p.split(":")[0] for p in portals)
        luns = sorted(h1.call("POST", "/sr/probe", {"target": targets, "targetIQN": "*"})["luns"],
                      key=lambda x: -x["size"])
        sr = h1.call("POST", "/srs", {"name_label": "pool-sr", "target": targets, "targetIQN": "*",
                                      "SCSIid": luns[0]["SCSIid"]})
        assert len(sr["pbds"]) == HOSTS and all(p["currently_attached"] for p in sr["pbds"]), sr["pbds"]
        assert counts(h1, sr["uuid"]) == {f"host{n}": "[1, 1]" for n in range(1, HOSTS + 1)}

        h1.call("POST", "/hosts/host1/maintenance", {"mode": "enter"})
        h1.call("POST", "/hosts/host1/multipathing", {"enabled": True})
        h1.call("POST", "/hosts/host1/maintenance", {"mode": "exit"})
        assert counts(h1, sr["uuid"])["host1"] == "[4, 4]"
        mine = next(p for p in h1.call("GET", f"/pbds?sr={sr['uuid']}") if p["host"] == h1.uuid)
        rolled, io_errors, bad = asyncio.run(_rolling_under_io(h1, mine["other_config"]["nbd"], luns[0]["SCSIid"]))
        assert [(s["host"], s["step"]) for s in rolled[:-1]] == [("host1", "unchanged")] + [
            (h, s) for h in ("host2", "host3") for s in ("maintenance-enter", "set-multipathing", "maintenance-exit",
                                                         "done")]
        assert "result" in rolled[-1], rolled[-1]
        assert io_errors == [] and bad == []
        assert counts(h1, sr["uuid"]) == {f"host{n}": "[4, 4]" for n in range(1, HOSTS + 1)}
        assert all(p["other_config"]["multipathed"] == "true" and p["other_config"]["iscsi_sessions"] == "4"
                   for p in h1.call("GET", f"/pbds?sr={sr['uuid']}"))

        second = h1.call("POST", "/srs", {"name_label": "second", "target": targets, "targetIQN": "*",
                                          "SCSIid": luns[1]["SCSIid"]})
        assert second["warnings"] == []
        assert counts(h1, second["uuid"]) == {f"host{n}": "[4, 4]" for n in range(1, HOSTS + 1)}

        assert alerts(h1) == []
        lab.pull(host_nic(2, 1))
        try:
            wait_until_sync(lambda: {a["body"]["sr"] for a in alerts(h1)} == {sr["uuid"], second["uuid"]},
                            "an alert for each of host2's PBDs")
            wait_until_sync(lambda: counts(h1, sr["uuid"])["host2"] == "[2, 4]", "host2 at [2, 4]")
            down = [a["body"] for a in alerts(h1)]
            # raised at the first drop: the cable's two paths may fail one after the other
            assert {(b["host_name"], b["state"], b["max"]) for b in down} == {("host2", "degraded", 4)}
            assert all(b["current"] in (2, 3) for b in down), down
            for s in (sr["uuid"], second["uuid"]):
                assert {h: c for h, c in counts(h1, s).items() if h != "host2"} == {"host1": "[4, 4]",
                                                                                   "host3": "[4, 4]"}
        finally:
            lab.restore(host_nic(2, 1))
        wait_until_sync(lambda: sum(a["body"]["state"] == "recovered" for a in alerts(h1)) == 2,
                        "the recovery of host2's two PBDs")
        assert {a["body"]["host_name"] for a in alerts(h1)} == {"host2"}
        wait_until_sync(lambda: counts(h1, sr["uuid"])["host2"] == "[4, 4]", "host2 back at [4, 4]")
        for s in (sr, second):
            for p in h1.call("GET", f"/pbds?sr={s['uuid']}"):
                h1.call("POST", f"/pbds/{p['uuid']}/unplug", {"force": True})
            h1.call("POST", f"/srs/{s['uuid']}/forget")


async def _rolling_under_io(h1: Daemon, nbd: str, name: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The rolling enable (from host1's API, in a thread) while verified I/O runs through host1's export."""
    io = await VerifiedIo.connect(nbd.split("socket=", 1)[1], name)
    io.start()
    try:
        await io.until(200)
        answer = await asyncio.to_thread(h1.client.post, "/pool/multipathing", json={"enabled": True}, timeout=600)
        await io.until(200)
    finally:
        await io.stop()
    bad = await io.check()
    await io.close()
    return [json.loads(line) for line in answer.text.splitlines()], io.errors, bad
