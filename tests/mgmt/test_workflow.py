"""The SR workflow through the API, against in-process sanpath targets on loopback, on both stores:
the probe stages, create with its PBD plugged and written back keys, unplug and plug, forget, the host
IQN rules, and every XenServer error the workflow can hit (95, 96, 97, 107, 140, 141, 142, 16, 68, 83),
each with its message and advice."""

from __future__ import annotations

import asyncio
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sanpath.export.nbd.client import NbdClient
from sanpath.mgmt.errors import KINDS
from sanpath.target.config import ChapSpec, LunSpec, PortalGroupSpec, ServerSpec, TargetSpec
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import running_target
from sanpath.testing.mgmt import Plane, portals_of, running_plane

IQN = "iqn.2026-12.org.sanpath.test:mgmt"


@pytest.fixture
async def plane(store_url: str) -> AsyncIterator[Plane]:
    async with running_plane(store_url) as p:
        yield p


@pytest.fixture
async def array() -> AsyncIterator[TargetServer]:
    async with running_target(iqn=IQN, portals=("127.0.0.1:0", "127.0.0.2:0"), luns=("mem:16MiB", "mem:8MiB")) as t:
        yield t


def expect_error(r: Any, name: str) -> dict[str, Any]:
    body = r.json()
    assert body["error"] == name, body
    kind = KINDS[name]
    assert r.status_code == kind.http
    assert body["code"] == kind.code
    assert body["message"] and body["advice"] == kind.advice
    return dict(body)


async def scsi_ids(plane: Plane, target: str) -> list[str]:
    r = await plane.call("POST", "/sr/probe", {"target": target, "targetIQN": IQN})
    assert r.status_code == 200, r.text
    return [lun["SCSIid"] for lun in r.json()["luns"]]


async def test_probe_stages_and_create_plug_unplug(array: TargetServer, plane: Plane) -> None:
    target = portals_of(array)
    r = await plane.call("POST", "/sr/probe", {"target": target})
    stage = r.json()
    assert stage["stage"] == "iqns"
    assert [(i["address"], i["iqn"]) for i in stage["iqns"]] == [("127.0.0.1", IQN), ("127.0.0.2", IQN),
                                                                 (target, "*")]
    root = ET.fromstring(stage["xml"])
    assert root.tag == "iscsi-target-iqns" and root[-1].findtext("TargetIQN") == "*"

    r = await plane.call("POST", "/sr/probe", {"target": target, "targetIQN": "*"})
    luns = r.json()["luns"]
    assert sorted(lun["size"] for lun in luns) == [8 << 20, 16 << 20]
    assert all(len(lun["portals"]) == 2 for lun in luns)
    big = next(lun["SCSIid"] for lun in luns if lun["size"] == 16 << 20)

    r = await plane.call("POST", "/srs", {"name_label": "sr1", "target": target, "targetIQN": IQN, "SCSIid": big})
    assert r.status_code == 200, r.text
    sr = r.json()
    dc = sr["device_config"]
    assert dc["SCSIid"] == big and dc["targetIQN"] == IQN
    assert dc["multihomelist"] == target
    assert dc["multiSession"] == "".join(f"{h},{p},{IQN}|" for h, p in array.portals)
    [pbd] = sr["pbds"]
    assert pbd["currently_attached"], pbd
    oc = pbd["other_config"]
    assert oc[f"mpath-{big}"] == "[2, 2]" and oc["multipathed"] == "true" and oc["iscsi_sessions"] == "2"
    assert pbd["nbd"].startswith(f"nbd+unix:///{big}?socket=") and pbd["nbd"].endswith(f"/nbd/{big}.sock")
    assert all(p["routed"] for p in oc["paths"])  # no storage PIF: the routing table picks the NIC

    r = await plane.call("POST", "/sr/probe", {"target": target, "targetIQN": IQN, "SCSIid": big})
    assert [s["uuid"] for s in r.json()["srs"]] == [sr["uuid"]]
    assert ET.fromstring(r.json()["xml"]).findtext("SR/UUID") == sr["uuid"]

    r = await plane.call("DELETE", f"/srs/{sr['uuid']}")
    expect_error(r, "SR_HAS_PLUGGED_PBD")
    r = await plane.call("POST", f"/pbds/{pbd['uuid']}/unplug")
    unplugged = r.json()
    assert not unplugged["currently_attached"] and unplugged["nbd"] is None
    assert not any(k.startswith("mpath-") or k in ("multipathed", "iscsi_sessions") for k in unplugged["other_config"])
    assert plane.supervisor.running == {}
    r = await plane.call("POST", f"/pbds/{pbd['uuid']}/plug")
    assert r.json()["currently_attached"] and r.json()["other_config"][f"mpath-{big}"] == "[2, 2]"
    r2 = await plane.call("POST", f"/pbds/{pbd['uuid']}/plug")  # idempotent
    assert r2.json()["currently_attached"] and len(plane.supervisor.running) == 1
    await plane.call("POST", f"/pbds/{pbd['uuid']}/unplug")
    r = await plane.call("POST", f"/srs/{sr['uuid']}/forget")
    assert r.status_code == 200
    assert (await plane.call("GET", "/srs")).json() == []
    expect_error(await plane.call("GET", f"/pbds/{pbd['uuid']}"), "HANDLE_INVALID")


async def test_errors_of_the_probe_and_create_steps(array: TargetServer, plane: Plane,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    target = portals_of(array)
    expect_error(await plane.call("POST", "/sr/probe", {"target": ""}), "ConfigTargetMissing")
    expect_error(await plane.call("POST", "/sr/probe", {"target": "127.0.0.1", "port": 70000}), "ISCSIPort")
    expect_error(await plane.call("POST", "/sr/probe", {"target": "127.0.0.1:0"}), "ISCSIPort")
    expect_error(await plane.call("POST", "/sr/probe", {"target": "127.0.0.1:\u00b2"}), "ISCSIPort")
    expect_error(await plane.call("POST", "/sr/probe", {"target": "[::1]:99999"}), "ISCSIPort")

    def no_dns(*_: object, **__: object) -> None:  # never ask a real resolver (the network rule)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    body = expect_error(await plane.call("POST", "/sr/probe", {"target": "array.example"}), "DNSError")
    assert "array.example" in body["message"]
    monkeypatch.undo()

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        body = expect_error(await plane.call("POST", "/sr/probe", {"target": f"127.0.0.1:{dead}"}), "ISCSIDiscovery")
    assert f"127.0.0.1:{dead}" in body["message"]

    body = expect_error(await plane.call("POST", "/srs", {"name_label": "x", "target": target}),
                        "ConfigTargetIQNMissing")
    assert IQN in body["message"] and ET.fromstring(body["params"][0]).tag == "iscsi-target-iqns"
    body = expect_error(await plane.call("POST", "/sr/probe", {"target": target, "targetIQN": "iqn.2026-12.x:no"}),
                        "ConfigTargetIQNMissing")
    assert IQN in body["message"]

    body = expect_error(await plane.call("POST", "/srs", {"name_label": "x", "target": target, "targetIQN": IQN}),
                        "ConfigSCSIid")
    assert len(ET.fromstring(body["params"][0]).findall("LUN")) == 2
    expect_error(await plane.call("POST", "/srs", {"name_label": "x", "target": target, "targetIQN": IQN,
                                                   "SCSIid": "36001405nothere"}), "ConfigSCSIid")

    [first, _] = await scsi_ids(plane, target)
    r = await plane.call("POST", "/srs", {"name_label": "a", "target": target, "targetIQN": IQN, "SCSIid": first})
    assert r.status_code == 200, r.text
    body = expect_error(await plane.call("POST", "/srs", {"name_label": "b", "target": target, "targetIQN": IQN,
                                                          "SCSIid": first}), "SRInUse")
    assert first in body["message"]
    assert r.json()["uuid"] in body["message"]


async def test_a_host_without_an_iqn_cannot_probe(store_url: str, array: TargetServer) -> None:
    async with running_plane(store_url, iqn="") as plane:
        body = expect_error(await plane.call("POST", "/sr/probe", {"target": portals_of(array)}),
                            "ConfigISCSIIQNMissing")
        assert "host1" in body["message"]


async def test_chap_refused_is_an_iscsi_login_error_and_secrets_never_come_back(plane: Plane) -> None:
    user, secret = "host-user", "right-secret-123"
    spec = ServerSpec((TargetSpec(IQN, portal_groups=(PortalGroupSpec(1, (("127.0.0.1", 0),)),),
                                  luns=(LunSpec(0, None, 8 << 20),), chap=ChapSpec(user, secret.encode())),))
    async with running_target(spec=spec) as server:
        target = portals_of(server)
        wrong = {"chapuser": user, "chappassword": "wrong-secret-456"}
        body = expect_error(await plane.call("POST", "/sr/probe", {"target": target, "targetIQN": IQN, **wrong}),
                            "ISCSILogin")
        assert "wrong-secret-456" not in str(body)
        creds = {"chapuser": user, "chappassword": secret}
        [scsi_id] = [lun["SCSIid"] for lun in (await plane.call("POST", "/sr/probe", {"target": target,
                                                                                      "targetIQN": IQN, **creds})
                                                ).json()["luns"]]
        r = await plane.call("POST", "/srs", {"name_label": "chap", "target": target, "targetIQN": IQN,
                                              "SCSIid": scsi_id, **creds})
        assert r.status_code == 200, r.text
        assert r.json()["pbds"][0]["currently_attached"]
        seen = [r.text] + [(await plane.call("GET", path)).text for path in ("/srs", "/pbds", "/messages",
                                                                              f"/srs/{r.json()['uuid']}")]
        assert all(secret not in text for text in seen)
        assert "chappassword_secret" in r.json()["pbds"][0]["device_config"]
        await plane.call("POST", f"/pbds/{r.json()['pbds'][0]['uuid']}/unplug")


async def test_a_plug_with_no_answering_portal_fails_with_iscsi_target(plane: Plane) -> None:
    async with running_target(iqn=IQN, luns=("mem:8MiB",)) as server:
        target = portals_of(server)
        [scsi_id] = await scsi_ids(plane, target)
        sr = (await plane.call("POST", "/srs", {"name_label": "s", "target": target, "targetIQN": IQN,
                                                "SCSIid": scsi_id})).json()
        pbd = sr["pbds"][0]["uuid"]
        await plane.call("POST", f"/pbds/{pbd}/unplug")
    body = expect_error(await plane.call("POST", f"/pbds/{pbd}/plug"), "ISCSITarget")
    assert scsi_id in body["message"]
    recorded = (await plane.call("GET", f"/pbds/{pbd}")).json()
    assert not recorded["currently_attached"] and recorded["error"]["error"] == "ISCSITarget"


def shout(iqn: str) -> str:
    """The IQN with its unique part in upper case: the same iSCSI name (RFC 3722 folds case)."""
    prefix, _, unique = iqn.partition(":")
    return f"{prefix}:{unique.upper()}"


async def test_host_iqn_rules(array: TargetServer, plane: Plane) -> None:
    me = plane.host.uuid
    other = await plane.store.add_host("host2", "iqn.2026-12.com.example:host2")
    body = expect_error(await plane.call("POST", f"/hosts/{me}/iqn", {"iqn": other.iqn}), "IQN_IN_USE")
    assert "host2" in body["message"] and "host1" in body["message"]
    expect_error(await plane.call("POST", f"/hosts/{me}/iqn", {"iqn": shout(other.iqn)}), "IQN_IN_USE")
    expect_error(await plane.call("POST", f"/hosts/{me}/iqn", {"iqn": "not an iqn"}), "VALUE_INVALID")
    target = portals_of(array)
    [scsi_id, _] = await scsi_ids(plane, target)
    sr = (await plane.call("POST", "/srs", {"name_label": "s", "target": target, "targetIQN": IQN,
                                            "SCSIid": scsi_id})).json()
    body = expect_error(await plane.call("POST", f"/hosts/{me}/iqn", {"iqn": "iqn.2026-12.com.example:new"}),
                        "ISCSIInitiator")
    assert "host1" in body["message"]
    body = expect_error(await plane.call("POST", f"/hosts/{other.uuid}/iqn", {"iqn": IQN}), "IQN_IN_USE")
    assert IQN in body["message"] and sr["uuid"] in body["message"]
    expect_error(await plane.call("POST", f"/hosts/{other.uuid}/iqn", {"iqn": shout(IQN)}), "IQN_IN_USE")
    pbd2 = next(p for p in sr["pbds"] if p["host"] == other.uuid)  # host2 has no daemon: it cannot plug
    assert not pbd2["currently_attached"] and pbd2["error"]["error"] == "HOST_OFFLINE"
    assert pbd2["state"] == "unknown"  # its host does not report: not guessed
    assert next(p for p in sr["pbds"] if p["host"] == me)["state"] == "attached"
    assert (await plane.call("GET", f"/hosts/{other.uuid}")).json()["live"] is False
    for p in sr["pbds"]:
        await plane.call("POST", f"/pbds/{p['uuid']}/unplug")
    r = await plane.call("POST", f"/hosts/{me}/iqn", {"iqn": "iqn.2026-12.com.example:new"})
    assert r.json()["iqn"] == "iqn.2026-12.com.example:new"


async def test_unplug_is_refused_while_an_nbd_client_is_connected(array: TargetServer, plane: Plane) -> None:
    target = portals_of(array)
    [scsi_id, _] = await scsi_ids(plane, target)
    sr = (await plane.call("POST", "/srs", {"name_label": "s", "target": target, "targetIQN": IQN,
                                            "SCSIid": scsi_id})).json()
    [pbd] = sr["pbds"]
    client = await NbdClient.connect_unix(pbd["nbd"].split("socket=", 1)[1], scsi_id)
    try:
        await client.write(0, b"\x5a" * 4096)
        body = expect_error(await plane.call("POST", f"/pbds/{pbd['uuid']}/unplug"), "PBD_IN_USE")
        assert "1 NBD client" in body["message"]
        assert (await plane.call("GET", f"/pbds/{pbd['uuid']}")).json()["currently_attached"]
        r = await plane.call("POST", f"/pbds/{pbd['uuid']}/unplug", {"force": True})
        assert r.status_code == 200 and not r.json()["currently_attached"]
    finally:
        await client.close()


async def test_two_concurrent_sr_creates_through_the_api_one_succeeds(array: TargetServer, plane: Plane) -> None:
    target = portals_of(array)
    [scsi_id, _] = await scsi_ids(plane, target)
    body = {"target": target, "targetIQN": IQN, "SCSIid": scsi_id}
    results = await asyncio.gather(plane.call("POST", "/srs", {"name_label": "one", **body}),
                                   plane.call("POST", "/srs", {"name_label": "two", **body}))
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 409], [r.text for r in results]
    expect_error(next(r for r in results if r.status_code == 409), "SRInUse")
    srs = (await plane.call("GET", "/srs")).json()
    assert len(srs) == 1 and len((await plane.call("GET", "/pbds")).json()) == 1
    for p in (await plane.call("GET", "/pbds")).json():
        await plane.call("POST", f"/pbds/{p['uuid']}/unplug")


async def test_a_dead_address_of_the_target_list_counts_as_a_missing_path(array: TargetServer, plane: Plane) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
        target = f"{portals_of(array).split(',')[0]},{dead}"
        [scsi_id, _] = await scsi_ids(plane, target)
        sr = (await plane.call("POST", "/srs", {"name_label": "s", "target": target, "targetIQN": IQN,
                                                "SCSIid": scsi_id})).json()
    [pbd] = sr["pbds"]
    assert pbd["other_config"][f"mpath-{scsi_id}"] == "[2, 3]", pbd
    assert [p["logged_in"] for p in pbd["other_config"]["paths"]] == [True, True, False]
    assert sr["device_config"]["multihomelist"].endswith(dead)
    await plane.call("POST", f"/pbds/{pbd['uuid']}/unplug")
