"""The SR probe's three stages against in-process targets on loopback, and its XML as sr-probe prints it."""

from __future__ import annotations

import asyncio
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager

from sanpath.initiator.discovery import DiscoveredTarget
from sanpath.initiator.session import SessionConfig
from sanpath.mgmt.probe import LunRecord, discover_iqns, iqns_xml, luns_xml, probe_luns, srlist_xml
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import running_target

IQN_A = "iqn.2026-11.org.sanpath.test:probe-a"
IQN_B = "iqn.2026-11.org.sanpath.test:probe-b"
MiB = 1 << 20


def config() -> SessionConfig:
    return SessionConfig(host="", initiator_name="iqn.2026-11.org.sanpath.test:prober")


@contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 bound but not listening: a connect is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def children(elem: ET.Element) -> list[tuple[str, str]]:
    return [(c.tag, c.text or "") for c in elem]


async def no_connections(*servers: TargetServer) -> bool:
    for _ in range(100):
        if not any(s.connections for s in servers):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_discover_asks_every_target_and_renders_iqns() -> None:
    async with running_target(iqn=IQN_A, portals=("127.0.0.1:0",)) as a, \
            running_target(iqn=IQN_B, portals=("127.0.0.2:0",)) as b:
        pa, pb = a.portals[0], b.portals[0]
        records, errors = await discover_iqns([pa, pb], config())
        assert errors == {}
        assert [(r.address, r.port, r.iqn) for r in records] == [(*pa, IQN_A), (*pb, IQN_B)]
        assert await no_connections(a, b)

        text = f"{pa[0]}:{pa[1]},{pb[0]}:{pb[1]}"
        out = iqns_xml(records, text)
        assert out.startswith('<?xml version="1.0" ?>\n<iscsi-target-iqns>\n\t<TGT>\n\t\t<Index>0</Index>\n')
        root = ET.fromstring(out)
        assert root.tag == "iscsi-target-iqns"
        tgts = list(root)
        assert [t.tag for t in tgts] == ["TGT", "TGT", "TGT"]
        assert children(tgts[0]) == [("Index", "0"), ("IPAddress", pa[0]), ("Port", str(pa[1])), ("TargetIQN", IQN_A)]
        assert children(tgts[1]) == [("Index", "1"), ("IPAddress", pb[0]), ("Port", str(pb[1])), ("TargetIQN", IQN_B)]
        # the wildcard: the whole list as given; the ports differ, so they stay in its text only
        assert children(tgts[2]) == [("Index", "2"), ("IPAddress", text), ("TargetIQN", "*")]


def test_iqns_xml_port_only_when_not_default() -> None:
    records = [DiscoveredTarget("198.18.0.1", 3260, 1, IQN_A), DiscoveredTarget("198.18.0.2", 3261, 1, IQN_B)]
    out = iqns_xml(records, "198.18.0.1,198.18.0.2")
    assert out == (
        '<?xml version="1.0" ?>\n'
        "<iscsi-target-iqns>\n"
        "\t<TGT>\n\t\t<Index>0</Index>\n\t\t<IPAddress>198.18.0.1</IPAddress>\n"
        f"\t\t<TargetIQN>{IQN_A}</TargetIQN>\n\t</TGT>\n"
        "\t<TGT>\n\t\t<Index>1</Index>\n\t\t<IPAddress>198.18.0.2</IPAddress>\n\t\t<Port>3261</Port>\n"
        f"\t\t<TargetIQN>{IQN_B}</TargetIQN>\n\t</TGT>\n"
        "\t<TGT>\n\t\t<Index>2</Index>\n\t\t<IPAddress>198.18.0.1,198.18.0.2</IPAddress>\n"
        "\t\t<TargetIQN>*</TargetIQN>\n\t</TGT>\n"
        "</iscsi-target-iqns>\n"
    )
    # one shared non-default port: the wildcard carries it too
    wild = list(ET.fromstring(iqns_xml(records[1:], "198.18.0.2:3261,198.18.0.3:3261", 3261)))[-1]
    assert children(wild) == [("Index", "1"), ("IPAddress", "198.18.0.2:3261,198.18.0.3:3261"), ("Port", "3261"),
                              ("TargetIQN", "*")]
    # nothing discovered: the wildcard alone, index 0
    assert [children(t) for t in ET.fromstring(iqns_xml([], "198.18.0.9"))] == [
        [("Index", "0"), ("IPAddress", "198.18.0.9"), ("TargetIQN", "*")]]


async def test_probe_luns_merges_portals_by_scsi_id() -> None:
    async with running_target(iqn=IQN_A, portals=("127.0.0.1:0", "127.0.0.2:0"),
                              luns=("mem:16MiB", "mem:8MiB")) as server:
        records, errors = await discover_iqns([server.portals[0]], config())
        assert errors == {}
        portals = {f"{h}:{p}" for h, p in server.portals}
        assert {r.portal for r in records} == portals and {r.iqn for r in records} == {IQN_A}

        luns, errors = await probe_luns(records, config())
        assert errors == {}
        again, _ = await probe_luns([*records, *records], config())  # a record given twice: one login
        assert [(x.scsi_id, x.portals) for x in again] == [(x.scsi_id, x.portals) for x in luns]
        assert await no_connections(server)
    assert len(luns) == 2
    by_id = {lun.lun_id: lun for lun in luns}
    assert sorted(by_id) == [0, 1]
    assert by_id[0].size == 16 * MiB and by_id[1].size == 8 * MiB
    for lun in luns:
        assert set(lun.portals) == portals and len(lun.portals) == 2
        assert lun.iqn == IQN_A and lun.scsi_id and lun.vendor
    assert by_id[0].scsi_id != by_id[1].scsi_id

    root = ET.fromstring(luns_xml(luns))
    assert root.tag == "iscsi-target" and [e.tag for e in root] == ["LUN", "LUN"]
    for elem, lun in zip(root, luns, strict=True):
        expected = [("vendor", lun.vendor), ("serial", lun.serial), ("LUNid", str(lun.lun_id)),
                    ("size", str(lun.size)), ("SCSIid", lun.scsi_id)]
        assert children(elem) == [(tag, text) for tag, text in expected if text]


def test_luns_xml_leaves_out_empty_elements() -> None:
    out = luns_xml([LunRecord("SANPATH", "", 3, 4096, "36001405abc", ("198.18.0.1:3260",), IQN_A)])
    assert out == ('<?xml version="1.0" ?>\n<iscsi-target>\n\t<LUN>\n\t\t<vendor>SANPATH</vendor>\n'
                   "\t\t<LUNid>3</LUNid>\n\t\t<size>4096</size>\n\t\t<SCSIid>36001405abc</SCSIid>\n"
                   "\t</LUN>\n</iscsi-target>\n")


async def test_dead_portal_is_reported_not_fatal() -> None:
    async with running_target(iqn=IQN_A, portals=("127.0.0.1:0",)) as server:
        live = server.portals[0]
        with closed_port() as dead:
            records, errors = await discover_iqns([("127.0.0.1", dead), live], config())
            assert [(r.address, r.port, r.iqn) for r in records] == [(*live, IQN_A)]
            assert list(errors) == [f"127.0.0.1:{dead}"]

            # the LUN stage skips a dead (portal, IQN) and names it
            ghost = DiscoveredTarget("127.0.0.1", dead, 1, IQN_A)
            luns, errors = await probe_luns([ghost, *records], config())
            assert [lun.portals for lun in luns] == [(f"{live[0]}:{live[1]}",)]
            assert list(errors) == [f"127.0.0.1:{dead}/{IQN_A}"]
        assert await no_connections(server)


def test_srlist_xml_round_trip() -> None:
    srs = [("6e1c4a1e-0000-4000-8000-000000000001", "198.18.0.1,198.18.0.2", IQN_A),
           ("6e1c4a1e-0000-4000-8000-000000000002", "198.18.0.3", IQN_B)]
    out = srlist_xml(srs)
    assert "\t\t<UUID>6e1c4a1e-0000-4000-8000-000000000001</UUID>\n" in out
    root = ET.fromstring(out)
    assert root.tag == "SRlist" and [e.tag for e in root] == ["SR", "SR"]
    assert [children(e) for e in root] == [[("UUID", u), ("Target", t), ("TargetIQN", i)] for u, t, i in srs]
    assert srlist_xml([]) == '<?xml version="1.0" ?>\n<SRlist/>\n'
