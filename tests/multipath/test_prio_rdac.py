"""rdac: multipath-tools' values from VPD C9h: owner +2, preferred path +4, secondary path +1."""

from __future__ import annotations

import pytest

from sanpath.initiator.session import CommandResult
from sanpath.multipath.prioritizers import PRIO_UNDEF, PRIORITIZERS
from sanpath.multipath.prioritizers.rdac import RdacPrioritizer
from sanpath.target.config import quick_config
from sanpath.testing.inproc import TEST_IQN, running_target

from .plugin_helpers import StubSession, live_path, stub_path, vpd_c9


@pytest.mark.parametrize(("owned", "preferred", "expected"), [
    (True, True, 6),
    (False, True, 4),  # the preferred controller outranks a secondary owner: failback to it
    (True, False, 3),
    (False, False, 1),
])
async def test_canned_pages(owned: bool, preferred: bool, expected: int) -> None:
    page = vpd_c9(owned=owned, preferred=preferred)
    session = StubSession(lambda cdb: CommandResult(0, data=memoryview(page)))
    assert await RdacPrioritizer().priority(stub_path(session), 1.0) == expected


async def test_reserved_path_priority_counts_nothing() -> None:
    page = bytearray(vpd_c9(owned=True, preferred=True))
    page[9] = 0x0
    session = StubSession(lambda cdb: CommandResult(0, data=memoryview(bytes(page))))
    assert await RdacPrioritizer().priority(stub_path(session), 1.0) == 2


async def test_unreadable_page_gives_prio_undef() -> None:
    session = StubSession(lambda cdb: CommandResult(0, data=memoryview(b"\x00\xc9\x00\x04junk")))
    assert await RdacPrioritizer().priority(stub_path(session), 1.0) == PRIO_UNDEF
    assert await RdacPrioritizer().priority(stub_path(StubSession(hang=True)), 0.05) == PRIO_UNDEF


async def test_rdac_target() -> None:
    spec = quick_config(TEST_IQN, ["127.0.0.1:0", "127.0.0.2:0"], ["mem:4MiB"], profile="rdac", owner="A")
    async with running_target(spec=spec) as server:
        by_host = {h: i for i, (h, _) in enumerate(server.portals)}
        async with live_path(server, by_host["127.0.0.1"]) as a, live_path(server, by_host["127.0.0.2"]) as b:
            assert await RdacPrioritizer().priority(a, 5.0) == 6
            assert await RdacPrioritizer().priority(b, 5.0) == 1


def test_registry() -> None:
    assert PRIORITIZERS["rdac"] is RdacPrioritizer
