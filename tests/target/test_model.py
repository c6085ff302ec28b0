"""The target object model: the dump()/setup() round trip of every class (also through JSON), the errors
setup() gives, the layout the array families build in it, the answer for a missing LUN, and that a
connection carries no fault wrapper unless a fault is active on its portal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanpath.errors import ConfigError
from sanpath.scsi import cdb as C
from sanpath.scsi.constants import LU_NOT_SUPPORTED, SenseKey, Status
from sanpath.scsi.sense import parse_sense
from sanpath.target.config import ChapSpec, quick_config
from sanpath.target.faults import BlackHole, OutputFaults
from sanpath.target.model import LUN, TPG, MappedLUN, NetworkPortal, NodeACL, Target
from sanpath.target.server import TargetServer
from sanpath.target.spc import report_luns_data
from sanpath.testing.inproc import TEST_IQN, running_target
from sanpath.testing.rawinit import login

EXAMPLES = settings(max_examples=40, deadline=None)

names = st.text("abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=12)
iqns = names.map(lambda s: f"iqn.2026-11.org.example:{s}")
portals = st.builds(NetworkPortal, st.ip_addresses().map(str), st.integers(0, 65535))
luns = st.builds(LUN, st.integers(0, 16383), st.text(min_size=1, max_size=24))
mapped = st.builds(MappedLUN, st.integers(0, 16383), st.integers(0, 16383), st.booleans())
acls = st.builds(NodeACL, iqns, st.lists(mapped, max_size=3).map(tuple))
tpgs = st.builds(TPG, st.integers(1, 65535), st.integers(1, 65535), st.integers(0, 65535),
                 st.none() | st.sampled_from(["A", "B"]), st.lists(portals, max_size=3).map(tuple),
                 st.lists(luns, max_size=3, unique_by=lambda x: x.index).map(tuple),
                 st.lists(acls, max_size=2).map(tuple))
secrets = st.binary(min_size=1, max_size=20)
chaps = st.none() | st.builds(ChapSpec, names, secrets) | st.builds(ChapSpec, names, secrets, names, secrets)
targets = st.builds(Target, iqns, st.text(max_size=10), st.lists(tpgs, max_size=3, unique_by=lambda t: t.tag)
                    .map(tuple), chaps)


@pytest.mark.parametrize("cls, strategy", [(NetworkPortal, portals), (LUN, luns), (MappedLUN, mapped),
                                           (NodeACL, acls), (TPG, tpgs), (Target, targets)],
                         ids=lambda x: getattr(x, "__name__", ""))
@EXAMPLES
@given(data=st.data())
def test_setup_of_dump_round_trips(cls: Any, strategy: st.SearchStrategy[Any], data: st.DataObject) -> None:
    obj = data.draw(strategy)
    assert cls.setup(obj.dump()) == obj
    assert cls.setup(json.loads(json.dumps(obj.dump()))) == obj  # a dump is plain JSON


def test_bound_logical_units_are_not_part_of_the_facts() -> None:
    server = TargetServer(quick_config(TEST_IQN, ["127.0.0.1:0"], ["mem:1MiB", "mem:1MiB"]))
    (target,) = server.targets.values()
    again = Target.setup(target.dump())
    assert again == target and not again.luns
    assert sorted(target.luns) == [0, 1]
    assert [lun.storage_object for lun in target.tpgs[0].luns] == [lu.serial for lu in target.luns.values()]


@pytest.mark.parametrize("cls, d, key", [
    (NetworkPortal, {"ip_address": "localhost", "port": 3260}, "network_portal.ip_address"),
    (NetworkPortal, {"ip_address": "::1", "port": 70000}, "network_portal.port"),
    (LUN, {"index": 0}, "lun.storage_object"),
    (MappedLUN, {"mapped_lun": 0, "tpg_lun": 0, "write_protect": "no"}, "mapped_lun.write_protect"),
    (NodeACL, {"node_wwn": "host1"}, "node_acl.node_wwn"),
    (TPG, {"tag": 0, "relative_port_id": 1, "tpg_id": 1}, "tpg.tag"),
    (TPG, {"tag": 1, "relative_port_id": 1, "tpg_id": 1, "luns": [{"index": 1, "storage_object": "a"}] * 2},
     "tpg.luns"),
    (Target, {"iqn": TEST_IQN, "tpgs": [{"tag": 1, "relative_port_id": 1, "tpg_id": 1, "portals": []}]},
     "tpg.portals"),
    (Target, {"iqn": TEST_IQN, "chap": {"userid": "u", "password": "p", "mutual_userid": "t"}},
     "chap.mutual_userid"),
    (Target, [TEST_IQN], "target"),
])
def test_setup_names_the_wrong_key(cls: Any, d: Any, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        cls.setup(d)
    assert info.value.key == key


def test_array_layouts_in_the_model() -> None:
    portal = TargetServer(quick_config(TEST_IQN, ["127.0.0.1:0", "127.0.0.2:0"], ["mem:1MiB"]))
    (t,) = portal.targets.values()
    assert [(g.tag, g.relative_port_id, g.tpg_id, g.controller) for g in t.tpgs] == [(1, 1, 1, None)]
    assert t.tpgs[0].network_portals == (("127.0.0.1", 0), ("127.0.0.2", 0))
    multi = TargetServer(quick_config(TEST_IQN, ["127.0.0.1:0", "127.0.0.2:0"], ["mem:1MiB"], profile="multi-iqn"))
    assert {iqn: [(g.tag, g.relative_port_id, g.tpg_id, g.controller) for g in x.tpgs]
            for iqn, x in multi.targets.items()} == {f"{TEST_IQN}-a1": [(1, 1, 1, "A")],
                                                     f"{TEST_IQN}-b1": [(1, 2, 2, "B")]}
    a, b = multi.targets.values()
    assert a.luns[0] is b.luns[0]  # one logical unit behind every IQN


def test_acl_maps_every_lun_and_decides_login() -> None:
    t = Target(TEST_IQN, tpgs=(TPG(1, 1, 1, luns=(LUN(0, "s0"), LUN(3, "s3")),
                                   node_acls=(NodeACL("iqn.2026-11.org.example:host1",
                                                      (MappedLUN(0, 0), MappedLUN(3, 3))),)),))
    assert t.allows("iqn.2026-11.org.example:host1") and not t.allows("iqn.2026-11.org.example:host2")
    assert Target(TEST_IQN, tpgs=(TPG(1, 1, 1),)).allows("iqn.2026-11.org.example:anyone")
    with pytest.raises(KeyError, match="no target portal group 2"):
        t.port_for_tpgt(2)


def test_no_lun_result() -> None:
    t = Target(TEST_IQN, tpgs=(TPG(1, 1, 1),))
    t.luns = {0: None, 5: None}  # type: ignore[dict-item]  # only the LUN numbers matter here
    r = t.no_lun_result(C.report_luns(alloc=4096))
    assert (r.status, r.data) == (Status.GOOD, report_luns_data([0, 5]))
    r = t.no_lun_result(C.inquiry(alloc=8))
    assert r.status == Status.GOOD and bytes(r.data) == bytes([0x7F, 0, 6, 2, 31, 0, 0, 0])
    r = t.no_lun_result(C.test_unit_ready())
    s = parse_sense(r.sense)
    assert r.status == Status.CHECK_CONDITION and (s.key, (s.asc, s.ascq)) == (SenseKey.ILLEGAL_REQUEST,
                                                                               LU_NOT_SUPPORTED)


async def test_a_connection_is_wrapped_only_while_a_fault_touches_it() -> None:
    async with running_target(portals=("127.0.0.1:0", "127.0.0.2:0")) as server:
        one, two = server.portals
        a, b = await login(*one, TEST_IQN), await login(*two, TEST_IQN)
        conn_a, conn_b = (next(iter(server.connections_on(p))) for p in (one, two))
        for conn in (conn_a, conn_b):
            assert type(conn.transport).__module__.startswith("asyncio") and conn.deliver == conn.frame
        f = server.faults.inject("delay", portal=one, seconds=0.01)
        assert isinstance(conn_a.transport, OutputFaults) and not isinstance(conn_b.transport, OutputFaults)
        g = server.faults.inject("medium-error", after_commands=5)
        assert conn_a.deliver != conn_a.frame and conn_b.deliver != conn_b.frame
        await server.faults.restore(f.id)
        await server.faults.restore(g.id)
        assert not isinstance(conn_a.transport, OutputFaults) and conn_a.deliver == conn_a.frame
        server.faults.inject("blackhole", portal=two)
        assert isinstance(conn_b.transport, BlackHole)
        await server.faults.restore("all")
        for s in (a, b):
            await s.close()
