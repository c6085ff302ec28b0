"""Path counts and MULTIPATH_PERIODIC_ALERT: when ``PathAlerts`` raises (first drop, every period while
below the max, recovery), and, on both stores, a portal of an in-process array taken down and brought
back under a plugged PBD: the count follows, the alert records name the host, PBD, SR and SCSIid, one
repeats after the pool's alert period, the recovery is reported, and /metrics shows the counts and the
path states."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sanpath.mgmt.alerts import DEGRADED, NAME, RECOVERED, PathAlerts, render
from sanpath.testing.inproc import running_target
from sanpath.testing.mgmt import Plane, running_plane, sr_on_only_lun

IQN = "iqn.2026-12.org.sanpath.test:alerts"
GUARD = 60.0


def test_path_alerts_raise_on_the_first_drop_every_period_and_on_recovery() -> None:
    alerts = PathAlerts(period=120)
    assert alerts.counts("p", 4, 4, 0.0) is None
    assert alerts.counts("p", 2, 4, 1.0) == DEGRADED
    assert alerts.counts("p", 1, 4, 2.0) is None  # a further drop waits for the period
    assert alerts.due(100.0) == []
    assert alerts.due(121.0) == [("p", 1, 4)]
    assert alerts.due(122.0) == []
    assert alerts.due(241.0) == [("p", 1, 4)]
    assert alerts.counts("p", 4, 4, 250.0) == RECOVERED
    assert alerts.due(1000.0) == []
    assert alerts.counts("q", 0, 2, 0.0) == DEGRADED
    alerts.forget("q")  # unplugged: no recovery is reported for counts that no longer exist
    assert alerts.counts("q", 2, 2, 1.0) is None


def test_an_alert_text_is_a_rendering_of_its_record() -> None:
    body = {"host": "h-uuid", "host_name": "host2", "pbd": "p-uuid", "sr": "s-uuid", "sr_name": "sr1",
            "SCSIid": "36001405aa", "current": 2, "max": 4, "state": DEGRADED, "period": 30.0}
    assert render(body) == ("host host2: PBD p-uuid of SR sr1 (SCSIid 36001405aa): 2 of 4 paths active; repeated "
                            "every 30 s while a path is missing")
    assert render({**body, "current": 4, "state": RECOVERED}).endswith("recovered, 4 of 4 paths active")


async def _alerts(plane: Plane) -> list[dict[str, Any]]:
    r = await plane.call("GET", "/messages", params={"name": NAME})
    return list(r.json())


async def _until(plane: Plane, what: str, found: Any) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + GUARD
    while not found(messages := await _alerts(plane)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up waiting for {what}: {messages}")
        await asyncio.sleep(0.05)
    return messages


async def test_a_portal_down_and_back_raises_and_recovers(store_url: str) -> None:
    async with running_target(iqn=IQN, portals=("127.0.0.1:0", "127.0.0.2:0")) as array, \
            running_plane(store_url) as plane:
        sr, scsi_id = await sr_on_only_lun(plane, array, IQN, "watched")
        pbd = sr["pbds"][0]["uuid"]
        r = await plane.call("POST", "/pool/other_config", {"multipath_alert_period": 1})
        assert r.status_code == 200, r.text
        assert await _alerts(plane) == []

        array.portal_down(array.portals[1])
        down = await _until(plane, "the first alert", lambda ms: ms)
        first = down[0]["body"]
        assert first == {"host": plane.host.uuid, "host_name": "host1", "pbd": pbd, "sr": sr["uuid"],
                         "sr_name": "watched", "SCSIid": scsi_id, "current": 1, "max": 2, "state": DEGRADED,
                         "period": 1.0}
        assert down[0]["text"] == render(first) and down[0]["priority"] == 3 and down[0]["class"] == "pool"
        counts = (await plane.call("GET", f"/pbds/{pbd}")).json()["other_config"][f"mpath-{scsi_id}"]
        assert json.loads(counts) == [1, 2]
        metrics = (await plane.call("GET", "/metrics")).text
        assert f'sanpath_pbd_paths_active{{host="host1",pbd="{pbd}",scsi_id="{scsi_id}"}} 1.0' in metrics
        assert f'sanpath_pbd_paths_max{{host="host1",pbd="{pbd}",scsi_id="{scsi_id}"}} 2.0' in metrics
        assert 'state="faulty"} 1.0' in metrics and "sanpath_path_failovers_total" in metrics

        await _until(plane, "the alert repeated after the period", lambda ms: len(ms) >= 2)
        await array.portal_up(array.portals[1])
        done = await _until(plane, "the recovery", lambda ms: ms[-1]["body"]["state"] == RECOVERED)
        assert done[-1]["body"]["current"] == 2 and done[-1]["body"]["max"] == 2
        assert all(m["body"]["state"] == DEGRADED for m in done[:-1])
        metrics = (await plane.call("GET", "/metrics")).text
        assert 'sanpath_path_reconnects_total' in metrics and 'state="faulty"} 1.0' not in metrics
