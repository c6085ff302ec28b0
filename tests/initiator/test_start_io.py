"""``ScsiDevice.start_io``, the callback path the load engine drives: the same bytes as ``read_into`` and
``write``, failed commands and lost connections reported through the callback, and the slow way (a task)
taken for transfers over one command, a closed command window and a UNIT ATTENTION."""

from __future__ import annotations

import asyncio
import os

import pytest

from sanpath.aio import within
from sanpath.errors import ConnectionLost, ScsiCommandError
from sanpath.initiator.device import MAX_TRANSFER, ScsiDevice
from sanpath.initiator.session import Session, SessionConfig
from sanpath.testing.inproc import TEST_IQN, running_target

from .arrays import ua_after_reconnect

HANG_GUARD = 60.0
KiB = 1024


async def io(dev: ScsiDevice, offset: int, buffer: bytearray, is_read: bool) -> BaseException | None:
    """One ``start_io``, awaited; returns the error it reported (None: success)."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[BaseException | None] = loop.create_future()
    called_back_inside = True

    def done(error: BaseException | None) -> None:
        assert not called_back_inside, "done() was called from inside start_io"
        assert not outcome.done(), "done() was called twice"
        outcome.set_result(error)

    dev.start_io(offset, buffer, is_read, done)
    called_back_inside = False
    return await within(outcome, HANG_GUARD)


async def logged_in(session: Session) -> None:
    while not session.logged_in:
        await asyncio.sleep(0.01)


async def test_start_io_moves_the_same_bytes_as_read_and_write() -> None:
    async with running_target(luns=("mem:20MiB",), cmd_window=8) as server:
        host, port = server.portals[0]
        session = await Session.open(SessionConfig(host, port, TEST_IQN))
        dev = await ScsiDevice(session, 0).open()
        # 64 writes at once through a window of 8 commands: the rest wait for the window on tasks
        chunks = [bytearray(os.urandom(64 * KiB)) for _ in range(64)]
        assert await asyncio.gather(*(io(dev, i * 64 * KiB, c, False) for i, c in enumerate(chunks))) == [None] * 64
        big = bytearray(os.urandom(MAX_TRANSFER + 512 * KiB))  # more than one command: the slow way
        assert await io(dev, 4 << 20, big, False) is None
        assert await dev.read(0, 64 * KiB) == chunks[0]
        assert await dev.read(4 << 20, len(big)) == big
        back = [bytearray(64 * KiB) for _ in range(64)]
        assert await asyncio.gather(*(io(dev, i * 64 * KiB, b, True) for i, b in enumerate(back))) == [None] * 64
        assert back == chunks
        big_back = bytearray(len(big))
        assert await io(dev, 4 << 20, big_back, True) is None
        assert big_back == big
        await session.logout()


async def test_start_io_reports_a_failed_command_as_a_scsi_error() -> None:
    async with running_target(luns=("mem:1MiB",)) as server:
        host, port = server.portals[0]
        session = await Session.open(SessionConfig(host, port, TEST_IQN))
        dev = await ScsiDevice(session, 0).open()
        server.faults.inject("medium-error", lun=0)
        error = await io(dev, 0, bytearray(4096), True)
        assert isinstance(error, ScsiCommandError)
        assert "MEDIUM_ERROR ASC/ASCQ 11h/00h" in str(error)
        await server.faults.restore()
        assert await io(dev, 0, bytearray(4096), True) is None
        await session.logout()


async def test_start_io_reports_a_lost_connection_then_retries_the_unit_attention() -> None:
    async with ua_after_reconnect() as (proxy, session, dev):
        data = bytearray(os.urandom(8192))
        assert await io(dev, 0, data, False) is None
        before = session.unit_attentions
        proxy.reset_all()
        assert isinstance(await io(dev, 0, bytearray(8192), True), ConnectionLost)
        await within(logged_in(session), HANG_GUARD)  # so the next read takes the fast path
        back = bytearray(8192)
        assert await io(dev, 0, back, True) is None  # the UNIT ATTENTION it met was retried
        assert back == data
        assert session.unit_attentions == before + 1


async def test_start_io_rejects_a_misaligned_request_at_once() -> None:
    async with running_target(luns=("mem:1MiB",)) as server:
        host, port = server.portals[0]
        session = await Session.open(SessionConfig(host, port, TEST_IQN))
        dev = await ScsiDevice(session, 0).open()
        with pytest.raises(ValueError, match="multiples of the block size"):
            dev.start_io(100, bytearray(4096), True, lambda error: None)
        with pytest.raises(ValueError, match="past the end"):
            dev.start_io(1 << 20, bytearray(4096), True, lambda error: None)
        assert not session.itts
        await session.logout()
