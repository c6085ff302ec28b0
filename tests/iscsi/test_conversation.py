"""Paired conversations: the initiator's session core talking to the target's, with no sockets and no
event loop. Every PDU goes through the framing both ways (``frame_pdu`` out, ``PduReader`` in, Data-In
placed into the command's buffer as the connection does), so what is checked is the whole sans-IO stack:
the command window, the ITT table, R2Ts and Data-Out, Data-In and status, text, NOP, logout, Reject."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanpath.errors import ConnectionLost, IscsiError, RemoteProtocolError
from sanpath.iscsi import pdu as P
from sanpath.iscsi import text as T
from sanpath.iscsi.constants import RESERVED_TAG, TaskFunction, TaskResponse
from sanpath.iscsi.framing import PduReader, frame_pdu
from sanpath.iscsi.initiator_core import CommandResult, InitiatorCore, Request, ScsiTask
from sanpath.iscsi.keys import SessionParams
from sanpath.iscsi.target_core import TargetCore, Task
from sanpath.scsi import cdb as C
from sanpath.scsi.constants import Status

BLOCK = 512


class Initiator(InitiatorCore):
    def __init__(self) -> None:
        super().__init__("conversation")
        self.ended: dict[int, CommandResult | BaseException] = {}
        self.replies: dict[int, P.Pdu | BaseException | None] = {}
        self.openings = 0

    def command_ended(self, task: ScsiTask, outcome: CommandResult | BaseException) -> None:
        assert task.itt not in self.ended, "a command ends once"
        self.ended[task.itt] = outcome

    def request_ended(self, request: Request, outcome: P.Pdu | BaseException | None) -> None:
        self.replies[request.itt] = outcome

    def window_opened(self) -> None:
        self.openings += 1


class Target(TargetCore):
    """Runs READ(10) and WRITE(10) on a bytearray; holds commands back while ``hold`` is set."""

    def __init__(self, params: SessionParams, send: Callable[[P.Pdu], None], *, window: int, disk: int) -> None:
        super().__init__(initiator_name="iqn.test:i", params=params, cmdsn=1, statsn=100, window=window, send=send)
        self.disk = bytearray(random.Random(disk).randbytes(disk))
        self.hold = False
        self.held: list[tuple[Task, bytes | memoryview]] = []
        self.order: list[int] = []  # CmdSN of each command as it ran
        self.text = b""
        self.tmfs: list[P.TaskMgmtRequest] = []
        self.out = False

    def execute(self, task: Task, data: bytes | memoryview) -> None:
        self.order.append(task.cmd.cmdsn)
        if self.hold:
            self.held.append((task, data))
        else:
            self.run(task, data)

    def run(self, task: Task, data: bytes | memoryview) -> None:
        cdb = task.cmd.cdb
        lba, blocks = int.from_bytes(cdb[2:6], "big") * BLOCK, int.from_bytes(cdb[7:9], "big") * BLOCK
        if cdb[0] == 0x28:
            self.complete(task, Status.GOOD, data=bytes(self.disk[lba : lba + blocks]))
        else:
            self.disk[lba : lba + len(data)] = data
            self.complete(task, Status.GOOD, data_out_length=len(data))

    def release(self) -> None:
        held, self.held = self.held, []
        for task, data in held:
            self.run(task, data)

    def task_management(self, req: P.TaskMgmtRequest) -> None:
        self.tmfs.append(req)
        self.tmf_response(req, TaskResponse.COMPLETE)

    def text_body(self, req: P.TextRequest) -> bytes:
        return self.text

    def logout_accepted(self) -> None:
        self.out = True


class Wire:
    """Both directions of one connection, framed and cut into PDUs again."""

    def __init__(self, *, seg_i: int = 8192, seg_t: int = 8192, burst: int = 262144, first_burst: int = 65536,
                 immediate: bool = True, initial_r2t: bool = False, r2ts: int = 1, window: int = 32,
                 disk: int = 1 << 20) -> None:
        def params(recv: int, send: int) -> SessionParams:
            return SessionParams(initial_r2t=initial_r2t, immediate_data=immediate, max_recv_data_segment_length=recv,
                                 max_send_data_segment_length=send, max_burst_length=burst,
                                 first_burst_length=first_burst, max_outstanding_r2t=r2ts)

        self.to_target: list[bytes] = []
        self.to_initiator: list[bytes] = []
        self.initiator = Initiator()
        self.initiator.send = lambda pdu: self.to_target.append(b"".join(bytes(x) for x in frame_pdu(pdu)))
        self.target = Target(params(seg_t, seg_i), self._target_sends, window=window, disk=disk)
        self.initiator.full_feature(params(seg_i, seg_t), expcmdsn=1, maxcmdsn=window, expstatsn=100)
        self.from_initiator = PduReader(max_data=seg_t)
        self.from_target = PduReader(max_data=seg_i, place=self.initiator.place_data_in)
        self.sent_by_target: list[P.Pdu] = []
        self.shuffle: random.Random | None = None  # reorder what the initiator sends, per pump

    def _target_sends(self, pdu: P.Pdu) -> None:
        self.sent_by_target.append(pdu)
        self.to_initiator.append(b"".join(bytes(x) for x in frame_pdu(pdu)))

    def pump(self) -> None:
        """Carry PDUs both ways until both sides have nothing more to say."""
        while self.to_target or self.to_initiator:
            out, self.to_target = self.to_target, []
            if self.shuffle is not None:
                self.shuffle.shuffle(out)
            for wire in out:
                self.from_initiator.receive_data(wire)
                while (frame := self.from_initiator.next_frame()) is not None:
                    self.target.receive(P.decode(frame.header, frame.data), frame.header)
            back, self.to_initiator = self.to_initiator, []
            for wire in back:
                self.from_target.receive_data(wire)
                while (frame := self.from_target.next_frame()) is not None:
                    data = frame.data if not frame.placed else b""
                    pdu = P.DataIn.decode(frame.header, b"") if frame.placed else P.decode(frame.header, data)
                    self.initiator.receive(pdu)

    def read(self, lba: int, blocks: int) -> ScsiTask:
        return self.initiator.issue(0, C.read_10(lba, blocks), None, blocks * BLOCK, None, None)

    def write(self, lba: int, data: bytes) -> ScsiTask:
        return self.initiator.issue(0, C.write_10(lba, len(data) // BLOCK), data, 0, None, None)

    def result(self, task: ScsiTask) -> CommandResult:
        outcome = self.initiator.ended[task.itt]
        assert isinstance(outcome, CommandResult), outcome
        return outcome


SEGMENTS = st.sampled_from([512, 4096, 8192, 65536, 262144])


@settings(max_examples=60, deadline=None)
@given(blocks=st.integers(1, 1024), seg_i=SEGMENTS, burst=st.sampled_from([4096, 65536, 262144, 1 << 20]))
def test_reads_arrive_whole_in_place_in_datasn_order(blocks: int, seg_i: int, burst: int) -> None:
    w = Wire(seg_i=seg_i, burst=burst)
    task = w.read(3, blocks)
    w.pump()
    r = w.result(task)
    assert r.status == Status.GOOD and not r.underflow
    assert bytes(r.data) == bytes(w.target.disk[3 * BLOCK : (3 + blocks) * BLOCK])
    data_ins = [p for p in w.sent_by_target if isinstance(p, P.DataIn)]
    assert [d.datasn for d in data_ins] == list(range(len(data_ins)))
    assert all(len(d.data) <= seg_i for d in data_ins) and data_ins[-1].has_status
    assert not w.initiator.itts and not w.target.tasks


@settings(max_examples=80, deadline=None)
@given(blocks=st.integers(1, 1024), seg=SEGMENTS, immediate=st.booleans(), initial_r2t=st.booleans(),
       first_burst=st.sampled_from([512, 8192, 65536, 262144]), burst=st.sampled_from([4096, 65536, 262144]),
       r2ts=st.integers(1, 4))
def test_writes_land_whole_whatever_the_data_transfer_keys(blocks: int, seg: int, immediate: bool,
                                                          initial_r2t: bool, first_burst: int, burst: int,
                                                          r2ts: int) -> None:
    first_burst = min(first_burst, burst)  # FirstBurstLength <= MaxBurstLength (RFC 7143 13.14)
    w = Wire(seg_i=seg, seg_t=seg, immediate=immediate, initial_r2t=initial_r2t, first_burst=first_burst,
             burst=burst, r2ts=r2ts)
    data = random.Random(blocks).randbytes(blocks * BLOCK)
    task = w.write(7, data)
    w.pump()
    assert w.result(task).status == Status.GOOD
    assert bytes(w.target.disk[7 * BLOCK : 7 * BLOCK + len(data)]) == data
    unsolicited = 0 if initial_r2t else min(first_burst, len(data))
    if immediate:
        unsolicited = max(unsolicited, min(len(data), first_burst, seg))
    r2t = [p for p in w.sent_by_target if isinstance(p, P.R2T)]
    assert sum(p.length for p in r2t) == len(data) - unsolicited
    assert [p.r2tsn for p in r2t] == list(range(len(r2t))) and all(p.length <= burst for p in r2t)
    assert w.target.r2t_budget == 128 << 20 and not w.target.tasks


def test_the_window_closes_at_maxcmdsn_and_opens_as_commands_end() -> None:
    w = Wire(window=4)
    w.target.hold = True
    tasks = []
    while w.initiator.window.open:
        tasks.append(w.read(len(tasks), 1))
        w.pump()
    assert len(tasks) == 4 and not w.initiator.ended
    w.target.release()
    w.pump()
    assert w.initiator.window.open and w.initiator.openings >= 1
    assert all(w.result(t).status == Status.GOOD for t in tasks)


@pytest.mark.parametrize("seed", range(5))
def test_commands_run_in_cmdsn_order_whatever_order_they_arrive_in(seed: int) -> None:
    w = Wire(window=64)
    w.shuffle = random.Random(seed)
    tasks = [w.read(i, 1) for i in range(20)]
    w.pump()
    assert w.target.order == list(range(1, 21))
    assert all(w.result(t).status == Status.GOOD for t in tasks)


def test_abort_task_for_a_command_not_yet_arrived_counts_its_cmdsn_and_it_never_runs() -> None:
    w = Wire()
    first = w.read(0, 1)
    lost = w.to_target.pop()  # CmdSN 1 is held up on the way
    assert first.itt not in w.initiator.ended
    second = w.read(1, 1)
    w.pump()
    assert w.target.order == []  # CmdSN 2 waits behind the gap
    assert w.target.unarrived(first.itt, 1, 3)  # ABORT TASK sent with CmdSN 3 names CmdSN 1
    w.target.skip(1)
    w.pump()
    assert w.target.order == [2] and w.result(second).status == Status.GOOD
    w.to_target.append(lost)  # arrives late: outside the window now, so it is rejected, not run
    w.pump()
    assert w.target.order == [2] and isinstance(w.initiator.ended[first.itt], IscsiError)


def test_a_reply_of_the_wrong_kind_is_a_protocol_error_naming_it() -> None:
    w = Wire()
    tmf = w.initiator.task_mgmt_request(TaskFunction.ABORT_TASK, 0, 5, waiter=None)
    wrong = P.TextResponse(itt=tmf.itt, ttt=RESERVED_TAG, statsn=100, expcmdsn=1, maxcmdsn=32)
    with pytest.raises(RemoteProtocolError, match=rf"TextResponse for ITT 0x{tmf.itt:08x}, which awaits a "
                                                  r"TaskMgmtResponse \(full feature phase"):
        w.initiator.receive(wrong)
    read = w.read(0, 1)
    with pytest.raises(RemoteProtocolError, match=r"LogoutResponse .* awaits a SCSI command.s"):
        w.initiator.receive(P.LogoutResponse(itt=read.itt, statsn=101, expcmdsn=1, maxcmdsn=32))
    with pytest.raises(RemoteProtocolError, match=r"ScsiResponse .* awaits a TaskMgmtResponse"):
        w.initiator.receive(P.ScsiResponse(itt=tmf.itt, statsn=102, expcmdsn=1, maxcmdsn=32))


def test_a_data_in_out_of_datasn_order_is_a_protocol_error() -> None:
    w = Wire(seg_i=512)
    task = w.read(0, 4)
    w.to_target.clear()
    with pytest.raises(RemoteProtocolError, match=r"DataSN 1, expected 0 \(RFC 7143 11.7.5\)"):
        w.initiator.receive(P.DataIn(data=bytes(512), itt=task.itt, datasn=1, offset=512, expcmdsn=1, maxcmdsn=32))


def test_task_management_nop_text_with_continuation_and_logout() -> None:
    w = Wire(seg_i=512, seg_t=512)
    w.target.text = T.encode([("TargetName", f"iqn.2026-12.test:t{i}") for i in range(100)])
    assert len(w.target.text) > 4 * 512
    tmf = w.initiator.task_mgmt_request(TaskFunction.LOGICAL_UNIT_RESET, 0, RESERVED_TAG, waiter=None)
    ping = w.initiator.nop_out(b"ping")
    w.pump()
    tmf_reply, ping_reply = w.initiator.replies[tmf.itt], w.initiator.replies[ping.itt]
    assert isinstance(tmf_reply, P.TaskMgmtResponse) and tmf_reply.response == TaskResponse.COMPLETE
    assert isinstance(ping_reply, P.NopIn) and ping_reply.data == b"ping"
    got = b""
    request = w.initiator.text_request(T.encode([("SendTargets", "All")]), waiter=None)
    while True:
        w.pump()
        reply = w.initiator.replies.pop(request.itt)
        assert isinstance(reply, P.TextResponse)
        got += reply.data
        if not reply.cont:
            break
        request = w.initiator.text_request(b"", waiter=None, continuing=request, ttt=reply.ttt)
    assert got == w.target.text
    logout = w.initiator.logout_request(waiter=None)
    w.pump()
    assert isinstance(w.initiator.replies[logout.itt], P.LogoutResponse) and w.target.out
    assert w.initiator.window.expstatsn == w.target.statsn  # every status PDU was counted


def test_a_lost_connection_ends_each_pending_itt_as_it_records() -> None:
    w = Wire()
    w.target.hold = True
    read = w.read(0, 1)
    tmf = w.initiator.task_mgmt_request(TaskFunction.ABORT_TASK, 0, read.itt, waiter=None)
    keepalive = w.initiator.nop_out(keepalive=True)
    logout = w.initiator.logout_request(waiter=None)
    error = ConnectionLost("cable pulled", portal="conversation", cause="cable pulled")
    w.initiator.connection_gone(error)
    assert w.initiator.ended[read.itt] is error  # the caller may reissue it on another path
    assert w.initiator.replies[tmf.itt] is error
    assert keepalive.itt not in w.initiator.replies  # dropped: a ping means nothing any more
    assert w.initiator.replies[logout.itt] is None  # ended as the logout wanted
    assert not w.initiator.itts


def test_a_data_out_out_of_order_ends_the_command_with_a_reject() -> None:
    w = Wire(seg_i=512, seg_t=512, immediate=False, initial_r2t=True)
    task = w.write(0, bytes(2048))
    w.pump()  # command -> R2T -> four Data-Out
    assert w.result(task).status == Status.GOOD
    task = w.write(0, bytes(2048))
    w.to_target, cmd = [], w.to_target
    w.from_initiator.receive_data(cmd[0])
    frame = w.from_initiator.next_frame()
    assert frame is not None
    w.target.receive(P.decode(frame.header, frame.data), frame.header)
    r2t = w.sent_by_target[-1]
    assert isinstance(r2t, P.R2T)
    w.to_initiator.clear()
    skipped = P.DataOut(data=bytes(512), itt=task.itt, ttt=r2t.ttt, datasn=1, offset=512)
    w.to_target.append(b"".join(bytes(x) for x in frame_pdu(skipped)))
    w.pump()
    assert isinstance(w.initiator.ended[task.itt], IscsiError) and not w.target.tasks
