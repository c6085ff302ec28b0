"""The copy manager: EXTENDED COPY (LID1) parameter list checks and block-to-block copies between
logical units, and RECEIVE COPY RESULTS (COPY STATUS, OPERATING PARAMETERS, FAILED SEGMENT
DETAILS), with the sense data SPC-4 asks for on each error path."""

from __future__ import annotations

import os
import struct

import pytest

from sanpath.scsi import cdb
from sanpath.scsi.constants import PrOutAction, PrType, ReceiveCopyResultsAction, SenseKey, Status
from sanpath.scsi.parse import parse_copy_operating_parameters, parse_copy_status
from sanpath.scsi.sense import FieldPointer, Sense, parse_sense
from sanpath.target import xcopy
from sanpath.target.backstore import MemoryBackstore
from sanpath.target.lu import LogicalUnit, Nexus, ScsiResult

TGT = "iqn.2026-01.org.example:array,t,0x0001"
N1 = Nexus("iqn.2026-01.org.example:host1,i,0x400001370000", TGT, 1, 1)
N2 = Nexus("iqn.2026-01.org.example:host2,i,0x400001370000", TGT, 1, 1)
NAA_A, NAA_B = bytes.fromhex("3a00000000000001"), bytes.fromhex("6001405abcdef0123456789abcdef012")
BLOCKS = 8192  # 4 MiB of 512-byte blocks
ILLEGAL = SenseKey.ILLEGAL_REQUEST
GOOD = Status.GOOD
ABORTED = SenseKey.COPY_ABORTED


def array(**kw: object) -> tuple[LogicalUnit, LogicalUnit]:
    """Two LUs that reach each other through their copy managers, like the LUs of one Array."""
    luns: list[LogicalUnit] = []
    a = LogicalUnit(MemoryBackstore(BLOCKS * 512), naa=NAA_A, serial="XA", copy_targets=lambda: luns)
    b = LogicalUnit(MemoryBackstore(BLOCKS * 512), naa=NAA_B, serial="XB", copy_targets=lambda: luns,
                    **kw)  # type: ignore[arg-type]
    luns += [a, b]
    return a, b


def params(segments: list[bytes], cscds: list[bytes] | None = None, **kw: int) -> bytes:
    if cscds is None:
        cscds = [cdb.cscd_identification(NAA_A, 512), cdb.cscd_identification(NAA_B, 512)]
    return cdb.xcopy_parameter_list(cscds, segments, **kw)


async def xcopy_(lu: LogicalUnit, data: bytes, nexus: Nexus = N1, plen: int | None = None) -> ScsiResult:
    return await lu.execute(nexus, cdb.extended_copy(len(data) if plen is None else plen), data)


def sense(res: ScsiResult) -> Sense:
    assert res.status == Status.CHECK_CONDITION, res
    return parse_sense(res.sense)


def asc(res: ScsiResult) -> tuple[int, int, int]:
    s = sense(res)
    return s.key, s.asc, s.ascq


async def fill(lu: LogicalUnit, lba: int, data: bytes) -> None:
    assert (await lu.execute(N1, cdb.write_16(lba, len(data) // 512), data)).status == Status.GOOD


async def read(lu: LogicalUnit, lba: int, blocks: int) -> bytes:
    return bytes((await lu.execute(N1, cdb.read_16(lba, blocks))).data)


async def results(lu: LogicalUnit, action: ReceiveCopyResultsAction, list_id: int = 0, nexus: Nexus = N1,
                  alloc: int = 1024) -> ScsiResult:
    return await lu.execute(nexus, cdb.receive_copy_results(action, list_id=list_id, alloc=alloc))


# --- copying ---------------------------------------------------------------------------------------


async def test_copy_between_two_lus_and_within_one() -> None:
    a, b = array()
    data = os.urandom(3000 * 512)  # more than one 1 MiB piece
    await fill(a, 100, data)
    res = await xcopy_(a, params([cdb.b2b_segment(0, 1, 3000, 100, 5000)]))  # sent to the source's LU
    assert res.status == Status.GOOD and res.data_out_length == 16 + 64 + 28
    assert await read(b, 5000, 3000) == data
    two = params([cdb.b2b_segment(1, 0, 10, 5000, 0), cdb.b2b_segment(1, 1, 20, 5000, 7000)])
    assert (await xcopy_(b, two)).status == Status.GOOD  # the copy manager of either LU will do
    assert await read(a, 0, 10) == data[: 10 * 512] and await read(b, 7000, 20) == data[: 20 * 512]
    assert (await xcopy_(a, params([cdb.b2b_segment(0, 1, 0, 0, 0)]))).status == Status.GOOD  # 0 blocks
    assert (await a.execute(N1, cdb.extended_copy(0))).status == Status.GOOD  # no parameter list


@pytest.mark.parametrize("shift", [-1500, 1500])
async def test_overlapping_copy_within_one_lu(shift: int) -> None:
    a, _ = array()
    data = os.urandom(3000 * 512)
    await fill(a, 2000, data)
    res = await xcopy_(a, params([cdb.b2b_segment(0, 0, 3000, 2000, 2000 + shift)]))
    assert res.status == Status.GOOD
    assert await read(a, 2000 + shift, 3000) == data  # as if read whole before writing (memmove)


async def test_block_sizes_may_differ_when_the_bytes_fit_both() -> None:
    luns: list[LogicalUnit] = []
    small = LogicalUnit(MemoryBackstore(1 << 22), naa=NAA_A, serial="S", copy_targets=lambda: luns)
    big = LogicalUnit(MemoryBackstore(1 << 22, block_size=4096), naa=NAA_B, serial="B", copy_targets=lambda: luns)
    luns += [small, big]
    data = os.urandom(8 * 4096)
    await fill(small, 64, data)
    cscds = [cdb.cscd_identification(NAA_A, 512), cdb.cscd_identification(NAA_B, 4096)]
    ok = params([cdb.b2b_segment(0, 1, 8, 64, 2, dc=True)], cscds)  # DC: 8 destination blocks
    assert (await xcopy_(small, ok)).status == Status.GOOD
    assert bytes((await big.execute(N1, cdb.read_16(2, 8))).data) == data
    inexact = params([cdb.b2b_segment(0, 1, 9, 64, 2)], cscds)  # 9 source blocks: not whole 4 KiB blocks
    assert asc(await xcopy_(small, inexact)) == (ABORTED, 0x26, 0x0A)


# --- errors before any segment is processed -----------------------------------------------------------


async def test_parameter_list_length_errors() -> None:
    a, _ = array()
    good = params([cdb.b2b_segment(0, 1, 1, 0, 0)])
    for plen in (len(good) - 1, 60, 15):  # truncating a segment, a CSCD descriptor, the header
        assert asc(await xcopy_(a, good[:plen])) == (ILLEGAL, 0x1A, 0)
    short = await xcopy_(a, good[:20], plen=len(good))  # less Data-Out than PARAMETER LIST LENGTH
    assert asc(short) == (ILLEGAL, 0x1A, 0) and short.data_out_length == len(good)
    too_long = params([cdb.b2b_segment(0, 1, 1, 0, 0)] * 150)  # descriptors beyond 4096 bytes
    assert asc(await xcopy_(a, too_long)) == (ILLEGAL, 0x1A, 0)


async def test_too_many_descriptors() -> None:
    a, _ = array()
    cscds = [cdb.cscd_identification(NAA_A, 512)] * (xcopy.MAX_CSCD_DESCRIPTORS + 1)
    res = await xcopy_(a, params([cdb.b2b_segment(0, 0, 1, 0, 1)], cscds))
    assert asc(res) == (ILLEGAL, 0x26, 0x06) and sense(res).field_pointer == FieldPointer(2, cdb=False)
    segments = [cdb.b2b_segment(0, 1, 1, 0, 0)] * (xcopy.MAX_SEGMENT_DESCRIPTORS + 1)
    assert asc(await xcopy_(a, params(segments))) == (ILLEGAL, 0x26, 0x08)
    at_limit = [cdb.b2b_segment(0, 1, 1, i, i) for i in range(xcopy.MAX_SEGMENT_DESCRIPTORS)]
    assert (await xcopy_(a, params(at_limit))).status == Status.GOOD


async def test_unsupported_descriptor_types() -> None:
    a, _ = array()
    fc = bytes((0xE0,)) + cdb.cscd_identification(NAA_A, 512)[1:]  # Fibre Channel N_Port_Name
    res = await xcopy_(a, params([cdb.b2b_segment(0, 0, 1, 0, 1)], [cdb.cscd_identification(NAA_A, 512), fc]))
    assert asc(res) == (ILLEGAL, 0x26, 0x07) and sense(res).field_pointer == FieldPointer(16 + 32, cdb=False)
    stream = struct.pack(">BBH16x", 0x03, 0, 16)  # stream-to-stream
    res = await xcopy_(a, params([stream]))
    assert asc(res) == (ILLEGAL, 0x26, 0x09) and sense(res).field_pointer == FieldPointer(16 + 64, cdb=False)


async def test_malformed_fields() -> None:
    a, _ = array()
    seg = bytearray(cdb.b2b_segment(0, 1, 1, 0, 0))
    seg[3] = 0x14  # DESCRIPTOR LENGTH not 0018h
    assert asc(await xcopy_(a, params([bytes(seg)]))) == (ILLEGAL, 0x26, 0)
    cscd = bytearray(cdb.cscd_identification(NAA_A, 512))
    cscd[7] = 21  # designator longer than 20 bytes
    assert asc(await xcopy_(a, params([], [bytes(cscd)]))) == (ILLEGAL, 0x26, 0)
    inline = bytearray(params([cdb.b2b_segment(0, 1, 1, 0, 0)]))
    inline[15] = 4  # INLINE DATA LENGTH: none is accepted
    assert asc(await xcopy_(a, bytes(inline) + bytes(4))) == (ILLEGAL, 0x26, 0x0B)
    reserved_usage = params([cdb.b2b_segment(0, 1, 1, 0, 0)], list_id_usage=0b01)
    assert asc(await xcopy_(a, reserved_usage)) == (ILLEGAL, 0x26, 0)
    wrong_block = params([cdb.b2b_segment(0, 1, 1, 0, 0)],
                         [cdb.cscd_identification(NAA_A, 4096), cdb.cscd_identification(NAA_B, 512)])
    res = await xcopy_(a, wrong_block)
    assert asc(res) == (ILLEGAL, 0x26, 0) and sense(res).field_pointer == FieldPointer(16 + 29, cdb=False)


async def test_lu_id_type_and_nul_are_ignored() -> None:
    a, b = array()
    cscd = bytearray(cdb.cscd_identification(NAA_B, 512))
    cscd[1] = 0x80 | 0x20  # LU ID TYPE 10b (reserved in SPC-3), NUL (obsolete)
    block = os.urandom(512)
    await fill(b, 0, block)
    assert (await xcopy_(a, params([cdb.b2b_segment(0, 0, 1, 0, 1)], [bytes(cscd)]))).status == Status.GOOD
    assert await read(b, 1, 1) == block


# --- errors while processing segments: COPY ABORTED -----------------------------------------------


async def test_unknown_designator_and_bad_index_abort_the_copy() -> None:
    a, _ = array()
    stranger = params([cdb.b2b_segment(0, 1, 1, 0, 0)],
                      [cdb.cscd_identification(NAA_A, 512), cdb.cscd_identification(bytes(8), 512)])
    res = await xcopy_(a, stranger)
    assert asc(res) == (ABORTED, 0x0D, 0x02) and sense(res).field_pointer == FieldPointer(16 + 32 + 4, cdb=False)
    wrong_kind = bytearray(cdb.cscd_identification(NAA_B, 512))
    wrong_kind[1] = 0x01  # sequential-access
    res = await xcopy_(a, params([], [bytes(wrong_kind)]))
    assert asc(res) == (ABORTED, 0x0D, 0x03)
    res = await xcopy_(a, params([cdb.b2b_segment(0, 0, 1, 0, 0), cdb.b2b_segment(0, 2, 1, 0, 0)]))
    s = sense(res)
    assert (s.key, s.asc, s.ascq) == (ABORTED, 0x08, 0x04)
    assert s.command_specific == 1 and s.field_pointer == FieldPointer(6, cdb=False, segment=True)  # segment 1


async def test_ranges_past_the_last_lba_abort_the_copy() -> None:
    a, _ = array()
    for seg, pointer in ((cdb.b2b_segment(0, 1, 2048, 0, BLOCKS - 1), 10),
                         (cdb.b2b_segment(0, 1, 1, BLOCKS + 1, 0), 12),
                         (cdb.b2b_segment(0, 1, 1, 0, 1 << 63), 20)):
        s = sense(await xcopy_(a, params([seg])))
        assert (s.key, s.asc, s.ascq, s.command_specific) == (ABORTED, 0, 0, 0)
        assert s.field_pointer == FieldPointer(pointer, cdb=False, segment=True)


async def test_write_protected_destination_and_medium_errors() -> None:
    a, b = array(read_only=True)
    res = await xcopy_(a, params([cdb.b2b_segment(0, 1, 1, 0, 0)]))
    assert asc(res) == (ABORTED, 0x27, 0)
    assert (await xcopy_(a, params([cdb.b2b_segment(1, 0, 1, 0, 0)]))).status == Status.GOOD  # reading it is fine

    async def broken(offset: int, length: int) -> bytes:
        raise OSError(5, "injected")

    b.backstore.read = broken  # type: ignore[method-assign]
    assert asc(await xcopy_(a, params([cdb.b2b_segment(1, 0, 1, 0, 0)]))) == (ABORTED, 0x11, 0)


async def test_reservations_of_the_sending_nexus_apply() -> None:
    a, b = array()
    plist = cdb.prout_parameter_list(sa_key=0x77)
    assert (await b.execute(N2, cdb.persistent_reserve_out(PrOutAction.REGISTER), plist)).status == Status.GOOD
    prout = cdb.persistent_reserve_out(PrOutAction.RESERVE, pr_type=PrType.WRITE_EXCLUSIVE)
    assert (await b.execute(N2, prout, cdb.prout_parameter_list(key=0x77))).status == Status.GOOD
    to_b = params([cdb.b2b_segment(0, 1, 1, 0, 0)])
    assert (await xcopy_(a, to_b)).status == Status.RESERVATION_CONFLICT  # N1 may not write B
    assert (await xcopy_(a, to_b, nexus=N2)).status == Status.GOOD
    assert (await xcopy_(a, params([cdb.b2b_segment(1, 0, 1, 0, 0)]))).status == Status.GOOD  # but may read it


# --- RECEIVE COPY RESULTS -------------------------------------------------------------------------


async def test_operating_parameters() -> None:
    a, _ = array()
    res = await results(a, ReceiveCopyResultsAction.OPERATING_PARAMETERS)
    raw = bytes(res.data)
    assert res.status == Status.GOOD and int.from_bytes(raw[:4], "big") == len(raw) - 4
    op = parse_copy_operating_parameters(raw)
    assert (op.max_cscd_descriptors, op.max_segment_descriptors) == (8, 64)
    assert op.max_descriptor_list_length == 4096 and op.max_segment_length >= 0xFFFF * 4096
    assert (op.max_inline_data_length, op.held_data_limit, op.data_segment_granularity) == (0, 0, 9)
    assert op.implemented_descriptors == (0x02, 0xE4)
    assert len((await results(a, ReceiveCopyResultsAction.OPERATING_PARAMETERS, alloc=8)).data) == 8


async def test_copy_status_for_held_lists_only() -> None:
    a, _ = array()
    assert asc(await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=1)) == (ILLEGAL, 0x24, 0)
    await fill(a, 0, os.urandom(2048 * 512))
    held = params([cdb.b2b_segment(0, 1, 2048, 0, 0), cdb.b2b_segment(0, 1, 8, 0, 4096)], list_id=1)
    assert (await xcopy_(a, held)).status == Status.GOOD
    st = parse_copy_status((await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=1)).data)
    assert (st.copy_manager_status, st.segments_processed, st.bytes_transferred) == (1, 2, 2056 * 512)
    assert not st.held_data_discarded
    # another I_T nexus has no such list; a list that is not held (LIST ID USAGE 10b, 11b) is not reported
    assert asc(await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=1, nexus=N2)) == (ILLEGAL, 0x24, 0)
    for usage in (0b10, 0b11):
        not_held = params([cdb.b2b_segment(0, 1, 1, 0, 0)], list_id=2, list_id_usage=usage)
        assert (await xcopy_(a, not_held)).status == GOOD
        assert asc(await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=2)) == (ILLEGAL, 0x24, 0)
    # the I_T nexus goes: its results go with it
    a.nexus_lost(N1)
    await a.execute(N1, cdb.test_unit_ready())  # I_T NEXUS LOSS OCCURRED
    assert asc(await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=1)) == (ILLEGAL, 0x24, 0)


async def test_failed_segment_details() -> None:
    a, _ = array()
    ok = params([cdb.b2b_segment(0, 1, 1, 0, 0)], list_id=3)
    assert (await xcopy_(a, ok)).status == Status.GOOD
    none = await results(a, ReceiveCopyResultsAction.FAILED_SEGMENT_DETAILS, list_id=3)
    assert bytes(none.data) == bytes(4)  # AVAILABLE DATA 0: it did not fail
    bad = params([cdb.b2b_segment(0, 1, 1, 0, 0), cdb.b2b_segment(0, 5, 1, 0, 0)], list_id=3)
    failed = await xcopy_(a, bad)
    st = parse_copy_status((await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=3)).data)
    assert (st.copy_manager_status, st.segments_processed) == (2, 1)  # completed with errors after one segment
    part = bytes((await results(a, ReceiveCopyResultsAction.FAILED_SEGMENT_DETAILS, list_id=3, alloc=16)).data)
    assert len(part) == 16  # a partial read keeps the details
    details = bytes((await results(a, ReceiveCopyResultsAction.FAILED_SEGMENT_DETAILS, list_id=3)).data)
    assert int.from_bytes(details[:4], "big") == len(details) - 4 == 56 + len(failed.sense)
    assert details[56] == Status.CHECK_CONDITION and details[60:] == failed.sense
    assert int.from_bytes(details[58:60], "big") == len(failed.sense)
    again = await results(a, ReceiveCopyResultsAction.FAILED_SEGMENT_DETAILS, list_id=3)
    assert bytes(again.data) == bytes(4)  # read in full once: discarded
    unknown = await results(a, ReceiveCopyResultsAction.FAILED_SEGMENT_DETAILS, list_id=9)
    assert asc(unknown) == (ILLEGAL, 0x24, 0)


async def test_a_list_identifier_in_use_is_refused() -> None:
    a, _ = array()
    plist = params([cdb.b2b_segment(0, 1, 1, 0, 0)], list_id=4)
    result = a.copy_manager.begin(N1.key, xcopy.parse_parameters(plist))  # as if a copy were running
    assert asc(await xcopy_(a, plist)) == (ILLEGAL, 0x00, 0x16)  # OPERATION IN PROGRESS
    st = parse_copy_status((await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=4)).data)
    assert st.copy_manager_status == 0  # in progress
    in_progress = await results(a, ReceiveCopyResultsAction.FAILED_SEGMENT_DETAILS, list_id=4)
    assert asc(in_progress) == (ILLEGAL, 0x24, 0)
    result.finish(Status.GOOD)
    assert (await xcopy_(a, plist)).status == Status.GOOD  # a finished list may be used again


async def test_held_results_are_bounded_and_resets_discard_them() -> None:
    a, _ = array()
    for list_id in range(xcopy.HELD_RESULTS_PER_NEXUS + 4):
        assert (await xcopy_(a, params([cdb.b2b_segment(0, 1, 1, 0, 0)], list_id=list_id))).status == GOOD
    assert asc(await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=0)) == (ILLEGAL, 0x24, 0)
    assert (await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=19)).status == Status.GOOD
    a.reset("lun")
    await a.execute(N1, cdb.test_unit_ready())  # the unit attention
    assert asc(await results(a, ReceiveCopyResultsAction.COPY_STATUS, list_id=19)) == (ILLEGAL, 0x24, 0)


async def test_third_party_copy_is_advertised() -> None:
    a, _ = array()
    inq = bytes((await a.execute(N1, cdb.inquiry())).data)
    assert inq[5] & 0x08  # 3PC
    for opcode, sa in ((0x83, 0x00), (0x84, 0x00), (0x84, 0x03), (0x84, 0x04)):
        rsoc = bytes((0xA3, 0x0C, 0x02, opcode, 0, sa, 0, 0, 1, 0, 0, 0))
        one = bytes((await a.execute(N1, rsoc)).data)
        assert one[1] & 0x07 == 3 and one[4] == opcode and int.from_bytes(one[2:4], "big") == 16
    bad_sa = await a.execute(N1, bytes((0x83, 0x01)) + bytes(14))  # LID4 is not implemented
    assert asc(bad_sa) == (ILLEGAL, 0x24, 0)
