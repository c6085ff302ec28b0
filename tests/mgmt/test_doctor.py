"""The advisor on a live pool, in one test process on both stores, against in-process arrays on loopback
(the network rules are checked in the namespace lab, tests/lab/test_doctor_lab.py). Each scenario breaks
one rule of a clean pool and ``GET /doctor`` yields exactly that finding, with its evidence; an error
also raises a message, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from sanpath.mgmt.advisor.service import MESSAGE
from sanpath.mgmt.store.model import Host
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import running_target
from sanpath.testing.mgmt import Plane, portals_of, running_plane, running_pool, sr_on_only_lun

IQN = "iqn.2026-12.org.sanpath.test:doctor"


@pytest.fixture
async def array() -> AsyncIterator[TargetServer]:
    async with running_target(iqn=IQN, portals=("127.0.0.1:0", "127.0.0.2:0"), luns=("mem:16MiB",)) as t:
        yield t


async def doctor(plane: Plane, host: str | None = None) -> dict[str, Any]:
    r = await plane.call("GET", "/doctor", params={"host": host} if host else None)
    assert r.status_code == 200, r.text
    return dict(r.json())


def problems(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["severity"] != "ok"]


async def test_a_clean_pool_then_multipathing_off_on_one_host(store_url: str, array: TargetServer) -> None:
    async with running_pool(store_url, ("host1", "host2")) as (h1, h2):
        await sr_on_only_lun(h1, array, IQN, "clean")
        clean = await doctor(h1)
        assert clean["status"] == "ok" and problems(clean) == [], problems(clean)
        assert [f["rule"] for f in clean["findings"]] == ["portal-mode"]

        for step in ({"mode": "enter"}, None, {"mode": "exit"}):
            path, body = (("/hosts/host2/maintenance", step) if step else
                          ("/hosts/host2/multipathing", {"enabled": False}))
            assert (await h2.call("POST", path, body)).status_code == 200
        [f] = problems(await doctor(h2))
        assert (f["rule"], f["severity"], f["evidence"]) == ("pool-consistency", "error",
                                                             {"on": ["host1"], "off": ["host2"]})
        assert f["guide"] == {"chapter": 1, "section": "Multipathing iSCSI Storage Traffic"}
        await doctor(h1)  # once more: the error is raised once
        raised = [m for m in await h1.store.messages(name=MESSAGE)]
        assert [m.body["rule"] for m in raised] == ["pool-consistency"]


async def test_two_hosts_with_one_iqn(store_url: str, array: TargetServer) -> None:
    async with running_pool(store_url, ("host1", "host2")) as (h1, h2):
        prefix, _, unique = h1.host.iqn.partition(":")
        same = f"{prefix}:{unique.upper()}"  # iSCSI names compare without case (RFC 3722): host1's name
        r = await h2.call("POST", "/hosts/host2/iqn", {"iqn": same})
        assert r.status_code == 409 and r.json()["error"] == "IQN_IN_USE"  # the store refuses it ...
        async with h2.store.engine.begin() as conn:  # ... so a store written behind its back holds it
            await conn.execute(update(Host).where(Host.uuid == h2.host.uuid).values(iqn=same))
        await sr_on_only_lun(h1, array, IQN, "shared")
        [f] = problems(await doctor(h1))
        assert f["rule"] == "unique-iqn" and f["evidence"]["hosts"] == {"host1": h1.host.iqn, "host2": same}
        only_host1 = await doctor(h1, "host1")
        assert [x["rule"] for x in problems(only_host1)] == ["unique-iqn"]  # a pool-wide finding


async def test_an_sr_created_before_multipathing_was_enabled(store_url: str, array: TargetServer) -> None:
    async with running_plane(store_url) as plane:
        await plane.store.update_host(plane.host.uuid, multipathing=False)
        await sr_on_only_lun(plane, array, IQN, "early")
        # multipathing turned on behind the SR's back (a set-multipathing cut short before its replug):
        # the PBD still runs with one session
        await plane.store.update_host(plane.host.uuid, multipathing=True)
        [f] = problems(await doctor(plane))
        assert f["rule"] == "multihome" and f["evidence"]["sessions"] == 1 and len(f["evidence"]["portals"]) == 2
        assert "maintenance mode" in f["fix"]


async def test_a_black_holed_portal(store_url: str, array: TargetServer) -> None:
    async with running_plane(store_url) as plane:
        second = f"{array.portals[1][0]}:{array.portals[1][1]}"
        array.faults.inject("blackhole", portal=second)
        _, scsi_id = await sr_on_only_lun(plane, array, IQN, "holed")
        [f] = problems(await doctor(plane))
        assert f["rule"] == "path-count" and f["evidence"][f"mpath-{scsi_id}"] == [1, 2], f
        assert portals_of(array).split(",") == f["evidence"]["portals"]
