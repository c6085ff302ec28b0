"""Hostile input at the target's PDU intake: every malformed PDU gets a Reject or a clean close, other
sessions keep working, buffered memory stays bounded, and the server never falls over."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanpath.aio import within
from sanpath.iscsi import pdu as P
from sanpath.iscsi.constants import RejectReason
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import TEST_IQN, running_target
from sanpath.testing.rawinit import RawSession, login

TUR = bytes(6)
READ10_1 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0])


async def healthy(server: TargetServer, bystander: RawSession) -> None:
    """The bystander session still gets answers, and new logins still work. A hostile PDU may be a valid
    LUN or target reset, which leaves a UNIT ATTENTION (29h/xx) for everyone: that is answered, and the
    retry must succeed."""
    status, _, sense = await bystander.command(TUR)
    if status == 2 and len(sense) > 12 and sense[2] & 0x0F == 0x06 and sense[12] == 0x29:
        status, _, _ = await bystander.command(TUR)
    assert status == 0
    host, port = server.portals[0]
    fresh = await login(host, port, TEST_IQN)
    status, data, _ = await fresh.command(READ10_1, read=512)
    assert status == 0 and len(data) == 512
    await fresh.close()


async def expect_reject_or_close(s: RawSession, reason: int | None = None) -> str:
    while True:
        try:
            pdu = await s.recv(timeout=10)
        except (ConnectionError, OSError):
            return "closed"
        if pdu is None:
            return "closed"
        if isinstance(pdu, P.Reject):
            if reason is not None:
                assert pdu.reason == reason
            return "reject"


@pytest.fixture
async def target() -> TargetServer:  # type: ignore[misc]
    async with running_target() as server:
        yield server


async def session(server: TargetServer, **kw: bool) -> RawSession:
    host, port = server.portals[0]
    return await login(host, port, TEST_IQN, **kw)


async def test_unknown_opcode_rejected(target: TargetServer) -> None:
    bystander = await session(target)
    s = await session(target)
    header = bytearray(P.NopOut(itt=9, cmdsn=s.cmdsn).encode_header())
    header[0] = 0x1D  # not an opcode RFC 7143 defines
    await s.send_raw(bytes(header))
    assert await expect_reject_or_close(s, RejectReason.COMMAND_NOT_SUPPORTED) == "reject"
    status, _, _ = await s.command(TUR)  # the session survives a Reject
    assert status == 0
    await healthy(target, bystander)


async def test_target_opcode_from_initiator_rejected(target: TargetServer) -> None:
    s = await session(target)
    await s.send(P.R2T(itt=1, ttt=2))
    assert await expect_reject_or_close(s, RejectReason.PROTOCOL_ERROR) == "reject"


async def test_oversized_data_segment_closes(target: TargetServer) -> None:
    bystander = await session(target)
    s = await session(target)
    header = bytearray(P.NopOut(itt=3, cmdsn=s.cmdsn).encode_header())
    header[5:8] = (0xFFFFFF).to_bytes(3, "big")  # 16 MiB - 1, far above the declared 256 KiB
    await s.send_raw(bytes(header))
    assert await expect_reject_or_close(s) in ("reject", "closed")
    assert await expect_reject_or_close(s) == "closed"
    await healthy(target, bystander)


async def test_bad_ahs_length_closes(target: TargetServer) -> None:
    bystander = await session(target)
    s = await session(target)
    header = bytearray(P.ScsiCommand(itt=4, cmdsn=s.cmdsn, cdb=bytes(32)).encode_header())
    header[48:50] = (999).to_bytes(2, "big")
    await s.send_raw(bytes(header))
    assert await expect_reject_or_close(s) in ("reject", "closed")
    await healthy(target, bystander)


async def test_cmdsn_outside_window_rejected(target: TargetServer) -> None:
    s = await session(target)
    await s.send(P.ScsiCommand(itt=5, cmdsn=(s.cmdsn + 100000) & 0xFFFFFFFF, cdb=TUR.ljust(16, b"\0")))
    assert await expect_reject_or_close(s, RejectReason.PROTOCOL_ERROR) == "reject"
    status, _, _ = await s.command(TUR)
    assert status == 0


async def test_header_digest_error_closes(target: TargetServer) -> None:
    bystander = await session(target)
    s = await session(target, digests=True)
    assert s.answers.get("HeaderDigest") == "CRC32C"
    s.header_digest = False  # send the header with a wrong digest
    await s.send_raw(P.NopOut(itt=6, cmdsn=s.cmdsn).encode_header() + b"\xde\xad\xbe\xef")
    assert await expect_reject_or_close(s) == "closed"
    await healthy(target, bystander)


async def test_data_digest_error_rejected_then_closed(target: TargetServer) -> None:
    s = await session(target, digests=True)
    pieces = P.NopOut(itt=7, cmdsn=s.cmdsn, data=b"ping").encode_header()
    from sanpath.iscsi.digest import digest_bytes

    await s.send_raw(pieces + digest_bytes(pieces) + b"ping" + b"\0\0\0\0")
    assert await expect_reject_or_close(s, RejectReason.DATA_DIGEST_ERROR) == "reject"
    assert await expect_reject_or_close(s) == "closed"


async def test_data_out_for_unknown_task_rejected(target: TargetServer) -> None:
    s = await session(target)
    await s.send(P.DataOut(data=b"x" * 512, final=True, itt=0x777, ttt=0x1234, offset=0))
    assert await expect_reject_or_close(s, RejectReason.INVALID_PDU_FIELD) == "reject"


async def test_garbage_before_login_closes(target: TargetServer) -> None:
    host, port = target.portals[0]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(100))
    await writer.drain()
    data = await within(reader.read(), 10)
    assert data == b"" and reader.at_eof()  # closed without an answer: it never was iSCSI
    writer.close()


async def test_data_out_with_wrong_datasn_rejected(target: TargetServer) -> None:
    s = await session(target)
    itt = s.next_itt()
    cdb = struct.pack(">BBIBHB", 0x2A, 0, 0, 0, 2, 0).ljust(16, b"\0")
    await s.send(P.ScsiCommand(write=True, itt=itt, edtl=1024, cmdsn=s.cmdsn, cdb=cdb))
    s.cmdsn += 1
    r2t = await s.recv()
    assert isinstance(r2t, P.R2T) and r2t.length == 1024
    await s.send(P.DataOut(data=bytes(512), itt=itt, ttt=r2t.ttt, datasn=27, offset=0))
    assert await expect_reject_or_close(s, RejectReason.PROTOCOL_ERROR) == "reject"
    # the rest of that command's data is dropped quietly, and the session goes on
    await s.send(P.DataOut(data=bytes(512), final=True, itt=itt, ttt=r2t.ttt, datasn=1, offset=512))
    status, _, _ = await s.command(TUR)
    assert status == 0


async def test_snack_rejected(target: TargetServer) -> None:
    s = await session(target)
    await s.send(P.Snack(type=0, itt=1, begrun=0, runlength=0))
    assert await expect_reject_or_close(s, RejectReason.SNACK_REJECT) == "reject"


async def test_memory_bounded_under_huge_writes_without_data(target: TargetServer) -> None:
    """Write commands announcing 64 MiB each but sending nothing: the target solicits within its
    budget and buffers nothing it was not sent."""
    s = await session(target)
    edtl = 64 << 20
    for _ in range(100):
        cdb = struct.pack(">BBIBHB", 0x2A, 0, 0, 0, edtl // 512 & 0xFFFF, 0)
        await s.send(P.ScsiCommand(write=True, itt=s.next_itt(), edtl=edtl, cmdsn=s.cmdsn, cdb=cdb.ljust(16, b"\0")))
        s.cmdsn += 1
    await asyncio.sleep(0.3)
    sessions = [c.session for c in target.connections if c.session is not None]
    for sess in sessions:
        buffered = sum(len(d) for t in sess.tasks.values() for _, d in t.chunks)
        assert buffered == 0
        assert sess.r2t_budget >= 0
    await s.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(min_size=1, max_size=600), opcode=st.integers(0, 0x3F))
async def test_random_pdus_never_break_the_server(blob: bytes, opcode: int) -> None:
    async with running_target() as server:
        bystander = await session(server)
        s = await session(server)
        header = bytearray(blob[:48].ljust(48, b"\0"))
        header[0] = opcode | (header[0] & 0x40)
        header[4] = header[4] & 0x03
        header[5:8] = min(len(blob) - 48 if len(blob) > 48 else 0, 0xFFFFFF).to_bytes(3, "big")
        await s.send_raw(bytes(header) + blob[48:] + bytes(-len(blob[48:]) % 4))
        with contextlib.suppress(Exception):  # a Reject, a close or silence are all acceptable here
            await within(s.recv(timeout=0.3), 0.5)
        await healthy(server, bystander)
