"""nop: an iSCSI NOP-Out round trip on the path's session."""

from __future__ import annotations

from sanpath.multipath.checkers import CHECKERS, NopChecker
from sanpath.multipath.states import CheckResult
from sanpath.testing.inproc import running_target

from .plugin_helpers import StubSession, live_path, stub_path


async def test_up() -> None:
    async with running_target() as server, live_path(server) as path:
        result, reason = await NopChecker().check(path, 5.0)
    assert result == CheckResult.UP and reason.startswith("NOP-In after")


async def test_session_gone_is_down() -> None:
    async with running_target() as server, live_path(server) as path:
        assert path.session is not None
        await path.session.close()
        assert (await NopChecker().check(path, 5.0))[0] == CheckResult.DOWN


async def test_no_answer_is_down() -> None:
    result, reason = await NopChecker().check(stub_path(StubSession(hang=True)), 0.05)
    assert result == CheckResult.DOWN and "0.05 s" in reason


def test_registry() -> None:
    assert CHECKERS["nop"] is NopChecker
