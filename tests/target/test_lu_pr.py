"""Persistent reservations: PERSISTENT RESERVE IN/OUT data layouts and the RESERVATION CONFLICT
table of SPC-4 5.12.1 for every reservation type."""

from __future__ import annotations

import struct

import pytest

from sanpath.scsi import cdb
from sanpath.scsi.constants import PrInAction, PrOutAction, PrType, SenseKey, Status
from sanpath.scsi.sense import parse_sense
from sanpath.target.backstore import MemoryBackstore
from sanpath.target.lu import LogicalUnit, Nexus, ScsiResult

NAA = bytes.fromhex("6001405abcdef0123456789abcdef012")
TGT = "iqn.2026-01.org.example:array,t,0x0001"
N1 = Nexus("iqn.2026-01.org.example:host1,i,0x400001370000", TGT, 1, 1)
N2 = Nexus("iqn.2026-01.org.example:host2,i,0x400001370000", TGT, 1, 1)
N3 = Nexus("iqn.2026-01.org.example:host3,i,0x400001370000", "iqn.2026-01.org.example:array,t,0x0002", 2, 2)
K1, K2, K3 = 0x1111, 0x2222, 0x3333


def make_lu() -> LogicalUnit:
    return LogicalUnit(MemoryBackstore(1 << 20), naa=NAA, serial="PR0001")


async def prout(
    lu: LogicalUnit,
    nexus: Nexus,
    action: PrOutAction,
    *,
    key: int = 0,
    sa_key: int = 0,
    pr_type: int = 0,
    **kw: bool,
) -> ScsiResult:
    return await lu.execute(
        nexus,
        cdb.persistent_reserve_out(action, pr_type=pr_type),
        cdb.prout_parameter_list(key=key, sa_key=sa_key, **kw),
    )


async def prin(lu: LogicalUnit, nexus: Nexus, action: PrInAction, alloc: int = 4096) -> bytes:
    res = await lu.execute(nexus, cdb.persistent_reserve_in(action, alloc))
    assert res.status == Status.GOOD
    return bytes(res.data)


def keys_of(data: bytes) -> tuple[int, list[int]]:
    gen, length = struct.unpack_from(">II", data)
    return gen, [int.from_bytes(data[8 + i : 16 + i], "big") for i in range(0, min(length, len(data) - 8), 8)]


async def good(res: ScsiResult) -> None:
    assert res.status == Status.GOOD, parse_sense(res.sense) if res.sense else res.status


async def test_register_unregister_and_generation() -> None:
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    await good(await prout(lu, N2, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sa_key=K2))
    gen, keys = keys_of(await prin(lu, N1, PrInAction.READ_KEYS))
    assert gen == 2 and sorted(keys) == [K1, K2]
    # re-register with the wrong reservation key: RESERVATION CONFLICT (libiscsi ProutRegister.Simple)
    assert (
        await prout(lu, N1, PrOutAction.REGISTER, key=0, sa_key=K1 + 1)
    ).status == Status.RESERVATION_CONFLICT
    # an unregistered nexus giving a non-zero reservation key conflicts too
    assert (
        await prout(lu, N3, PrOutAction.REGISTER, key=K3, sa_key=K3)
    ).status == Status.RESERVATION_CONFLICT
    await good(await prout(lu, N1, PrOutAction.REGISTER, key=K1, sa_key=K3))  # change key
    await good(await prout(lu, N1, PrOutAction.REGISTER, key=K3, sa_key=0))  # unregister
    gen, keys = keys_of(await prin(lu, N1, PrInAction.READ_KEYS))
    assert gen == 4 and keys == [K2]


async def test_read_keys_truncated_keeps_additional_length() -> None:
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sa_key=K1))
    data = await prin(lu, N1, PrInAction.READ_KEYS, alloc=8)
    assert len(data) == 8 and struct.unpack(">II", data)[1] == 8


async def test_reserve_release_read_reservation() -> None:
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    assert struct.unpack(">II", await prin(lu, N1, PrInAction.READ_RESERVATION)) == (1, 0)
    assert (await prout(lu, N2, PrOutAction.RESERVE, key=K2, pr_type=PrType.WRITE_EXCLUSIVE)).status == (
        Status.RESERVATION_CONFLICT
    )  # not registered
    await good(await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.WRITE_EXCLUSIVE))
    await good(await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.WRITE_EXCLUSIVE))  # same again
    data = await prin(lu, N2, PrInAction.READ_RESERVATION)
    assert (
        len(data) == 24
        and struct.unpack_from(">IIQ", data) == (1, 16, K1)
        and data[21] == PrType.WRITE_EXCLUSIVE
    )
    res = await prout(lu, N1, PrOutAction.RELEASE, key=K1, pr_type=PrType.EXCLUSIVE_ACCESS)
    assert (parse_sense(res.sense).asc, parse_sense(res.sense).ascq) == (0x26, 0x04)
    await good(await prout(lu, N1, PrOutAction.RELEASE, key=K1, pr_type=PrType.WRITE_EXCLUSIVE))
    assert struct.unpack(">II", await prin(lu, N1, PrInAction.READ_RESERVATION)) == (1, 0)


async def test_all_registrants_reservation_reports_key_zero() -> None:
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    await good(await prout(lu, N2, PrOutAction.REGISTER, sa_key=K2))
    await good(
        await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
    )
    data = await prin(lu, N1, PrInAction.READ_RESERVATION)
    assert struct.unpack_from(">Q", data, 8)[0] == 0 and data[21] == PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS
    # any registrant holds it: N2 may release; the reservation persists until the last registrant leaves
    await good(await prout(lu, N1, PrOutAction.REGISTER, key=K1, sa_key=0))
    assert len(await prin(lu, N1, PrInAction.READ_RESERVATION)) == 24
    await good(await prout(lu, N2, PrOutAction.REGISTER, key=K2, sa_key=0))
    assert len(await prin(lu, N1, PrInAction.READ_RESERVATION)) == 8


# reg_read, reg_write, unreg_read, unreg_write for a non-holder (libiscsi ProutReserve.Access*)
ACCESS = [
    (PrType.EXCLUSIVE_ACCESS, False, False, False, False),
    (PrType.WRITE_EXCLUSIVE, True, False, True, False),
    (PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, True, True, False, False),
    (PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, True, True, True, False),
    (PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, True, True, False, False),
    (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, True, True, True, False),
]


@pytest.mark.parametrize(("pr_type", "reg_read", "reg_write", "unreg_read", "unreg_write"), ACCESS)
async def test_conflict_table(
    pr_type: PrType, reg_read: bool, reg_write: bool, unreg_read: bool, unreg_write: bool
) -> None:
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    await good(await prout(lu, N2, PrOutAction.REGISTER, sa_key=K2))
    await good(await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=pr_type))

    async def allowed(nexus: Nexus, write: bool) -> bool:
        res = await (
            lu.execute(nexus, cdb.write_10(1, 1), bytes(512))
            if write
            else lu.execute(nexus, cdb.read_10(1, 1))
        )
        assert res.status in (Status.GOOD, Status.RESERVATION_CONFLICT)
        return res.status == Status.GOOD

    assert await allowed(N1, False) and await allowed(N1, True)  # the holder
    assert await allowed(N2, False) == reg_read and await allowed(N2, True) == reg_write
    assert await allowed(N3, False) == unreg_read and await allowed(N3, True) == unreg_write
    # commands outside the medium never conflict
    for nexus in (N2, N3):
        for never in (
            cdb.inquiry(),
            cdb.test_unit_ready(),
            cdb.read_capacity_16(),
            cdb.report_target_port_groups(),
            cdb.persistent_reserve_in(PrInAction.READ_KEYS),
        ):
            assert (await lu.execute(nexus, never)).status == Status.GOOD
    # and a registered non-holder cannot take a conflicting reservation
    res = await prout(lu, N2, PrOutAction.RESERVE, key=K2, pr_type=PrType.WRITE_EXCLUSIVE)
    assert res.status == Status.RESERVATION_CONFLICT


async def test_holder_unregistering_releases_and_notifies() -> None:
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    await good(await prout(lu, N2, PrOutAction.REGISTER, sa_key=K2))
    await good(
        await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    )
    await good(await prout(lu, N1, PrOutAction.REGISTER, key=K1, sa_key=0))
    res = await lu.execute(N2, cdb.persistent_reserve_in(PrInAction.READ_RESERVATION))  # PRIN sees the UA too
    assert (parse_sense(res.sense).key, parse_sense(res.sense).asc, parse_sense(res.sense).ascq) == (
        SenseKey.UNIT_ATTENTION,
        0x2A,
        0x04,
    )
    assert len(await prin(lu, N2, PrInAction.READ_RESERVATION)) == 8


async def test_clear() -> None:
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    await good(await prout(lu, N2, PrOutAction.REGISTER, sa_key=K2))
    await good(await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.EXCLUSIVE_ACCESS))
    assert (await prout(lu, N3, PrOutAction.CLEAR, key=K3)).status == Status.RESERVATION_CONFLICT
    await good(await prout(lu, N2, PrOutAction.CLEAR, key=K2))
    gen, keys = keys_of(await prin(lu, N2, PrInAction.READ_KEYS))
    assert keys == [] and gen == 3
    assert parse_sense((await lu.execute(N1, cdb.read_10(0, 1))).sense).asc == 0x2A  # RESERVATIONS PREEMPTED
    assert (await lu.execute(N1, cdb.write_10(0, 1), bytes(512))).status == Status.GOOD


async def test_preempt_removes_registration_and_bumps_generation() -> None:
    """libiscsi ProutPreempt.RemoveRegistration (both sides usually hold the same key there)."""
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sa_key=K1))
    await good(await prout(lu, N2, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sa_key=K1))
    gen0, _ = keys_of(await prin(lu, N1, PrInAction.READ_KEYS))
    await good(await prout(lu, N2, PrOutAction.PREEMPT, key=K1, sa_key=K1, pr_type=PrType.EXCLUSIVE_ACCESS))
    gen, keys = keys_of(await prin(lu, N2, PrInAction.READ_KEYS))
    assert keys == [K1] and gen == gen0 + 1
    ua = parse_sense((await lu.execute(N1, cdb.test_unit_ready())).sense)
    assert (ua.key, ua.asc, ua.ascq) == (SenseKey.UNIT_ATTENTION, 0x2A, 0x05)


async def test_preempt_takes_over_reservation() -> None:
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    await good(await prout(lu, N2, PrOutAction.REGISTER, sa_key=K2))
    await good(await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.EXCLUSIVE_ACCESS))
    assert (
        await prout(lu, N2, PrOutAction.PREEMPT, key=K2, sa_key=0x9999, pr_type=PrType.WRITE_EXCLUSIVE)
    ).status == Status.RESERVATION_CONFLICT
    bad = await prout(lu, N2, PrOutAction.PREEMPT, key=K2, sa_key=0, pr_type=PrType.WRITE_EXCLUSIVE)
    assert parse_sense(bad.sense).asc == 0x26
    await good(
        await prout(lu, N2, PrOutAction.PREEMPT_AND_ABORT, key=K2, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE)
    )
    data = await prin(lu, N2, PrInAction.READ_RESERVATION)
    assert struct.unpack_from(">Q", data, 8)[0] == K2 and data[21] == PrType.WRITE_EXCLUSIVE
    assert keys_of(await prin(lu, N2, PrInAction.READ_KEYS))[1] == [K2]
    assert (await lu.execute(N1, cdb.read_10(0, 1))).status == Status.CHECK_CONDITION  # 2Ah/05h first
    assert (await lu.execute(N1, cdb.write_10(0, 1), bytes(512))).status == Status.RESERVATION_CONFLICT


async def test_report_capabilities_and_full_status() -> None:
    lu = make_lu()
    caps = await prin(lu, N1, PrInAction.REPORT_CAPABILITIES)
    assert len(caps) == 8 and caps[:2] == b"\x00\x08" and caps[3] & 0x80  # TMV
    assert caps[4] == 0xEA and caps[5] == 0x01  # all six SPC-4 types
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    await good(await prout(lu, N3, PrOutAction.REGISTER, sa_key=K3))
    await good(await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.WRITE_EXCLUSIVE))
    data = await prin(lu, N1, PrInAction.READ_FULL_STATUS)
    _gen, length = struct.unpack_from(">II", data)
    assert length == len(data) - 8
    pos, seen = 8, []
    while pos < len(data):
        key, flags, scope_type, rtpi, tid_len = struct.unpack_from(">Q4xBB4xHI", data, pos)
        tid = data[pos + 24 : pos + 24 + tid_len]
        assert tid[0] == 0x45 and tid_len % 4 == 0 and tid_len >= 24
        seen.append((key, bool(flags & 1), scope_type, rtpi, tid[4:].rstrip(b"\0").decode()))
        pos += 24 + tid_len
    assert sorted(seen) == [
        (K1, True, PrType.WRITE_EXCLUSIVE, 1, N1.initiator_port),
        (K3, False, 0, 2, N3.initiator_port),
    ]


async def test_prout_parameter_checks() -> None:
    lu = make_lu()
    short = await lu.execute(N1, cdb.persistent_reserve_out(PrOutAction.REGISTER, param_len=16), bytes(16))
    assert (parse_sense(short.sense).asc, parse_sense(short.sense).ascq) == (0x1A, 0)
    aptpl = await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1, aptpl=True)
    assert parse_sense(aptpl.sense).asc == 0x26
    all_tg = await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1, all_tg_pt=True)
    assert parse_sense(all_tg.sense).asc == 0x26
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    bad_type = await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=2)
    assert parse_sense(bad_type.sense).asc == 0x24
    move = await lu.execute(N1, cdb.persistent_reserve_out(PrOutAction.REGISTER_AND_MOVE), bytes(24))
    assert parse_sense(move.sense).asc == 0x24
    bad_in = await lu.execute(N1, cdb.persistent_reserve_in(5))
    assert parse_sense(bad_in.sense).asc == 0x24


async def test_registrations_survive_reset() -> None:
    lu = make_lu()
    await good(await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1))
    await good(await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.EXCLUSIVE_ACCESS))
    lu.reset("lun")
    await lu.execute(N1, cdb.test_unit_ready())  # consume the unit attention
    assert keys_of(await prin(lu, N1, PrInAction.READ_KEYS))[1] == [K1]
    assert (await lu.execute(N2, cdb.read_10(0, 1))).status == Status.RESERVATION_CONFLICT
