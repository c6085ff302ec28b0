"""Shared by the plugin tests: paths without sessions (for selectors), and paths with a live session
to an in-process sanpath target (for checkers and prioritizers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from sanpath.errors import ScsiCommandError
from sanpath.initiator.device import ScsiDevice
from sanpath.initiator.session import CommandResult, Session, SessionConfig
from sanpath.multipath.path import Path, PathSpec
from sanpath.multipath.states import PathState
from sanpath.scsi.constants import AluaState
from sanpath.target.common import PortGroupInfo
from sanpath.target.lu import LogicalUnit
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import TEST_IQN


def bare_paths(n: int) -> list[Path]:
    """``n`` active paths with no session: enough for a selector."""
    return [Path(PathSpec(f"127.0.0.{i + 1}", 3260, TEST_IQN, 0), state=PathState.ACTIVE) for i in range(n)]


@asynccontextmanager
async def live_path(server: TargetServer, portal: int = 0, lun: int = 0,
                    iqn: str = TEST_IQN) -> AsyncIterator[Path]:
    """A path to LUN ``lun`` through ``server.portals[portal]``, logged in and opened."""
    host, port = server.portals[portal]
    session = await Session.open(SessionConfig(host, port, target=iqn, nop_interval=0))
    try:
        device = ScsiDevice(session, lun)
        with contextlib.suppress(ScsiCommandError):  # READ CAPACITY fails on an ALUA standby port
            await device.open()
        yield Path(PathSpec(host, port, iqn, lun), session=session, device=device, state=PathState.ACTIVE)
    finally:
        await session.close()


def vpd_c9(*, owned: bool, preferred: bool, ioship: bool = False, state: int | None = None,
           alternate_state: int = 0, device_type: int = 0) -> bytes:
    """A canned RDAC VPD page C9h ("vace"), laid out as scsi_dh_rdac and multipath-tools read it."""
    page = bytearray(48)
    page[0], page[1], page[3] = device_type, 0xC9, 0x2C
    page[4:8] = b"vace"
    page[8] = (0x20 if ioship else 0) | (0x10 if state is not None else 0) | int(owned)
    page[9] = 1 if preferred else 2
    if state is not None:
        page[10], page[12] = state, alternate_state
    return bytes(page)


Answer = Callable[[bytes], CommandResult]


class StubSession:
    """A ``ProbeSession``: logged in, and every command answered by ``answer(cdb)`` (or never, with
    ``hang``); records each CDB and its read length."""

    def __init__(self, answer: Answer | None = None, *, hang: bool = False) -> None:
        self.answer = answer
        self.hang = hang
        self.logged_in = True
        self.portal = "stub:3260"
        self.commands: list[bytes] = []
        self.read_lengths: list[int] = []
        self.cancelled = 0  # commands cancelled under the session (a check must never do that)
        self.release = asyncio.Event()  # lets hung commands complete

    async def execute(self, lun: int, cdb: bytes, *, read_length: int = 0) -> CommandResult:
        self.commands.append(bytes(cdb))
        self.read_lengths.append(read_length)
        if self.hang:
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            return CommandResult(0)
        assert self.answer is not None, "a StubSession that does not hang needs an answer"
        return self.answer(bytes(cdb))

    async def ping(self, timeout: float = 5.0) -> float:
        if self.hang:
            await asyncio.Event().wait()
        return 0.0001


@dataclass
class StubProbe:
    """A ``PathProbe`` over a ``StubSession``: what a checker or prioritizer sees of a path."""

    session: StubSession | None
    name: str = "stub"
    lun: int = 0
    block_length: int | None = None
    tpg_id: int | None = None
    alua_state: int | None = None


def stub_path(session: StubSession, *, block_length: int | None = None) -> StubProbe:
    return StubProbe(session, block_length=block_length)


def fake_alua(monkeypatch: pytest.MonkeyPatch, lu: LogicalUnit, groups: list[PortGroupInfo]) -> None:
    """Make the LU report ``groups`` as its array's ALUA state, in both of its views of it: the RTPG list
    (``port_groups``) and the per-command gate (``alua_state``, one group's state)."""
    by_tpg = {g.tpg_id: g.alua_state for g in groups}
    monkeypatch.setattr(lu, "port_groups", lambda: groups)
    monkeypatch.setattr(lu, "alua_state", lambda tpg_id: by_tpg.get(tpg_id, AluaState.ACTIVE_OPTIMIZED))
