"""tur: TEST UNIT READY verdicts, against the in-process target, and for sense data it cannot produce."""

from __future__ import annotations

import asyncio

import pytest

from sanpath.initiator.session import CommandResult
from sanpath.multipath.checkers import CHECKERS, TurChecker
from sanpath.multipath.states import CheckResult
from sanpath.scsi.constants import AluaState
from sanpath.scsi.sense import build_fixed_sense
from sanpath.target.common import PortGroupInfo
from sanpath.testing.inproc import TEST_IQN, running_target

from .plugin_helpers import StubSession, bare_paths, fake_alua, live_path, stub_path

CHECK_CONDITION = 0x02


async def test_up() -> None:
    async with running_target() as server, live_path(server) as path:
        assert await TurChecker().check(path, 5.0) == (CheckResult.UP, "TEST UNIT READY: GOOD")


async def test_session_gone_is_down() -> None:
    async with running_target() as server, live_path(server) as path:
        assert path.session is not None
        await path.session.close()
        result, reason = await TurChecker().check(path, 5.0)
    assert result == CheckResult.DOWN
    assert "not logged in" in reason


async def test_no_session_is_down() -> None:
    result, reason = await TurChecker().check(bare_paths(1)[0], 1.0)
    assert (result, reason) == (CheckResult.DOWN, "session not logged in")


async def test_target_stopped_is_down() -> None:
    async with running_target() as server, live_path(server) as path:
        await server.stop()
        result, _ = await TurChecker().check(path, 2.0)
    assert result == CheckResult.DOWN


@pytest.mark.parametrize("state", [AluaState.STANDBY, AluaState.UNAVAILABLE, AluaState.TRANSITIONING])
async def test_alua_not_accessible_is_ghost(state: AluaState, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_target() as server, live_path(server) as path:
        lu = server.targets[TEST_IQN].luns[0]
        tpg = server.targets[TEST_IQN].tpgs[0].tpg_id
        fake_alua(monkeypatch, lu, [PortGroupInfo(tpg, state, (1,))])
        result, reason = await TurChecker().check(path, 5.0)
    assert result == CheckResult.GHOST
    assert "ALUA" in reason


async def test_unit_attention_is_asked_again() -> None:
    answers = [build_fixed_sense(0x6, 0x29, 0x00), b""]

    def answer(cdb: bytes) -> CommandResult:
        sense = answers.pop(0)
        return CommandResult(CHECK_CONDITION if sense else 0, sense=sense)

    session = StubSession(answer)
    assert await TurChecker().check(stub_path(session), 1.0) == (CheckResult.UP, "TEST UNIT READY: GOOD")
    assert len(session.commands) == 2


async def test_unit_attention_forever_is_down() -> None:
    session = StubSession(lambda cdb: CommandResult(CHECK_CONDITION, sense=build_fixed_sense(0x6, 0x2A, 0x06)))
    result, reason = await TurChecker().check(stub_path(session), 1.0)
    assert result == CheckResult.DOWN and "UNIT ATTENTION" in reason


@pytest.mark.parametrize(("status", "sense", "expected"), [
    (0x08, b"", CheckResult.UP),  # BUSY: alive
    (0x18, b"", CheckResult.UP),  # RESERVATION CONFLICT: another host's reservation, not a path failure
    (CHECK_CONDITION, build_fixed_sense(0x5, 0x94, 0x01), CheckResult.GHOST),  # RDAC passive controller
    (CHECK_CONDITION, build_fixed_sense(0x2, 0x04, 0x03), CheckResult.DOWN),  # manual intervention required
    (CHECK_CONDITION, build_fixed_sense(0x4, 0x44, 0x00), CheckResult.DOWN),  # HARDWARE ERROR
    (CHECK_CONDITION, b"\x01", CheckResult.DOWN),  # unreadable sense
    (0x40, b"", CheckResult.DOWN),  # TASK ABORTED
])
async def test_status_verdicts(status: int, sense: bytes, expected: CheckResult) -> None:
    session = StubSession(lambda cdb: CommandResult(status, sense=sense))
    result, _ = await TurChecker().check(stub_path(session), 1.0)
    assert result == expected


async def test_timeout_is_down() -> None:
    result, reason = await TurChecker().check(stub_path(StubSession(hang=True)), 0.05)
    assert result == CheckResult.DOWN and "no answer within 0.05 s" in reason


async def test_timeout_leaves_the_command_to_the_session() -> None:
    session = StubSession(hang=True)
    assert (await TurChecker().check(stub_path(session), 0.05))[0] == CheckResult.DOWN
    await asyncio.sleep(0.01)
    assert session.cancelled == 0  # still in flight: the session's command_timeout will abort it
    session.release.set()
    await asyncio.sleep(0.01)


async def test_exception_is_down_not_raised() -> None:
    def boom(cdb: bytes) -> CommandResult:
        raise ConnectionResetError("peer reset")

    result, reason = await TurChecker().check(stub_path(StubSession(boom)), 1.0)
    assert result == CheckResult.DOWN and "peer reset" in reason


def test_registry() -> None:
    assert CHECKERS["tur"] is TurChecker
