"""The blocking facade: the same answers as the async core, its errors re-raised in the caller's thread,
and its event-loop thread gone after logout."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from sanpath.errors import ConnectionLost, LoginError, ScsiCommandError
from sanpath.initiator.device import ScsiDevice
from sanpath.initiator.session import Session, SessionConfig
from sanpath.initiator.sync import EventLoopThread, SyncSession, discover
from sanpath.target.spawn import RunningTarget

from ..conftest import IQN


def config(t: RunningTarget, portal: int = 0, **kw: object) -> SessionConfig:
    host, _, port = t.portals[portal].rpartition(":")
    return SessionConfig(host, int(port), IQN, **kw)  # type: ignore[arg-type]


def loop_threads() -> int:
    return sum(1 for th in threading.enumerate() if th.name == "sanpath-sync" and th.is_alive())


def test_device_round_trip(target_process: RunningTarget) -> None:
    before = loop_threads()
    with SyncSession.open(config(target_process)) as s:
        assert s.logged_in and s.portal == target_process.portals[0]
        dev = s.device(1)
        assert (dev.lun, dev.size, dev.block_size) == (1, 16 << 20, 512)
        data = os.urandom(64 * 1024)
        dev.write(8192, data)
        dev.flush()
        assert dev.read(8192, len(data)) == data
        buf = bytearray(4096)
        dev.read_into(8192 + 4096, buf)
        assert buf == data[4096:8192]
        dev.unmap(8192, 4096)
        assert s.ping() >= 0
        assert loop_threads() == before + 1
    assert loop_threads() == before
    assert not s.logged_in


async def _async_view(t: RunningTarget) -> tuple[tuple[int, ...], str, object]:
    session = await Session.open(config(t))
    try:
        dev = await ScsiDevice(session, 0).open()
        return await dev.report_luns(), await dev.scsi_id(), await dev.info()
    finally:
        await session.logout()


def test_same_answers_as_async(target_process: RunningTarget) -> None:
    luns, scsi_id, info = asyncio.run(_async_view(target_process))
    with SyncSession.open(config(target_process, 1)) as s:
        dev = s.device(0)
        assert dev.report_luns() == luns == (0, 1)
        assert dev.scsi_id() == scsi_id
        assert dev.info() == info


def test_errors_reach_the_caller(target_process: RunningTarget) -> None:
    before = loop_threads()
    good = config(target_process)
    with pytest.raises(LoginError, match="nothere"):
        SyncSession.open(SessionConfig(good.host, good.port, "iqn.2026-11.org.x:nothere"))
    assert loop_threads() == before  # the thread it started is gone
    with SyncSession.open(config(target_process)) as s:
        dev = s.device(1)
        with pytest.raises(ValueError, match="past the end"):
            dev.read(16 << 20, 512)
        with pytest.raises(ScsiCommandError):
            s.device(7)  # no such LUN: READ CAPACITY fails with the sense decoded


def test_discover(target_process: RunningTarget, unused_tcp_port: int) -> None:
    records, errors = discover(",".join(target_process.portals) + f",127.0.0.1:{unused_tcp_port}")
    assert sorted(r.portal for r in records) == sorted(target_process.portals)
    assert {r.iqn for r in records} == {IQN}
    assert list(errors) == [f"127.0.0.1:{unused_tcp_port}"]
    assert isinstance(errors[f"127.0.0.1:{unused_tcp_port}"], ConnectionLost)


def test_shared_runner(target_process: RunningTarget) -> None:
    runner = EventLoopThread()
    try:
        a = SyncSession.open(config(target_process, 0), runner=runner)
        b = SyncSession.open(config(target_process, 1), runner=runner)
        a.device(1).write(0, b"\x5a" * 512)
        assert b.device(1).read(0, 512) == b"\x5a" * 512
        a.logout()
        b.logout()
        assert not runner.loop.is_closed()  # not theirs to stop
        records, _ = discover(target_process.portals[0], runner=runner)
        assert records
    finally:
        runner.stop()
    assert runner.loop.is_closed()


def test_no_deadlock_from_inside_the_loop() -> None:
    runner = EventLoopThread()
    try:
        async def nested() -> None:
            async def nothing() -> None:
                return None
            runner.run(nothing())

        with pytest.raises(RuntimeError, match="deadlock"):
            runner.run(nested())
    finally:
        runner.stop()
