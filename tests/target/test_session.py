"""The target in full feature phase over real sockets (RFC 7143 §4.2, §11): residuals, Data-In with status
phase collapse, Data-Out with immediate, unsolicited and solicited data, the CmdSN window, NOP, task
management, logout and session reinstatement, and commands to LUNs that do not exist.

"Nothing else was sent" is shown without timing: the target answers PDUs in order, so when an immediate
NOP-Out's NOP-In is the next PDU, nothing was pending before it."""

from __future__ import annotations

import struct

import pytest

from sanpath.iscsi import pdu as P
from sanpath.iscsi.constants import RESERVED_TAG, LogoutResponse, RejectReason, TaskFunction, TaskResponse
from sanpath.scsi.sense import parse_sense
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import TEST_IQN, running_target
from sanpath.testing.rawinit import RawSession, login
from sanpath.testing.waiting import wait_until

TUR = bytes(6)
GOOD, CHECK_CONDITION = 0x00, 0x02


def read10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


def pattern(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


@pytest.fixture
async def target() -> TargetServer:  # type: ignore[misc]
    async with running_target(luns=("mem:16MiB", "mem:1MiB")) as server:
        yield server


async def session(server: TargetServer, **kw: object) -> RawSession:
    return await login(*server.portals[0], TEST_IQN, **kw)  # type: ignore[arg-type]


async def ping(s: RawSession, data: bytes = b"") -> list[P.Pdu]:
    """An immediate NOP-Out; returns every PDU that arrived before its NOP-In (which ends the list)."""
    itt = s.next_itt()
    await s.send(P.NopOut(immediate=True, data=data, itt=itt, cmdsn=s.cmdsn, expstatsn=s.expstatsn))
    got: list[P.Pdu] = []
    while True:
        pdu = await s.recv()
        assert pdu is not None, "target closed the connection"
        got.append(pdu)
        if isinstance(pdu, P.NopIn) and pdu.itt == itt:
            return got


async def tmf(s: RawSession, function: int, *, lun: int = 0, rtt: int = RESERVED_TAG,
              refcmdsn: int = 0) -> P.TaskMgmtResponse:
    itt = s.next_itt()
    await s.send(P.TaskMgmtRequest(immediate=True, function=function, lun=P.lun_to_field(lun), itt=itt, rtt=rtt,
                                   cmdsn=s.cmdsn, expstatsn=s.expstatsn, refcmdsn=refcmdsn))
    resp = await s.recv()
    assert isinstance(resp, P.TaskMgmtResponse) and resp.itt == itt, resp
    return resp


async def start_write(s: RawSession, lba: int, nbytes: int) -> tuple[int, int, P.R2T]:
    """A WRITE with no immediate data (InitialR2T=Yes): returns (ITT, CmdSN, first R2T), data not yet sent."""
    itt, cmdsn = s.next_itt(), s.cmdsn
    await s.send(P.ScsiCommand(write=True, itt=itt, edtl=nbytes, cmdsn=cmdsn, expstatsn=s.expstatsn,
                               cdb=write10(lba, nbytes // 512)))
    s.cmdsn += 1
    r2t = await s.recv()
    assert isinstance(r2t, P.R2T) and r2t.itt == itt, r2t
    return itt, cmdsn, r2t


# --- residuals and Data-In ------------------------------------------------------------------------


async def test_read_underflow_residual(target: TargetServer) -> None:
    s = await session(target)
    status, data, _ = await s.command(read10(0, 1), read=4096)
    assert status == GOOD and len(data) == 512
    (last,) = [p for p in s.seen if isinstance(p, P.DataIn)]
    assert last.has_status and last.underflow and not last.overflow and last.residual == 4096 - 512


async def test_read_overflow_residual(target: TargetServer) -> None:
    s = await session(target)
    status, data, _ = await s.command(read10(0, 8), read=512)
    assert status == GOOD and len(data) == 512  # never more than the Expected Data Transfer Length
    (last,) = [p for p in s.seen if isinstance(p, P.DataIn)]
    assert last.has_status and last.overflow and not last.underflow and last.residual == 4096 - 512


async def test_read_exact_length_has_no_residual(target: TargetServer) -> None:
    s = await session(target)
    status, _, _ = await s.command(read10(0, 2), read=1024)
    assert status == GOOD
    last = s.seen[-1]
    assert isinstance(last, P.DataIn) and not last.overflow and not last.underflow and last.residual == 0


async def test_write_underflow_residual(target: TargetServer) -> None:
    """EDTL above the CDB's transfer length: the target takes the data and reports what it did not use."""
    s = await session(target)
    status, _, _ = await s.command(write10(0, 1), write=pattern(1024))
    assert status == GOOD
    (resp,) = [p for p in s.seen if isinstance(p, P.ScsiResponse)]
    assert resp.underflow and resp.residual == 512


async def test_data_in_phase_collapse_on_good(target: TargetServer) -> None:
    s = await session(target, extra={"MaxRecvDataSegmentLength": "8192"})
    statsn = s.expstatsn
    status, _, _ = await s.command(read10(0, 64), read=32768)
    assert status == GOOD
    data_in = [p for p in s.seen if isinstance(p, P.DataIn)]
    assert data_in == s.seen  # no SCSI Response
    assert [p.has_status for p in data_in] == [False, False, False, True]
    last = s.seen[-1]
    assert isinstance(last, P.DataIn) and last.final and last.status == GOOD and last.statsn == statsn
    nop = (await ping(s))[-1]
    assert isinstance(nop, P.NopIn) and nop.statsn == statsn + 1


async def test_check_condition_comes_in_a_scsi_response_with_sense(target: TargetServer) -> None:
    s = await session(target)
    blocks = (16 << 20) // 512
    status, data, sense = await s.command(read10(blocks, 1), read=512)  # past the end of the LUN
    assert status == CHECK_CONDITION and data == b""
    assert not any(isinstance(p, P.DataIn) for p in s.seen)
    resp = s.seen[-1]
    assert isinstance(resp, P.ScsiResponse) and resp.response == 0
    parsed = parse_sense(sense)
    assert (parsed.key, parsed.asc, parsed.ascq) == (0x05, 0x21, 0x00)  # LBA OUT OF RANGE


async def test_unknown_lun(target: TargetServer) -> None:
    s = await session(target)
    status, _, sense = await s.command(read10(0, 1), lun=9, read=512)
    assert status == CHECK_CONDITION
    parsed = parse_sense(sense)
    assert (parsed.key, parsed.asc, parsed.ascq) == (0x05, 0x25, 0x00)  # LOGICAL UNIT NOT SUPPORTED
    status, data, _ = await s.command(bytes([0x12, 0, 0, 0, 96, 0]), lun=9, read=96)
    assert status == GOOD and data[0] >> 5 == 3 and data[0] & 0x1F == 0x1F  # qualifier 011b, type 1Fh
    status, data, _ = await s.command(bytes([0x12, 0, 0, 0, 96, 0]), lun=1, read=96)
    assert status == GOOD and data[0] == 0x00  # LUN 1 exists: a connected direct-access device


# --- Data-Out ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("immediate_data", ["Yes", "No"])
@pytest.mark.parametrize("initial_r2t", ["Yes", "No"])
async def test_write_immediate_data_and_initial_r2t(target: TargetServer, immediate_data: str,
                                                    initial_r2t: str) -> None:
    extra = {"ImmediateData": immediate_data, "InitialR2T": initial_r2t, "FirstBurstLength": "16384",
             "MaxBurstLength": "32768"}
    s = await session(target, extra=extra)
    assert s.answers["ImmediateData"] == immediate_data and s.answers["InitialR2T"] == initial_r2t
    payload = pattern(100 * 1024, seed=len(immediate_data + initial_r2t))
    status, _, _ = await s.command(write10(100, 200), write=payload)
    assert status == GOOD
    r2ts = [p for p in s.seen if isinstance(p, P.R2T)]
    unsolicited = 16384 if initial_r2t == "No" or immediate_data == "Yes" else 0
    assert r2ts[0].offset == unsolicited  # the target solicits exactly what was not sent unsolicited
    assert sum(r.length for r in r2ts) == len(payload) - unsolicited
    assert all(r.length <= 32768 for r in r2ts)
    status, back, _ = await s.command(read10(100, 200), read=len(payload))
    assert status == GOOD and back == payload


async def test_immediate_data_then_unsolicited_data_out_then_r2t(target: TargetServer) -> None:
    """ImmediateData=Yes, InitialR2T=No: part of the first burst as immediate data, the rest of it as
    unsolicited Data-Out in several PDUs, the remainder solicited (RFC 7143 §3.2.4.2)."""
    s = await session(target, extra={"InitialR2T": "No", "FirstBurstLength": "16384"})
    payload = pattern(24576, seed=9)
    itt = s.next_itt()
    await s.send(P.ScsiCommand(write=True, final=False, data=payload[:4096], itt=itt, edtl=len(payload),
                               cmdsn=s.cmdsn, expstatsn=s.expstatsn, cdb=write10(40, 48)))
    s.cmdsn += 1
    for datasn, offset in enumerate(range(4096, 16384, 4096)):
        await s.send(P.DataOut(data=payload[offset : offset + 4096], final=offset == 12288, itt=itt,
                               datasn=datasn, offset=offset))
    r2t = await s.recv()
    assert isinstance(r2t, P.R2T) and (r2t.offset, r2t.length, r2t.r2tsn) == (16384, 8192, 0)
    await s.data_out(itt, payload, r2t.offset, r2t.length, ttt=r2t.ttt)
    resp = await s.recv()
    assert isinstance(resp, P.ScsiResponse) and resp.itt == itt and resp.status == GOOD
    status, back, _ = await s.command(read10(40, 48), read=len(payload))
    assert status == GOOD and back == payload


async def test_large_write_with_several_outstanding_r2ts(target: TargetServer) -> None:
    extra = {"MaxBurstLength": "16384", "FirstBurstLength": "8192", "MaxOutstandingR2T": "4"}
    s = await session(target, extra=extra)
    assert s.answers["MaxOutstandingR2T"] == "4"
    payload = pattern(256 * 1024, seed=3)
    status, _, _ = await s.command(write10(0, 512), write=payload)
    assert status == GOOD
    r2ts = [p for p in s.seen if isinstance(p, P.R2T)]
    assert all(isinstance(p, P.R2T) for p in s.seen[:4])  # four solicited at once, before any data came
    assert [r.r2tsn for r in r2ts] == list(range(len(r2ts)))
    assert [(r.offset, r.length) for r in r2ts] == [(o, 16384) for o in range(8192, len(payload) - 8192, 16384)] + [
        (len(payload) - 8192, 8192)]
    assert len({r.ttt for r in r2ts}) == len(r2ts)
    resp = s.seen[-1]
    assert isinstance(resp, P.ScsiResponse) and resp.expdatasn == len(r2ts)  # R2Ts sent (§11.4.8)
    status, back, _ = await s.command(read10(0, 512), read=len(payload))
    assert status == GOOD and back == payload


async def test_max_outstanding_r2t_is_respected(target: TargetServer) -> None:
    s = await session(target, extra={"MaxBurstLength": "8192", "MaxOutstandingR2T": "2", "ImmediateData": "No"})
    payload = pattern(32768, seed=5)
    itt, _, first = await start_write(s, 0, len(payload))
    second = await s.recv()
    assert isinstance(second, P.R2T) and (first.offset, second.offset) == (0, 8192)
    assert len(await ping(s)) == 1  # no third R2T while two are outstanding
    await s.data_out(itt, payload, first.offset, first.length, ttt=first.ttt)
    third = await s.recv()
    assert isinstance(third, P.R2T) and third.offset == 16384 and third.r2tsn == 2
    assert len(await ping(s)) == 1
    await s.data_out(itt, payload, second.offset, second.length, ttt=second.ttt)
    fourth = await s.recv()
    assert isinstance(fourth, P.R2T) and fourth.offset == 24576
    await s.data_out(itt, payload, third.offset, third.length, ttt=third.ttt)
    await s.data_out(itt, payload, fourth.offset, fourth.length, ttt=fourth.ttt)
    resp = await s.recv()
    assert isinstance(resp, P.ScsiResponse) and resp.itt == itt and resp.status == GOOD
    status, back, _ = await s.command(read10(0, 64), read=len(payload))
    assert status == GOOD and back == payload


# --- many commands, the CmdSN window ---------------------------------------------------------------------


async def test_128_pipelined_reads_all_answered(target: TargetServer) -> None:
    s = await session(target)
    blocks = b"".join(bytes([i]) * 512 for i in range(128))
    assert (await s.command(write10(0, 128), write=blocks))[0] == GOOD
    first_itt = 1000
    for i in range(128):
        await s.send(P.ScsiCommand(read=True, itt=first_itt + i, edtl=512, cmdsn=s.cmdsn, expstatsn=s.expstatsn,
                                   cdb=read10(i, 1).ljust(16, b"\0")))
        s.cmdsn += 1
    done: dict[int, bytes] = {}
    statsns, maxcmdsns = [], []
    while len(done) < 128:
        pdu = await s.recv()
        assert isinstance(pdu, P.DataIn) and pdu.has_status and pdu.status == GOOD, pdu
        done[pdu.itt - first_itt] = bytes(pdu.data)
        statsns.append(pdu.statsn)
        maxcmdsns.append(pdu.maxcmdsn)
    assert done == {i: bytes([i]) * 512 for i in range(128)}
    assert statsns == list(range(statsns[0], statsns[0] + 128))  # one StatSN per status, no gaps
    assert maxcmdsns == sorted(maxcmdsns)  # MaxCmdSN never goes back
    assert maxcmdsns[-1] == s.cmdsn + 127  # all done: the whole window is open again


async def test_cmdsn_window_opens_only_as_commands_complete() -> None:
    async with running_target(cmd_window=4) as srv:
        s = await session(srv, extra={"ImmediateData": "No"})
        writes = [await start_write(s, lba, 512) for lba in range(4)]
        assert writes[-1][2].maxcmdsn == s.cmdsn - 1  # MaxCmdSN = ExpCmdSN - 1: the window is closed
        itt5, cmdsn5 = s.next_itt(), s.cmdsn
        late = P.ScsiCommand(read=True, itt=itt5, edtl=512, cmdsn=cmdsn5, expstatsn=s.expstatsn,
                             cdb=read10(0, 1).ljust(16, b"\0"))
        await s.send(late)
        reject = await s.recv()
        assert isinstance(reject, P.Reject) and reject.reason == RejectReason.PROTOCOL_ERROR
        itt, _, r2t = writes[0]
        await s.data_out(itt, pattern(512), 0, 512, ttt=r2t.ttt)
        resp = await s.recv()
        assert isinstance(resp, P.ScsiResponse) and resp.itt == itt and resp.maxcmdsn == cmdsn5  # one slot
        await s.send(late)
        data_in = await s.recv()
        assert isinstance(data_in, P.DataIn) and data_in.itt == itt5 and data_in.has_status
        assert data_in.maxcmdsn == cmdsn5 + 1  # the read took the slot and, completing, gave it back


async def test_commands_out_of_cmdsn_order_wait_for_the_gap(target: TargetServer) -> None:
    s = await session(target)
    x = s.cmdsn
    await s.send(P.ScsiCommand(itt=50, cmdsn=x + 1, expstatsn=s.expstatsn, cdb=TUR.ljust(16, b"\0")))
    assert len(await ping(s)) == 1  # CmdSN x+1 is held until x arrives
    await s.send(P.ScsiCommand(itt=51, cmdsn=x, expstatsn=s.expstatsn, cdb=TUR.ljust(16, b"\0")))
    got = [await s.recv() for _ in range(2)]
    assert {p.itt for p in got if isinstance(p, P.ScsiResponse)} == {50, 51}


# --- NOP ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("immediate", [True, False])
async def test_nop_out_ping_echoes_data(target: TargetServer, immediate: bool) -> None:
    s = await session(target)
    statsn = s.expstatsn
    await s.send(P.NopOut(immediate=immediate, data=b"are you there?", itt=77, cmdsn=s.cmdsn,
                          expstatsn=s.expstatsn))
    if not immediate:
        s.cmdsn += 1
    nop = await s.recv()
    assert isinstance(nop, P.NopIn) and nop.itt == 77 and nop.ttt == RESERVED_TAG
    assert nop.data == b"are you there?" and nop.statsn == statsn and nop.expcmdsn == s.cmdsn
    assert (await s.command(TUR))[0] == GOOD


# --- task management -------------------------------------------------------------------------------


async def test_abort_task_of_finished_and_unknown_tasks(target: TargetServer) -> None:
    s = await session(target)
    done_itt, done_cmdsn = s.itt, s.cmdsn
    assert (await s.command(TUR))[0] == GOOD
    # §11.6.1 c: no such task, and RefCmdSN outside the CmdSN window
    resp = await tmf(s, TaskFunction.ABORT_TASK, rtt=done_itt, refcmdsn=done_cmdsn)
    assert resp.response == TaskResponse.TASK_DOES_NOT_EXIST
    resp = await tmf(s, TaskFunction.ABORT_TASK, rtt=0x4242, refcmdsn=s.cmdsn + 100000)
    assert resp.response == TaskResponse.TASK_DOES_NOT_EXIST
    assert (await s.command(TUR))[0] == GOOD


async def test_abort_task_of_a_command_not_yet_received_counts_its_cmdsn(target: TargetServer) -> None:
    """§11.6.1 b: RefCmdSN inside the window and below the TMF's own CmdSN: "function complete", and the
    target considers that CmdSN received, so the commands queued behind the gap run."""
    s = await session(target)
    x = s.cmdsn
    await s.send(P.ScsiCommand(itt=60, cmdsn=x + 1, expstatsn=s.expstatsn, cdb=TUR.ljust(16, b"\0")))
    s.cmdsn = x + 2
    await s.send(P.TaskMgmtRequest(immediate=True, function=TaskFunction.ABORT_TASK, itt=61, rtt=0x5555,
                                   cmdsn=s.cmdsn, expstatsn=s.expstatsn, refcmdsn=x))
    # two answers, in either order (RFC 7143 does not order the responses of different tasks)
    got = {pdu.itt: pdu for pdu in (await s.recv(), await s.recv())}  # type: ignore[attr-defined]
    resp, answer = got[61], got[60]
    assert isinstance(resp, P.TaskMgmtResponse) and resp.response == TaskResponse.COMPLETE
    assert isinstance(answer, P.ScsiResponse) and answer.status == GOOD


async def test_abort_task_of_a_command_waiting_behind_a_gap(target: TargetServer) -> None:
    s = await session(target)
    x = s.cmdsn
    await s.send(P.ScsiCommand(itt=70, cmdsn=x + 1, expstatsn=s.expstatsn, cdb=TUR.ljust(16, b"\0")))
    s.cmdsn = x + 2
    resp = await tmf(s, TaskFunction.ABORT_TASK, rtt=70, refcmdsn=x + 1)
    assert resp.response == TaskResponse.COMPLETE
    await s.send(P.ScsiCommand(itt=71, cmdsn=x, expstatsn=s.expstatsn, cdb=TUR.ljust(16, b"\0")))
    answer = await s.recv()
    assert isinstance(answer, P.ScsiResponse) and answer.itt == 71
    assert len(await ping(s)) == 1  # the aborted command never ran
    assert (await s.command(TUR))[0] == GOOD  # and the window moved past its CmdSN


async def test_abort_task_of_a_write_waiting_for_data(target: TargetServer) -> None:
    s = await session(target, extra={"ImmediateData": "No"})
    itt, cmdsn, r2t = await start_write(s, 0, 4096)
    resp = await tmf(s, TaskFunction.ABORT_TASK, rtt=itt, refcmdsn=cmdsn)
    assert resp.response == TaskResponse.COMPLETE
    assert len(await ping(s)) == 1  # an aborted task gets no SCSI Response (RFC 7143 §11.5.1)
    await s.data_out(itt, bytes(4096), 0, 4096, ttt=r2t.ttt)
    reject = await s.recv()
    assert isinstance(reject, P.Reject) and reject.reason == RejectReason.INVALID_PDU_FIELD
    assert (await s.command(TUR))[0] == GOOD


async def test_abort_task_set_ends_only_this_sessions_tasks_on_that_lun(target: TargetServer) -> None:
    s = await session(target, extra={"ImmediateData": "No"})
    other = await session(target, extra={"ImmediateData": "No"})
    itt, _, r2t = await start_write(s, 0, 512)
    other_itt, _, other_r2t = await start_write(other, 8, 512)
    resp = await tmf(s, TaskFunction.ABORT_TASK_SET, lun=0)
    assert resp.response == TaskResponse.COMPLETE
    await s.data_out(itt, bytes(512), 0, 512, ttt=r2t.ttt)
    assert isinstance(await s.recv(), P.Reject)
    await other.data_out(other_itt, bytes(512), 0, 512, ttt=other_r2t.ttt)
    resp2 = await other.recv()
    assert isinstance(resp2, P.ScsiResponse) and resp2.itt == other_itt and resp2.status == GOOD
    assert (await s.command(TUR))[0] == GOOD  # ABORT TASK SET raises no unit attention


async def test_lun_reset_aborts_and_raises_unit_attention(target: TargetServer) -> None:
    s = await session(target, extra={"ImmediateData": "No"})
    other = await session(target)
    itt, _, r2t = await start_write(s, 0, 4096)
    resp = await tmf(s, TaskFunction.LOGICAL_UNIT_RESET, lun=0)
    assert resp.response == TaskResponse.COMPLETE
    await s.data_out(itt, bytes(4096), 0, 4096, ttt=r2t.ttt)
    reject = await s.recv()
    assert isinstance(reject, P.Reject)  # the write was aborted by the reset
    for sess in (s, other):
        status, _, sense = await sess.command(TUR)
        parsed = parse_sense(sense)
        assert status == CHECK_CONDITION and (parsed.key, parsed.asc, parsed.ascq) == (0x06, 0x29, 0x03)
        assert (await sess.command(TUR))[0] == GOOD  # reported once
    assert (await s.command(TUR, lun=1))[0] == GOOD  # other LUNs are not reset
    assert (await tmf(s, TaskFunction.LOGICAL_UNIT_RESET, lun=9)).response == TaskResponse.LUN_DOES_NOT_EXIST


async def test_target_warm_reset(target: TargetServer) -> None:
    s = await session(target)
    other = await session(target)
    resp = await tmf(s, TaskFunction.TARGET_WARM_RESET)
    assert resp.response == TaskResponse.COMPLETE
    for sess in (s, other):
        for lun in (0, 1):
            status, _, sense = await sess.command(TUR, lun=lun)
            parsed = parse_sense(sense)
            assert status == CHECK_CONDITION and (parsed.key, parsed.asc) == (0x06, 0x29)
        assert (await sess.command(TUR))[0] == GOOD


# --- logout, reinstatement -----------------------------------------------------------------------------


async def test_logout_answers_then_closes(target: TargetServer) -> None:
    s = await session(target)
    await s.send(P.LogoutRequest(immediate=True, reason=0, itt=88, cmdsn=s.cmdsn, expstatsn=s.expstatsn))
    resp = await s.recv()
    assert isinstance(resp, P.LogoutResponse) and resp.itt == 88 and resp.response == LogoutResponse.SUCCESS
    assert await s.recv() is None


async def test_session_reinstatement_drops_the_old_connection(target: TargetServer) -> None:
    old = await session(target)
    bystander = await session(target)  # another ISID: a different session, left alone
    new = await session(target, isid=old.isid)
    assert await old.recv() is None
    status, data, _ = await new.command(read10(0, 1), read=512)
    assert status == GOOD and len(data) == 512
    assert (await bystander.command(TUR))[0] == GOOD
    assert len([c for c in target.connections if c.session is not None]) == 2


async def test_target_cold_reset_answers_then_closes_every_session(target: TargetServer) -> None:
    s = await session(target)
    other = await session(target)
    resp = await tmf(s, TaskFunction.TARGET_COLD_RESET)
    assert resp.response == TaskResponse.COMPLETE
    assert await s.recv() is None and await other.recv() is None  # RFC 7143 §11.5.1
    back = await session(target, isid=s.isid)  # the same I_T nexus returns: POWER ON OCCURRED
    status, _, sense = await back.command(TUR)
    parsed = parse_sense(sense)
    assert status == CHECK_CONDITION and (parsed.key, parsed.asc, parsed.ascq) == (0x06, 0x29, 0x01)
    assert (await back.command(TUR))[0] == GOOD


# --- SPC-2 reservations end with the I_T nexus ------------------------------------------------------------

RESERVE_6, RELEASE_6 = bytes((0x16, 0, 0, 0, 0, 0)), bytes((0x17, 0, 0, 0, 0, 0))
RESERVATION_CONFLICT = 0x18


@pytest.mark.parametrize("how", ["logout", "drop"])
async def test_the_holders_session_ending_releases_a_reservation(target: TargetServer, how: str) -> None:
    holder = await session(target)
    other = await session(target)
    assert (await holder.command(RESERVE_6))[0] == GOOD
    assert (await other.command(RESERVE_6))[0] == RESERVATION_CONFLICT
    assert (await other.command(read10(0, 1), read=512))[0] == RESERVATION_CONFLICT
    assert (await other.command(RESERVE_6, lun=1))[0] == GOOD  # a reservation covers one logical unit
    if how == "logout":
        await holder.send(P.LogoutRequest(immediate=True, reason=0, itt=9, cmdsn=holder.cmdsn,
                                          expstatsn=holder.expstatsn))
        assert isinstance(await holder.recv(), P.LogoutResponse)
        assert await holder.recv() is None
    else:
        await holder.close()  # no logout: the target sees the TCP connection go (I_T nexus loss)
    lu = target.arrays[0].luns[0]
    await wait_until(lambda: lu.pr.reserved_by is None, "the reservation to be released")
    assert (await other.command(RESERVE_6))[0] == GOOD
    assert (await other.command(RELEASE_6))[0] == GOOD
