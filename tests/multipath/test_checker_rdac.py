"""rdac: the volume access control page (VPD C9h) tells the owning controller (up) from the passive one
(ghost); canned pages for each rule, and sanpath's rdac target profile end to end."""

from __future__ import annotations

import pytest

from sanpath.initiator.session import CommandResult
from sanpath.multipath.checkers import CHECKERS, RdacChecker, TurChecker
from sanpath.multipath.states import CheckResult
from sanpath.scsi.sense import build_fixed_sense
from sanpath.target.config import quick_config
from sanpath.testing.inproc import TEST_IQN, running_target

from .plugin_helpers import StubSession, live_path, stub_path, vpd_c9


def page_session(page: bytes) -> StubSession:
    return StubSession(lambda cdb: CommandResult(0, data=memoryview(page)))


@pytest.mark.parametrize(("page", "expected", "words"), [
    (vpd_c9(owned=True, preferred=True), CheckResult.UP, "owns"),
    (vpd_c9(owned=False, preferred=False), CheckResult.GHOST, "does not own"),
    (vpd_c9(owned=False, preferred=True, ioship=True), CheckResult.UP, "I/O shipping"),
    (vpd_c9(owned=True, preferred=True, state=0x3), CheckResult.DOWN, "unavailable"),
    (vpd_c9(owned=False, preferred=False, state=0xF, alternate_state=0x0), CheckResult.DOWN, "starting up"),
    (vpd_c9(owned=False, preferred=False, state=0xF, alternate_state=0xF), CheckResult.GHOST, "does not own"),
    (vpd_c9(owned=True, preferred=True, device_type=0x1F), CheckResult.DOWN, "not connected"),
    (b"\x00\xc9\x00\x2cxxxx" + bytes(40), CheckResult.DOWN, "not an RDAC"),
])
async def test_canned_pages(page: bytes, expected: CheckResult, words: str) -> None:
    session = page_session(page)
    result, reason = await RdacChecker().check(stub_path(session), 1.0)
    assert result == expected and words in reason
    assert session.commands[0][:3] == b"\x12\x01\xc9"  # INQUIRY, EVPD, page C9h


async def test_inquiry_refused_is_down() -> None:
    session = StubSession(lambda cdb: CommandResult(0x02, sense=build_fixed_sense(0x5, 0x24, 0x00)))
    result, _ = await RdacChecker().check(stub_path(session), 1.0)
    assert result == CheckResult.DOWN


async def test_timeout_is_down() -> None:
    assert (await RdacChecker().check(stub_path(StubSession(hang=True)), 0.05))[0] == CheckResult.DOWN


async def test_rdac_target_owner_up_passive_ghost() -> None:
    spec = quick_config(TEST_IQN, ["127.0.0.1:0", "127.0.0.2:0"], ["mem:4MiB"], profile="rdac", owner="A")
    async with running_target(spec=spec) as server:
        by_host = {h: i for i, (h, _) in enumerate(server.portals)}
        async with live_path(server, by_host["127.0.0.1"]) as a, live_path(server, by_host["127.0.0.2"]) as b:
            assert (await RdacChecker().check(a, 5.0))[0] == CheckResult.UP
            assert (await RdacChecker().check(b, 5.0))[0] == CheckResult.GHOST
            assert (await TurChecker().check(b, 5.0))[0] == CheckResult.UP  # TUR cannot tell


def test_registry() -> None:
    assert CHECKERS["rdac"] is RdacChecker
