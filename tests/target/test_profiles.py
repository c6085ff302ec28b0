"""Array families through real sockets: discovery (sanpath initiator and libiscsi's iscsi-ls), one LUN
identity through every path, data shared between controllers; ALUA states, STPG, implicit moves,
transitioning; RDAC ownership, 94h/01h on the passive controller, MODE SELECT transfers."""

from __future__ import annotations

import asyncio
import shutil
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from sanpath.aio import within
from sanpath.initiator.device import ScsiDevice
from sanpath.initiator.discovery import DiscoveredTarget, discover
from sanpath.initiator.session import Session, SessionConfig
from sanpath.multipath.config import MultipathConfig
from sanpath.scsi import cdb as C
from sanpath.scsi.sense import parse_sense
from sanpath.target.config import quick_config
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import running_target

IQN = "iqn.2026-11.org.sanpath.test:family"
PORTALS = ["127.0.0.1:0", "127.0.0.2:0", "127.0.0.3:0", "127.0.0.4:0"]  # A: .1 .2, B: .3 .4
HANG_GUARD = 30.0
AO, AN, STANDBY, UNAVAILABLE, TRANSITIONING = 0x0, 0x1, 0x2, 0x3, 0xF


def make(profile: str, **kw: object) -> TargetServer:
    return TargetServer(quick_config(IQN, PORTALS, ["mem:8MiB", "mem:4MiB"], profile=profile, **kw))  # type: ignore[arg-type]


@asynccontextmanager
async def array(profile: str, **kw: object) -> AsyncIterator[TargetServer]:
    spec = quick_config(IQN, PORTALS, ["mem:8MiB", "mem:4MiB"], profile=profile, **kw)  # type: ignore[arg-type]
    async with running_target(spec=spec) as server:
        yield server


@asynccontextmanager
async def device(host: str, port: int, iqn: str, lun: int = 0, *, standby: bool = False,
                 **kw: object) -> AsyncIterator[ScsiDevice]:
    session = await Session.open(SessionConfig(host, port, iqn, nop_interval=0, **kw))  # type: ignore[arg-type]
    try:
        dev = ScsiDevice(session, lun)
        yield dev if standby else await dev.open()  # READ CAPACITY is refused in standby (SPC-4 5.15.2.4.4)
    finally:
        await session.close()


def controller_portal(server: TargetServer, name: str) -> tuple[str, int]:
    return server.arrays[0].controllers[name].portals[0]


async def iscsi_ls(host: str, port: int) -> set[tuple[str, str]]:
    """(IQN, portal) pairs libiscsi's iscsi-ls reports; run as a subprocess so the target keeps serving."""
    proc = await asyncio.create_subprocess_exec("iscsi-ls", f"iscsi://{host}:{port}",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await within(proc.communicate(), HANG_GUARD)
    assert proc.returncode == 0, err
    pairs = set()
    for line in out.decode().splitlines():
        target, _, portal = line.partition(" Portal:")
        if target.startswith("Target:"):
            pairs.add((target[len("Target:"):], portal.rsplit(",", 1)[0]))
    return pairs


def expected_records(server: TargetServer, profile: str) -> set[tuple[str, str]]:
    bound = [f"{h}:{p}" for h, p in server.portals]
    if profile == "multi-iqn":
        return {(f"{IQN}-{c}", p) for c, p in zip(("a1", "a2", "b1", "b2"), bound, strict=True)}
    return {(IQN, p) for p in bound}


def sense_of(result: object) -> tuple[int, int, int]:
    s = parse_sense(result.sense)  # type: ignore[attr-defined]
    return s.key, s.asc, s.ascq


@pytest.mark.parametrize("profile", ["portal", "multi-iqn", "alua", "rdac"])
async def test_discovery_identity_and_data_through_every_path(profile: str) -> None:
    async with array(profile) as server:
        want = expected_records(server, profile)
        records, errors = await discover(server.portals)
        assert not errors
        assert {(r.iqn, r.portal) for r in records} == want
        iqns = {r.iqn for r in records}
        assert len(iqns) == (4 if profile == "multi-iqn" else 1)
        if shutil.which("iscsi-ls"):
            for host, port in server.portals:  # discovery through any portal answers the same
                assert await iscsi_ls(host, port) == want
        ids = set()
        for r in records:
            async with device(r.address, r.port, r.iqn) as dev:
                ids.add((await dev.scsi_id(), await dev.serial()))
        assert len(ids) == 1, ids  # one LUN identity (NAA, serial) through every path
        await _shared_data(server, profile, records)


async def _shared_data(server: TargetServer, profile: str, records: list[DiscoveredTarget]) -> None:
    """Written through controller A, read through controller B (rdac: after moving ownership)."""
    a_host, a_port = controller_portal(server, "A") if profile != "portal" else server.portals[0]
    b_host, b_port = controller_portal(server, "B") if profile != "portal" else server.portals[-1]
    iqn_at = {(r.address, r.port): r.iqn for r in records}
    block = bytes(range(256)) * 16
    async with device(a_host, a_port, iqn_at[(a_host, a_port)]) as a:
        await a.write(8192, block)
    async with device(b_host, b_port, iqn_at[(b_host, b_port)]) as b:
        if profile == "rdac":
            await b.command(rdac_transfer(expanded=True), data_out=rdac_page(expanded=True, luns=[0]))
        assert await b.read(8192, len(block)) == block


# --- ALUA ---------------------------------------------------------------------------------------


async def rtpg_states(dev: ScsiDevice) -> dict[int, int]:
    return {g.tpg_id: g.alua_state for g in (await dev.report_target_port_groups()).groups}


def stpg(tpg_states: dict[int, int]) -> tuple[bytes, bytes]:
    params = bytes(4) + b"".join(struct.pack(">BxH", s, t) for t, s in tpg_states.items())
    return bytes((0xA4, 0x0A, 0, 0, 0, 0)) + struct.pack(">I", len(params)) + bytes(2), params


async def test_alua_states_standby_sense_and_explicit_transition() -> None:
    async with array("alua", non_owner_state="standby") as server:
        (ah, ap), (bh, bp) = controller_portal(server, "A"), controller_portal(server, "B")
        async with device(ah, ap, IQN) as a, device(bh, bp, IQN, standby=True) as b:
            assert (await a.inquiry()).tpgs == 0b11
            assert await rtpg_states(a) == await rtpg_states(b) == {1: AO, 2: STANDBY}
            r = await b.command(C.read_16(0, 1), read_length=512, check=False)
            assert sense_of(r) == (0x2, 0x04, 0x0B)  # NOT READY, target port in standby state
            r = await b.command(C.test_unit_ready(), check=False)
            assert sense_of(r) == (0x2, 0x04, 0x0B)
            await b.inquiry()  # allowed in standby
            cdb, params = stpg({2: AO})
            await b.command(cdb, data_out=params)  # explicit: through B, make B active/optimized
            assert await rtpg_states(b) == {1: STANDBY, 2: AO}
            await b.open()
            await b.read(0, 4096)
            before = a.session.unit_attentions
            r = await a.command(C.read_16(0, 1), read_length=512, check=False)
            assert sense_of(r) == (0x2, 0x04, 0x0B)
            assert a.session.unit_attentions == before + 1  # 2Ah/06h reached the other nexus first
            # LUN 1 kept its own owner
            async with device(ah, ap, IQN, lun=1) as a1:
                assert await rtpg_states(a1) == {1: AO, 2: STANDBY}


async def test_alua_implicit_on_owner_failure_and_on_sustained_io() -> None:
    async with array("alua", implicit_after_commands=5) as server:
        (bh, bp) = controller_portal(server, "B")
        async with device(bh, bp, IQN) as b:
            assert await rtpg_states(b) == {1: AO, 2: AN}
            for _ in range(5):
                await b.read(0, 512)  # active/non-optimized: allowed, and counted
            assert await rtpg_states(b) == {1: AN, 2: AO}
            assert server.arrays[0].owner(0) == "B" and server.arrays[0].owner(1) == "A"
            async with device(bh, bp, IQN, lun=1) as b1:
                server.faults.inject("controller", controller="A")
                assert await rtpg_states(b1) == {1: UNAVAILABLE, 2: AO}  # LUN 1 followed the owner loss
                await server.faults.restore("all")
                assert await rtpg_states(b1) == {1: AN, 2: AO}  # no automatic failback


async def test_alua_transitioning_state_and_sense() -> None:
    async with array("alua", transition_time=0.5) as server:
        (ah, ap), (bh, bp) = controller_portal(server, "A"), controller_portal(server, "B")
        async with device(ah, ap, IQN) as a, device(bh, bp, IQN) as b:
            assert (await a.report_target_port_groups()).implicit_transition_time == 1
            cdb, params = stpg({2: AO})
            await b.command(cdb, data_out=params)
            assert await rtpg_states(a) == {1: TRANSITIONING, 2: TRANSITIONING}
            r = await a.command(C.read_16(0, 1), read_length=512, check=False)
            assert sense_of(r) == (0x2, 0x04, 0x0A)
            for _ in range(int(HANG_GUARD / 0.05)):
                if server.arrays[0].owner(0) == "B":
                    break
                await asyncio.sleep(0.05)
            assert await rtpg_states(b) == {1: AN, 2: AO}


async def test_alua_stpg_refuses_bad_requests() -> None:
    async with array("alua", transition_time=0) as server:
        (ah, ap) = controller_portal(server, "A")
        async with device(ah, ap, IQN) as a:
            for states in ({9: AO}, {2: UNAVAILABLE}):
                cdb, params = stpg(states)
                r = await a.command(cdb, data_out=params, check=False)
                assert sense_of(r) == (0x5, 0x26, 0x00)
            server.faults.inject("controller", controller="B")
            cdb, params = stpg({2: AO})
            r = await a.command(cdb, data_out=params, check=False)
            assert sense_of(r) == (0x4, 0x67, 0x0A)  # SET TARGET PORT GROUPS COMMAND FAILED
            await server.faults.restore("all")


# --- RDAC ---------------------------------------------------------------------------------------


def rdac_transfer(*, expanded: bool, length: int | None = None) -> bytes:
    if expanded:
        return bytes((0x55, 0x10, 0, 0, 0, 0, 0)) + struct.pack(">H", length or 308) + b"\0"
    return bytes((0x15, 0x10, 0, 0, length or 118, 0))


def rdac_page(*, expanded: bool, luns: list[int] | None = None) -> bytes:
    """The Redundant Controller page as scsi_dh_rdac (expanded, MODE SELECT 10) or sg_rdac -6 (legacy,
    with a block descriptor) send it; ``luns`` None = transfer all (mode 01h)."""
    size = 256 if expanded else 32
    common = bytearray(38)
    common[33] = 0x01 if luns is None else 0x02
    common[36], common[37] = 20, 0x02
    table = bytearray(size)
    for n in luns or []:
        table[n] = 0x81
    if expanded:
        page = struct.pack(">BBH", 0x6C, 0x01, 0x128) + common + table + bytes(2)
        return bytes(8) + page
    page = bytes((0x2C, 0x68)) + common + table + bytes(34)
    return bytes((0x75, 0, 0, 8)) + bytes((0, 0, 0, 0, 0, 0, 2, 0)) + page


async def vpd_c9(dev: ScsiDevice) -> tuple[bool, int, int, int]:
    page = await dev.vpd(0xC9)
    assert page[1] == 0xC9 and page[3] == 0x2C and page[4:8] == b"vace"
    return bool(page[8] & 0x01), page[9] & 0x0F, page[10] & 0x0F, page[12] & 0x0F


async def test_rdac_passive_controller_fails_io_until_ownership_moves() -> None:
    async with array("rdac") as server:
        (ah, ap), (bh, bp) = controller_portal(server, "A"), controller_portal(server, "B")
        async with device(ah, ap, IQN) as a, device(bh, bp, IQN) as b:
            assert (await a.inquiry()).tpgs == 0
            assert {0xC2, 0xC4, 0xC8, 0xC9} <= set(await b.supported_vpd_pages())
            assert await vpd_c9(a) == (True, 1, AO, STANDBY)
            assert await vpd_c9(b) == (False, 2, STANDBY, AO)
            c4a, c4b = await a.vpd(0xC4), await b.vpd(0xC4)
            assert c4a[4:8] == b"subs" and c4a[8:24] == c4b[8:24] and (c4a[29], c4b[29]) == (0x31, 0x32)
            c8 = await b.vpd(0xC8)
            assert c8[4:8] == b"edid" and c8[-1] == 0
            await b.command(C.test_unit_ready())  # the passive path answers everything but I/O
            for cdb, kw in ((C.read_16(0, 1), {"read_length": 512}), (C.write_16(0, 1), {"data_out": bytes(512)})):
                r = await b.command(cdb, check=False, **kw)  # type: ignore[arg-type]
                assert sense_of(r) == (0x5, 0x94, 0x01)
            # explicit transfer: MODE SELECT (10) of the expanded page through B, LUN 0 only
            await b.command(rdac_transfer(expanded=True), data_out=rdac_page(expanded=True, luns=[0]))
            assert await vpd_c9(b) == (True, 2, AO, STANDBY)
            await b.write(0, b"\x5a" * 512)
            r = await a.command(C.read_16(0, 1), read_length=512, check=False)
            assert sense_of(r) == (0x5, 0x94, 0x01)
            assert server.arrays[0].owner(1) == "A"
            # sg_rdac -a -6: MODE SELECT (6), legacy page after a block descriptor, every LUN to A
            await a.command(rdac_transfer(expanded=False), data_out=rdac_page(expanded=False))
            assert await a.read(0, 512) == b"\x5a" * 512
            sense = await a.command(C.mode_sense_10(page=0x2C, subpage=0x01, dbd=True, alloc=400), read_length=400)
            table = bytes(sense.data)[8 + 4 + 38 : 8 + 4 + 38 + 2]
            assert table == b"\x01\x01"  # both LUNs owned by the controller asked


async def test_rdac_answers_inquiry_as_lsi_so_multipath_picks_rdac_settings() -> None:
    async with array("rdac") as server, device(*controller_portal(server, "A"), IQN) as a:
        inq = await a.inquiry()
    assert (inq.vendor, inq.product) == ("LSI", "INF-01-00")
    policy = MultipathConfig().resolve(inq.vendor, inq.product).policy()
    assert (policy.handler, policy.prio, policy.path_checker) == ("rdac", "rdac", "rdac")


async def test_rdac_owner_loss_moves_ownership() -> None:
    async with array("rdac") as server:
        (bh, bp) = controller_portal(server, "B")
        async with device(bh, bp, IQN) as b:
            r = await b.command(C.read_16(0, 1), read_length=512, check=False)
            assert sense_of(r) == (0x5, 0x94, 0x01)
            fault = server.faults.inject("controller", controller="A")
            await b.read(0, 512)
            assert await vpd_c9(b) == (True, 2, AO, UNAVAILABLE)
            await server.faults.restore(fault.id)
            assert server.arrays[0].owner(0) == "B"


async def test_rdac_bad_mode_select() -> None:
    async with array("rdac") as server:
        (ah, ap) = controller_portal(server, "A")
        async with device(ah, ap, IQN) as a:
            page = bytearray(rdac_page(expanded=True, luns=[0]))
            page[8 + 4 + 33] = 0x07
            r = await a.command(rdac_transfer(expanded=True), data_out=bytes(page), check=False)
            assert sense_of(r)[:2] == (0x5, 0x26)


def test_quick_form_portal_split_and_errors() -> None:
    spec = quick_config(IQN, PORTALS[:3], ["mem:1MiB"], profile="alua")
    assert [(c.name, len(c.portals)) for c in spec.targets[0].controllers] == [("A", 2), ("B", 1)]
    spec = quick_config(IQN, ["B=127.0.0.1:0", "A=127.0.0.2:0"], ["mem:1MiB"], profile="rdac", owner="B")
    assert [(c.name, c.portals[0][0]) for c in spec.targets[0].controllers] == [("A", "127.0.0.2"),
                                                                                ("B", "127.0.0.1")]
    from sanpath.errors import ConfigError

    with pytest.raises(ConfigError, match="at least two controllers"):
        quick_config(IQN, PORTALS[:1], ["mem:1MiB"], profile="alua")
    with pytest.raises(ConfigError, match="owner"):
        quick_config(IQN, PORTALS, ["mem:1MiB"], profile="alua", owner="C")
    assert make("portal").arrays[0].ports[0].network_portals == tuple((p.split(":")[0], 0) for p in PORTALS)
