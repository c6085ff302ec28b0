"""The initiator under faults: a target killed mid-I/O, a black-holed portal, a UNIT ATTENTION after a
reconnect, a wrong CHAP secret, a command that never completes. Every wait is bounded by a hang guard
(generous, never a timing assertion)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from sanpath.aio import within
from sanpath.errors import CommandTimeout, ConnectionLost, LoginError
from sanpath.initiator.device import ScsiDevice
from sanpath.initiator.session import Session, SessionConfig
from sanpath.iscsi.auth import ChapCredentials
from sanpath.scsi.cdb import read_16
from sanpath.target.spawn import serve_target
from sanpath.testing.faultproxy import FaultProxy
from sanpath.testing.inproc import TEST_IQN, running_target

from .arrays import KINDS, array, ua_after_reconnect

HANG_GUARD = 60.0


async def load(dev: ScsiDevice, workers: int = 16) -> list[BaseException | None]:
    """Writes and reads from ``workers`` coroutines until one fails; returns how each ended."""
    async def worker(i: int) -> None:
        data = os.urandom(65536)
        while True:
            await dev.write(i * 65536, data)
            await dev.read(i * 65536, 65536)

    results = await asyncio.gather(*(worker(i) for i in range(workers)), return_exceptions=True)
    return list(results)


@pytest.mark.parametrize("kind", KINDS)
async def test_target_killed_mid_io_fails_every_command_with_a_typed_error(kind: str, tmp_path: Path) -> None:
    if kind == "sanpath":
        ctx = serve_target("--iqn", TEST_IQN, "--portal", "127.0.0.1:0", "--lun", "mem:8MiB")
        with ctx as t:
            host, port = t.portals[0].rsplit(":", 1)
            session = await Session.open(SessionConfig(host, int(port), TEST_IQN))
            dev = await ScsiDevice(session, 0).open()
            running = asyncio.ensure_future(load(dev))
            await asyncio.sleep(0.3)
            t.process.send_signal(signal.SIGKILL)
            results = await within(running, HANG_GUARD)
    else:
        async with array(kind, tmp_path) as a:
            session = await Session.open(SessionConfig(a.host, a.port, a.iqn))
            dev = await ScsiDevice(session, a.lun).open()
            running = asyncio.ensure_future(load(dev))
            await asyncio.sleep(0.3)
            tgtd = next(p for p in _tgtd_pids())
            os.kill(tgtd, signal.SIGKILL)
            results = await within(running, HANG_GUARD)
    assert all(isinstance(r, ConnectionLost) for r in results), results
    assert all(r.portal == session.portal for r in results if isinstance(r, ConnectionLost))
    with pytest.raises(ConnectionLost):
        await dev.read(0, 512)  # no reconnect configured: the session stays down, and says so
    await session.close()


def _tgtd_pids() -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0].endswith(b"tgtd"):
                        out.append(int(pid))
            except OSError:
                pass
    return sorted(out, reverse=True)  # the newest first: the one this test started


async def test_black_holed_portal_is_detected_by_nop_not_tcp() -> None:
    async with running_target(luns=("mem:8MiB",)) as server:
        proxy = FaultProxy(*server.portals[0])
        host, port = await proxy.start()
        session = await Session.open(SessionConfig(host, port, TEST_IQN, nop_interval=0.5, nop_timeout=0.5,
                                                   command_timeout=600))
        dev = await ScsiDevice(session, 0).open()
        await dev.write(0, os.urandom(4096))
        proxy.blackhole()  # no RST, no FIN: only liveness can tell
        with pytest.raises(ConnectionLost) as exc:
            await within(dev.read(0, 4096), HANG_GUARD)
        assert "NOP-Out" in exc.value.cause
        await session.close()
        await proxy.stop()


BUSY = {"nop_interval": 30.0, "nop_timeout": 30.0, "busy_silence": 0.05, "busy_nop_timeout": 0.1}


async def test_a_busy_connection_gone_silent_is_found_by_a_quick_ping() -> None:
    """With commands in flight, 50 ms of silence sends a NOP-Out at once; the idle keep-alive (30 s here)
    plays no part."""
    async with running_target(luns=("mem:8MiB",)) as server:
        proxy = FaultProxy(*server.portals[0])
        host, port = await proxy.start()
        session = await Session.open(SessionConfig(host, port, TEST_IQN, command_timeout=600, **BUSY))
        dev = await ScsiDevice(session, 0).open()
        await dev.write(0, os.urandom(4096))
        proxy.blackhole()
        await asyncio.sleep(0.5)
        assert session.logged_in  # idle: nothing in flight, nothing expected from the target
        with pytest.raises(ConnectionLost) as exc:
            await within(dev.read(0, 4096), 10)  # far sooner than any idle ping could tell
        assert "NOP-Out within 0.1 s" in exc.value.cause, exc.value.cause
        await session.close()
        await proxy.stop()


async def test_slow_commands_on_a_live_target_are_not_a_dead_connection() -> None:
    """Commands that take a second on the target: the connection is silent meanwhile, the quick pings go
    out, the target answers them, and nothing fails."""
    async with running_target(luns=("mem:8MiB",)) as server:
        lu = next(iter(next(iter(server.targets.values())).luns.values()))
        original = lu.execute

        async def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
            await asyncio.sleep(1.0)
            return await original(*args, **kwargs)

        lu.execute = slow  # type: ignore[method-assign]
        host, port = server.portals[0]
        session = await Session.open(SessionConfig(host, port, TEST_IQN, command_timeout=600, **BUSY))
        dev = await ScsiDevice(session, 0).open()
        sent = session.nops_sent
        await within(asyncio.gather(*(dev.read(i * 4096, 4096) for i in range(8))), HANG_GUARD)
        assert session.logged_in and session.lost_count == 0
        assert session.nops_sent > sent  # the silence was noticed, and the pings were answered
        await session.close()


async def test_idle_session_stays_up_and_pings_are_answered() -> None:
    async with running_target(luns=("mem:1MiB",)) as server:
        host, port = server.portals[0]
        session = await Session.open(SessionConfig(host, port, TEST_IQN, nop_interval=0.2, nop_timeout=0.5))
        await asyncio.sleep(1.5)  # several quiet intervals: pings go out and are answered
        assert session.logged_in and session.lost_count == 0
        assert await session.ping() >= 0
        await session.logout()


async def test_unit_attention_after_reconnect_is_retried() -> None:
    async with ua_after_reconnect() as (proxy, session, dev):
        data = os.urandom(8192)
        await dev.write(0, data)
        before = session.unit_attentions
        proxy.reset_all()
        with pytest.raises(ConnectionLost):  # what was in flight (nothing here, the next command) fails...
            await within(dev.read(0, 8192), HANG_GUARD)
        back = await within(dev.read(0, 8192), HANG_GUARD)  # ...then the session is back
        assert back == data
        assert session.unit_attentions == before + 1  # the UNIT ATTENTION was seen and retried
        assert proxy.accepted == 2


async def test_wrong_chap_secret_is_one_clear_error_and_no_retry_storm(tmp_path: Path) -> None:
    async with array("sanpath", tmp_path, chap=True) as a:
        proxy = FaultProxy(a.host, a.port)
        host, port = await proxy.start()
        config = SessionConfig(host, port, a.iqn, chap=ChapCredentials("initiator-user", b"wrong-secret-123456"),
                               reconnect=True, reconnect_backoff=0.01)
        with pytest.raises(LoginError) as exc:
            await within(Session.open(config), HANG_GUARD)
        assert exc.value.status == 0x0201
        assert "CHAP" in str(exc.value) and "secret" in str(exc.value)
        await asyncio.sleep(0.5)
        assert proxy.accepted == 1
        await proxy.stop()


async def test_reconnect_gives_up_after_bounded_attempts() -> None:
    async with running_target(luns=("mem:1MiB",)) as server:
        proxy = FaultProxy(*server.portals[0])
        host, port = await proxy.start()
        session = await Session.open(SessionConfig(host, port, TEST_IQN, reconnect=True, reconnect_attempts=3,
                                                   reconnect_backoff=0.01, login_timeout=2))
        dev = await ScsiDevice(session, 0).open()
        proxy.blackhole()
        proxy.reset_all()  # the session drops; every reconnect now lands in the black hole
        with pytest.raises(ConnectionLost):
            await within(dev.read(0, 512), HANG_GUARD)
        with pytest.raises(ConnectionLost) as exc:
            await within(dev.read(0, 512), HANG_GUARD)
        assert "gave up" in str(exc.value)
        assert proxy.accepted == 1 + 3
        await session.close()
        await proxy.stop()


async def test_stuck_command_is_aborted_and_reported() -> None:
    async with running_target(luns=("mem:1MiB",)) as server:
        host, port = server.portals[0]
        session = await Session.open(SessionConfig(host, port, TEST_IQN, command_timeout=0.5, nop_interval=0))
        dev = await ScsiDevice(session, 0).open()
        lu = server.targets[TEST_IQN].luns[0]
        gate = asyncio.Event()
        original = lu.execute

        async def stuck(nexus, cdb, data_out):  # type: ignore[no-untyped-def]
            if cdb[0] == 0x88:  # READ(16) hangs until released
                await gate.wait()
            return await original(nexus, cdb, data_out)

        lu.execute = stuck  # type: ignore[method-assign]
        with pytest.raises(CommandTimeout):
            await within(dev.read(0, 512), HANG_GUARD)
        lu.execute = original  # type: ignore[method-assign]
        gate.set()
        assert session.logged_in  # ABORT TASK cleared it: the session is intact
        assert await dev.read(0, 512) == bytes(512)
        await session.logout()


async def test_a_short_timeout_issued_after_a_long_one_still_fires_first() -> None:
    """Command timeouts share one timer per session: a command with a short timeout issued while a
    long one is pending must re-arm it earlier, and the long one must stay untouched."""
    async with running_target(luns=("mem:1MiB",)) as server:
        host, port = server.portals[0]
        session = await Session.open(SessionConfig(host, port, TEST_IQN, nop_interval=0))
        lu = server.targets[TEST_IQN].luns[0]
        gate = asyncio.Event()
        original = lu.execute

        async def stuck(nexus, cdb, data_out):  # type: ignore[no-untyped-def]
            if cdb[0] == 0x88 and cdb[9] == 1:  # READ(16) of LBA 1 hangs until released
                await gate.wait()
            return await original(nexus, cdb, data_out)

        lu.execute = stuck  # type: ignore[method-assign]
        long = asyncio.ensure_future(session.execute(0, read_16(1, 1), read_length=512, timeout=HANG_GUARD))
        await asyncio.sleep(0.1)
        with pytest.raises(CommandTimeout):
            await within(session.execute(0, read_16(1, 1), read_length=512, timeout=0.3), HANG_GUARD / 2)
        assert not long.done()  # its deadline is far away: not aborted with the short one
        gate.set()
        assert (await within(long, HANG_GUARD)).status == 0
        await session.logout()
