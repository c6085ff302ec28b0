"""A pool of several hosts in one test process (each host with its own store connection, daemon and
runtime directory), on both stores, against in-process sanpath arrays on loopback:

- sr create makes and plugs a PBD on every host; a host that joins later gets its own;
- multipath settings change only in maintenance mode; the rolling pool change multihomes every PBD of an
  SR made with multipathing off, while verified I/O through host1's export sees no error;
- sr create warns when the hosts disagree, and refuses with strict;
- maintenance mode waits for NBD clients and times out with the host enabled again; with force the
  client is drained and closed, and every acknowledged write is on the LUN;
- two clients on two hosts change the same SR and hosts at once, and the end state is consistent;
- the rdac handler replugs the host's PBDs in new data-path processes running RDAC.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sanpath.export.nbd.client import NbdClient, NbdError
from sanpath.mgmt.errors import KINDS
from sanpath.target.config import quick_config
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import running_target
from sanpath.testing.mgmt import Plane, portals_of, running_plane, running_pool
from sanpath.testing.nbdio import VerifiedIo

IQN = "iqn.2026-12.org.sanpath.test:pool"
GUARD = 60.0


@pytest.fixture
async def array() -> AsyncIterator[TargetServer]:
    async with running_target(iqn=IQN, portals=("127.0.0.1:0", "127.0.0.2:0"), luns=("mem:16MiB", "mem:8MiB")) as t:
        yield t


async def ok(plane: Plane, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    r = await plane.call(method, path, body)
    assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


async def error(plane: Plane, method: str, path: str, body: dict[str, Any] | None, name: str) -> dict[str, Any]:
    r = await plane.call(method, path, body)
    assert r.status_code == KINDS[name].http and r.json()["error"] == name, r.text
    return dict(r.json())


async def luns(plane: Plane, server: TargetServer) -> list[str]:
    found = (await ok(plane, "POST", "/sr/probe", {"target": portals_of(server), "targetIQN": IQN}))["luns"]
    return [lun["SCSIid"] for lun in sorted(found, key=lambda x: -x["size"])]


def counts(pbd: dict[str, Any]) -> list[int] | None:
    value = next((v for k, v in pbd["other_config"].items() if k.startswith("mpath-")), None)
    return json.loads(value) if value else None


async def settled(plane: Plane, sr: str, want: list[int], hosts: int) -> list[dict[str, Any]]:
    """Until every PBD of the SR is attached with counts ``want`` (bounded by the hang guard)."""
    deadline = asyncio.get_running_loop().time() + GUARD
    while True:
        pbds = await ok(plane, "GET", f"/pbds?sr={sr}")
        if len(pbds) == hosts and all(p["currently_attached"] and counts(p) == want for p in pbds):
            return list(pbds)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"PBDs of {sr} never all reached {want}: {[(p['host'], counts(p)) for p in pbds]}")
        await asyncio.sleep(0.05)


def export_of(pbd: dict[str, Any]) -> tuple[str, str]:
    uri = pbd["other_config"]["nbd"]
    return uri.split("socket=", 1)[1], uri.split("///", 1)[1].split("?", 1)[0]


async def test_every_host_gets_a_pbd_and_a_late_joiner_gets_its_own(store_url: str, array: TargetServer) -> None:
    async with running_pool(store_url, ("host1", "host2")) as (h1, h2):
        [scsi_id, _] = await luns(h1, array)
        sr = await ok(h1, "POST", "/srs", {"name_label": "shared", "target": portals_of(array), "targetIQN": IQN,
                                           "SCSIid": scsi_id})
        assert {p["host"] for p in sr["pbds"]} == {h1.host.uuid, h2.host.uuid}
        assert all(p["currently_attached"] and counts(p) == [2, 2] for p in sr["pbds"]), sr["pbds"]
        assert sr["warnings"] == []
        async with running_plane(store_url, name="host3", iqn="iqn.2026-12.com.example:host3", key=h1.key) as h3:
            pbds = await settled(h2, sr["uuid"], [2, 2], 3)
            mine = next(p for p in pbds if p["host"] == h3.host.uuid)
            assert mine["device_config"] == sr["pbds"][0]["device_config"]
            assert h3.host.uuid in (await ok(h3, "GET", "/pool"))["hosts"]


async def test_multipath_settings_change_only_in_maintenance_mode(store_url: str, array: TargetServer) -> None:
    async with running_pool(store_url) as planes:
        h1 = planes[0]
        for p in planes:
            await p.store.update_host(p.host.uuid, multipathing=False)
        big, small = await luns(h1, array)
        sr = await ok(h1, "POST", "/srs", {"name_label": "off", "target": portals_of(array), "targetIQN": IQN,
                                           "SCSIid": big})
        await settled(h1, sr["uuid"], [1, 1], 3)

        refused = await error(h1, "POST", "/hosts/host2/multipathing", {"enabled": True},
                              "HOST_NOT_IN_MAINTENANCE_MODE")
        assert "maintenance mode" in refused["message"] and "every host" in refused["message"]
        assert "host maintenance enter" in refused["advice"]

        # host1 first, by hand: enter, set, exit
        await ok(h1, "POST", "/hosts/host1/maintenance", {"mode": "enter"})
        changed = await ok(h1, "POST", "/hosts/host1/multipathing", {"enabled": True})
        assert changed["replugged"] == [p["uuid"] for p in sr["pbds"] if p["host"] == h1.host.uuid]
        assert (await ok(h1, "POST", "/hosts/host1/maintenance", {"mode": "exit"}))["enabled"] is True

        # the hosts disagree now: a warning, and with strict a refusal that makes nothing
        body = {"name_label": "second", "target": portals_of(array), "targetIQN": IQN, "SCSIid": small}
        strict = await error(h1, "POST", "/srs", {**body, "strict": True}, "MULTIPATH_NOT_ENABLED_ON_ALL_HOSTS")
        assert "on for host1, off for host2, host3" in strict["message"]
        assert len(await ok(h1, "GET", "/srs")) == 1
        warned = await ok(h1, "POST", "/srs", body)
        assert warned["warnings"] == ["multipathing is not enabled on every host of the pool: on for host1, off "
                                      "for host2, host3"]

        mine = next(p for p in await ok(h1, "GET", f"/pbds?sr={sr['uuid']}") if p["host"] == h1.host.uuid)
        assert counts(mine) == [2, 2]
        io = await VerifiedIo.connect(*export_of(mine))
        io.start()
        try:
            await io.until(200)
            r = await h1.call("POST", "/pool/multipathing", {"enabled": True})
            assert r.status_code == 200
            steps = [json.loads(line) for line in r.text.splitlines()]
            assert "result" in steps[-1], steps[-1]
            assert [(s["host"], s["step"]) for s in steps[:-1]] == [("host1", "unchanged")] + [
                (h, step) for h in ("host2", "host3")
                for step in ("maintenance-enter", "set-multipathing", "maintenance-exit", "done")]
            await io.until(200)
        finally:
            await io.stop()
        assert io.errors == [] and await io.check() == []
        await io.close()
        for pbd in await settled(h1, sr["uuid"], [2, 2], 3):
            assert pbd["other_config"]["multipathed"] == "true"
        assert all(h["multipathing"] and h["enabled"] and not h["maintenance_mode"]
                   for h in await ok(h1, "GET", "/hosts"))


async def test_maintenance_mode_waits_for_nbd_clients_or_drains_them(store_url: str, array: TargetServer) -> None:
    async with running_plane(store_url) as plane:
        [scsi_id, _] = await luns(plane, array)
        sr = await ok(plane, "POST", "/srs", {"name_label": "m", "target": portals_of(array), "targetIQN": IQN,
                                              "SCSIid": scsi_id})
        pbd = sr["pbds"][0]
        io = await VerifiedIo.connect(*export_of(pbd))
        io.start()
        await io.until(100)

        late = await error(plane, "POST", "/hosts/host1/maintenance", {"mode": "enter", "timeout": 1},
                           "CANNOT_EVACUATE_HOST")
        assert "1 client(s)" in late["message"] and "enabled again" in late["message"] and "--force" in late["advice"]
        host = await ok(plane, "GET", "/hosts/host1")
        assert host["enabled"] and not host["maintenance_mode"]
        await io.until(100)  # the client went on meanwhile
        assert io.errors == []

        entered = await ok(plane, "POST", "/hosts/host1/maintenance", {"mode": "enter", "force": True, "timeout": 30})
        assert entered["maintenance_mode"] and not entered["enabled"]
        await io.stop()
        assert io.errors, "the client should have been disconnected"
        with pytest.raises((OSError, asyncio.IncompleteReadError, NbdError)):  # no new clients in maintenance mode
            await NbdClient.connect_unix(*export_of(pbd))
        await ok(plane, "POST", "/hosts/host1/maintenance", {"mode": "exit"})

        deadline = asyncio.get_running_loop().time() + GUARD
        while True:  # the export takes clients again once the host's daemon has told it
            try:
                reader = await NbdClient.connect_unix(*export_of(pbd))
                break
            except (OSError, asyncio.IncompleteReadError, NbdError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        assert await io.check(reader) == []  # every acknowledged write is on the LUN
        await reader.close()


async def test_a_disabled_host_takes_no_new_plug(store_url: str, array: TargetServer) -> None:
    async with running_pool(store_url, ("host1", "host2")) as (h1, h2):
        await ok(h1, "POST", "/hosts/host2/enabled", {"enabled": False})
        [scsi_id, _] = await luns(h1, array)
        sr = await ok(h1, "POST", "/srs", {"name_label": "d", "target": portals_of(array), "targetIQN": IQN,
                                           "SCSIid": scsi_id})
        by_host = {p["host"]: p for p in sr["pbds"]}
        assert by_host[h1.host.uuid]["currently_attached"]
        skipped = by_host[h2.host.uuid]
        assert not skipped["currently_attached"] and skipped["error"]["error"] == "HOST_DISABLED"
        await error(h1, "POST", f"/pbds/{skipped['uuid']}/plug", None, "HOST_DISABLED")
        await ok(h2, "POST", "/hosts/host2/enabled", {"enabled": True})
        assert (await ok(h2, "POST", f"/pbds/{skipped['uuid']}/plug"))["currently_attached"]


async def test_two_clients_on_two_hosts_change_one_sr_at_once(store_url: str, array: TargetServer) -> None:
    async with running_pool(store_url, ("host1", "host2")) as (h1, h2):
        [scsi_id, _] = await luns(h1, array)
        sr = await ok(h1, "POST", "/srs", {"name_label": "c", "target": portals_of(array), "targetIQN": IQN,
                                           "SCSIid": scsi_id})
        pbds = [p["uuid"] for p in sr["pbds"]]

        async def churn(plane: Plane, rounds: int) -> None:
            for i in range(rounds):
                for uuid in pbds:
                    await plane.call("POST", f"/pbds/{uuid}/{'unplug' if i % 2 == 0 else 'plug'}")

        await asyncio.gather(churn(h1, 4), churn(h2, 4),
                             h1.call("POST", "/hosts/host2/maintenance", {"mode": "enter", "timeout": 5}),
                             h2.call("POST", "/hosts/host2/maintenance", {"mode": "exit"}))
        await ok(h1, "POST", "/hosts/host2/maintenance", {"mode": "exit"})
        for uuid in pbds:  # whatever the order was, each ends as its last request says, and says so
            await ok(h2, "POST", f"/pbds/{uuid}/plug")
        final = await settled(h1, sr["uuid"], [2, 2], 2)
        assert all(p["plugged"] and p["currently_attached"] and p["error"] is None for p in final)
        for plane in (h1, h2):
            assert set(plane.supervisor.running) == {p["uuid"] for p in final if p["host"] == plane.host.uuid}


async def test_the_rdac_handler_restarts_the_hosts_data_paths_with_rdac(store_url: str) -> None:
    """The seed's MPP RDAC step: set in maintenance mode, it replugs every PBD of the host, each in a new
    data-path process whose device runs the RDAC handler, prioritizer and checker."""
    spec = quick_config(IQN, ["127.0.0.1:0", "127.0.0.2:0"], ["mem:8MiB"], profile="rdac")
    async with running_target(spec=spec) as lsi, running_plane(store_url) as plane:
        [scsi_id, *_] = await luns(plane, lsi)
        sr = await ok(plane, "POST", "/srs", {"name_label": "lsi", "target": portals_of(lsi), "targetIQN": IQN,
                                              "SCSIid": scsi_id})
        pbd = sr["pbds"][0]["uuid"]
        before = plane.supervisor.running[pbd].pid
        await ok(plane, "POST", "/hosts/host1/maintenance", {"mode": "enter"})
        result = await ok(plane, "POST", "/hosts/host1/multipathing", {"enabled": True, "handler": "rdac"})
        assert result["multipath_handle"] == "rdac" and result["replugged"] == [pbd]
        await ok(plane, "POST", "/hosts/host1/maintenance", {"mode": "exit"})
        status = await plane.supervisor.status(pbd)
        assert status is not None and status["pid"] != before
        policy = status["policy"]
        assert (policy["handler"], policy["prio"], policy["path_checker"],
                policy["path_grouping_policy"]) == ("rdac", "rdac", "rdac", "group_by_prio")
        assert counts(await ok(plane, "GET", f"/pbds/{pbd}")) == [2, 2]
