"""readsector0: a read of LBA 0 catches a dead backstore that TEST UNIT READY does not see."""

from __future__ import annotations

from typing import Any

import pytest

from sanpath.initiator.session import CommandResult
from sanpath.multipath.checkers import CHECKERS, ReadSector0Checker, TurChecker
from sanpath.multipath.checkers.readsector0 import UNKNOWN_BLOCK
from sanpath.multipath.states import CheckResult
from sanpath.scsi.constants import AluaState
from sanpath.target.common import PortGroupInfo
from sanpath.testing.inproc import TEST_IQN, running_target

from .plugin_helpers import StubSession, fake_alua, live_path, stub_path


class DeadStore:
    """The LU's backstore with its medium gone: every read fails with EIO."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def read(self, offset: int, length: int) -> bytes:
        raise OSError(5, "Input/output error")


async def test_up() -> None:
    async with running_target() as server, live_path(server) as path:
        assert await ReadSector0Checker().check(path, 5.0) == (CheckResult.UP, "READ (10) of LBA 0: GOOD")


async def test_dead_backstore_tur_up_readsector0_down(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_target() as server, live_path(server) as path:
        lu = server.targets[TEST_IQN].luns[0]
        monkeypatch.setattr(lu, "backstore", DeadStore(lu.backstore))
        tur = await TurChecker().check(path, 5.0)
        read = await ReadSector0Checker().check(path, 5.0)
    assert tur[0] == CheckResult.UP  # PEERS.md failure mode 1: TUR keeps the dead path up
    assert read[0] == CheckResult.DOWN
    assert "MEDIUM_ERROR ASC/ASCQ 11h/00h" in read[1]  # the LU turns the OSError into UNRECOVERED READ ERROR


async def test_standby_is_ghost(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_target() as server, live_path(server) as path:
        lu = server.targets[TEST_IQN].luns[0]
        tpg = server.targets[TEST_IQN].tpgs[0].tpg_id
        fake_alua(monkeypatch, lu, [PortGroupInfo(tpg, AluaState.STANDBY, (1,))])
        result, reason = await ReadSector0Checker().check(path, 5.0)
    assert (result, reason) == (CheckResult.GHOST, "READ (10) of LBA 0: ALUA standby")


async def test_session_gone_is_down() -> None:
    async with running_target() as server, live_path(server) as path:
        assert path.session is not None
        await path.session.close()
        assert (await ReadSector0Checker().check(path, 5.0))[0] == CheckResult.DOWN


async def test_live_path_knows_its_block_size() -> None:
    async with running_target() as server, live_path(server) as path:
        assert path.block_length == 512
        assert await ReadSector0Checker().check(path, 5.0) == (CheckResult.UP, "READ (10) of LBA 0: GOOD")


@pytest.mark.parametrize(("block_length", "read"), [(512, 512), (4096, 4096), (None, UNKNOWN_BLOCK)])
async def test_reads_one_block_of_the_known_size(block_length: int | None, read: int) -> None:
    session = StubSession(lambda cdb: CommandResult(0, data=memoryview(bytes(read))))
    assert (await ReadSector0Checker().check(stub_path(session, block_length=block_length), 1.0))[0] == CheckResult.UP
    assert session.read_lengths == [read]


async def test_timeout_is_down() -> None:
    result, _ = await ReadSector0Checker().check(stub_path(StubSession(hang=True)), 0.05)
    assert result == CheckResult.DOWN


def test_registry() -> None:
    assert CHECKERS["readsector0"] is ReadSector0Checker
