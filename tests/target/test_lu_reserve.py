"""SPC-2 reservations (RESERVE / RELEASE (6) and (10)): who may do what while one is held, what ends
one, and how they meet persistent reservations (SPC-4 5.12.3, CRH=1)."""

from __future__ import annotations

import struct

import pytest

from sanpath.scsi import cdb
from sanpath.scsi.constants import PrInAction, PrOutAction, PrType, SenseKey, Status
from sanpath.scsi.sense import FieldPointer, parse_sense
from sanpath.target.backstore import MemoryBackstore
from sanpath.target.lu import LogicalUnit, Nexus, ScsiResult

NAA = bytes.fromhex("6001405abcdef0123456789abcdef012")
TGT = "iqn.2026-01.org.example:array,t,0x0001"
N1 = Nexus("iqn.2026-01.org.example:host1,i,0x400001370000", TGT, 1, 1)
N2 = Nexus("iqn.2026-01.org.example:host2,i,0x400001370000", TGT, 1, 1)
K1, K2 = 0x1111, 0x2222
RESERVE_6, RELEASE_6 = bytes((0x16, 0, 0, 0, 0, 0)), bytes((0x17, 0, 0, 0, 0, 0))
RESERVE_10, RELEASE_10 = bytes((0x56,)) + bytes(9), bytes((0x57,)) + bytes(9)
CONFLICT = Status.RESERVATION_CONFLICT


def make_lu() -> LogicalUnit:
    return LogicalUnit(MemoryBackstore(1 << 20), naa=NAA, serial="RS0001", ua_on_new_nexus=False)


async def status(lu: LogicalUnit, nexus: Nexus, c: bytes, data: bytes = b"") -> int:
    return (await lu.execute(nexus, c, data)).status


async def prout(lu: LogicalUnit, nexus: Nexus, action: PrOutAction, *, key: int = 0, sa_key: int = 0,
                pr_type: int = 0) -> ScsiResult:
    return await lu.execute(nexus, cdb.persistent_reserve_out(action, pr_type=pr_type),
                            cdb.prout_parameter_list(key=key, sa_key=sa_key))


@pytest.mark.parametrize(("reserve", "release"), [(RESERVE_6, RELEASE_6), (RESERVE_10, RELEASE_10)])
async def test_reserve_excludes_other_nexuses(reserve: bytes, release: bytes) -> None:
    lu = make_lu()
    assert await status(lu, N1, reserve) == Status.GOOD
    assert await status(lu, N1, reserve) == Status.GOOD  # the holder may reserve again
    assert lu.pr.reserved_by == N1.key
    assert await status(lu, N2, reserve) == CONFLICT
    assert await status(lu, N2, release) == Status.GOOD and lu.pr.reserved_by == N1.key  # a no-op
    for conflicting in (cdb.read_10(0, 1), cdb.test_unit_ready(), cdb.mode_sense_6(0x3F), cdb.read_capacity_16()):
        assert await status(lu, N2, conflicting) == CONFLICT
    assert await status(lu, N2, cdb.write_10(0, 1), bytes(512)) == CONFLICT
    for allowed in (cdb.inquiry(), cdb.report_luns(), bytes((0x03, 0, 0, 0, 18, 0)),
                    cdb.report_target_port_groups(), bytes((0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0))):
        assert await status(lu, N2, allowed) == Status.GOOD, allowed.hex()
    for own in (cdb.read_10(0, 1), cdb.mode_sense_6(0x3F)):
        assert await status(lu, N1, own) == Status.GOOD
    assert await status(lu, N1, release) == Status.GOOD and lu.pr.reserved_by is None
    assert await status(lu, N2, reserve) == Status.GOOD
    assert await status(lu, N2, release) == Status.GOOD
    assert await status(lu, N1, release) == Status.GOOD  # nothing reserved: still GOOD


async def test_reset_and_nexus_loss_release_the_reservation() -> None:
    lu = make_lu()
    for end in (lambda: lu.reset("lun"), lambda: lu.reset("target"), lambda: lu.reset("target_cold"),
                lambda: lu.nexus_lost(N1)):
        assert await status(lu, N1, RESERVE_6) == Status.GOOD
        assert await status(lu, N2, RESERVE_6) == CONFLICT
        end()
        assert lu.pr.reserved_by is None
        await lu.execute(N2, cdb.test_unit_ready())  # consume a reset's unit attention
        assert await status(lu, N2, RESERVE_6) == Status.GOOD
        assert await status(lu, N2, RELEASE_6) == Status.GOOD
        await lu.execute(N1, cdb.test_unit_ready())
    assert await status(lu, N2, RESERVE_6) == Status.GOOD
    lu.nexus_lost(N1)  # another nexus going away leaves it alone
    assert lu.pr.reserved_by == N2.key
    assert lu.pending_ua(N1.key) == ()  # ua_on_new_nexus=False: no I_T NEXUS LOSS unit attention


async def test_persistent_reserve_commands_conflict_while_reserved() -> None:
    lu = make_lu()
    assert await status(lu, N1, RESERVE_10) == Status.GOOD
    for nexus in (N1, N2):  # from any I_T nexus, the holder included (SPC-2 5.5.1)
        assert (await lu.execute(nexus, cdb.persistent_reserve_in(PrInAction.READ_KEYS))).status == CONFLICT
        assert (await prout(lu, nexus, PrOutAction.REGISTER, sa_key=K1)).status == CONFLICT
    assert await status(lu, N1, RELEASE_10) == Status.GOOD
    assert (await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1)).status == Status.GOOD
    caps = bytes((await lu.execute(N1, cdb.persistent_reserve_in(PrInAction.REPORT_CAPABILITIES))).data)
    assert caps[2] & 0x10  # CRH: RESERVE / RELEASE follow SPC-4 5.12.3


async def test_registrations_make_reserve_conflict_except_for_holders() -> None:
    lu = make_lu()
    assert (await prout(lu, N1, PrOutAction.REGISTER, sa_key=K1)).status == Status.GOOD
    # registered, no persistent reservation: RESERVE and RELEASE conflict for everyone
    for nexus in (N1, N2):
        assert await status(lu, nexus, RESERVE_6) == CONFLICT
        assert await status(lu, nexus, RELEASE_6) == CONFLICT
    res = await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.WRITE_EXCLUSIVE)
    assert res.status == Status.GOOD
    # the persistent reservation holder: GOOD, and nothing changes
    assert await status(lu, N1, RESERVE_6) == Status.GOOD and lu.pr.reserved_by is None
    assert await status(lu, N1, RELEASE_6) == Status.GOOD and lu.pr.reservation is not None
    assert await status(lu, N2, RESERVE_6) == CONFLICT


async def test_registrants_of_a_shared_reservation_are_let_through() -> None:
    lu = make_lu()
    for nexus, key in ((N1, K1), (N2, K2)):
        assert (await prout(lu, nexus, PrOutAction.REGISTER, sa_key=key)).status == Status.GOOD
    res = await prout(lu, N1, PrOutAction.RESERVE, key=K1, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    assert res.status == Status.GOOD
    assert await status(lu, N2, RESERVE_10) == Status.GOOD and lu.pr.reserved_by is None
    assert await status(lu, N2, RELEASE_10) == Status.GOOD
    assert lu.pr.reservation is not None and lu.pr.reservation.pr_type == PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


@pytest.mark.parametrize(("c", "pointer"), [
    (bytes((0x16, 0x01, 0, 0, 0, 0)), FieldPointer(1, 0)),  # extent reservation
    (struct.pack(">BB8x", 0x56, 0x10), FieldPointer(1, 4)),  # 3RDPTY
    (struct.pack(">BB8x", 0x56, 0x02), FieldPointer(1, 1)),  # LONGID
    (struct.pack(">BB8x", 0x57, 0x10), FieldPointer(1, 4)),
])
async def test_third_party_and_extent_reservations_are_refused(c: bytes, pointer: FieldPointer) -> None:
    res = await make_lu().execute(N1, c)
    sense = parse_sense(res.sense)
    assert (sense.key, sense.asc, sense.ascq, sense.field_pointer) == (SenseKey.ILLEGAL_REQUEST, 0x24, 0, pointer)
