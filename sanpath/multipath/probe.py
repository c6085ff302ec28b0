"""What checkers and prioritizers see of a path (``PathProbe``: its name, LUN, block size and session,
``ProbeSession``: logged in or not, a SCSI command, a NOP ping), and the SCSI commands they send through
it: to the path's LUN, shielded from the caller's
timeout. When a check gives up (``asyncio.wait_for``), the command itself is not cancelled under the
session: it stays in flight until it completes or the session's own ``command_timeout`` aborts it the
proper way (ABORT TASK, LUN RESET, connection drop). Cancelling it instead would leave the session with
a task whose waiter is gone and that nothing aborts on the target.

``Path`` is a ``PathProbe``; tests hand plugins a small stand-in instead of a real path and session.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from ..errors import ScsiCommandError
from ..initiator.session import CommandResult
from ..scsi.constants import Status
from ..scsi.sense import parse_sense


class ProbeSession(Protocol):
    """The part of an iSCSI ``Session`` a check uses."""

    @property
    def logged_in(self) -> bool: ...

    @property
    def portal(self) -> str: ...

    async def execute(self, lun: int, cdb: bytes, *, read_length: int = 0) -> CommandResult: ...

    async def ping(self, timeout: float = 5.0) -> float:
        """A NOP-Out / NOP-In round trip; its duration in seconds."""
        ...


class PathProbe(Protocol):
    """The path handle a checker or prioritizer gets (``Path`` is one). ``tpg_id`` and ``alua_state`` are
    the alua prioritizer's findings, recorded on the path for status displays."""

    @property
    def name(self) -> str: ...

    @property
    def lun(self) -> int: ...

    @property
    def block_length(self) -> int | None:
        """The LUN's block size, None before READ CAPACITY answered."""
        ...

    @property
    def session(self) -> ProbeSession | None: ...

    tpg_id: int | None
    alua_state: int | None


def _retrieve(task: asyncio.Task[CommandResult]) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned command's error is not news: do not log it as unretrieved


async def command(path: PathProbe, session: ProbeSession, cdb: bytes, *, read_length: int = 0) -> CommandResult:
    """Run ``cdb`` on the path's LUN; the result whatever its status (UNIT ATTENTION retried by the
    session as for any command)."""
    task = asyncio.ensure_future(session.execute(path.lun, cdb, read_length=read_length))
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


async def data_in(path: PathProbe, session: ProbeSession, cdb: bytes, read_length: int) -> bytes:
    """Run ``cdb`` and return its data; any status but GOOD raises ``ScsiCommandError``."""
    result = await command(path, session, cdb, read_length=read_length)
    if result.status != Status.GOOD:
        detail = f"status 0x{result.status:02x}"
        with contextlib.suppress(Exception):
            detail += f", {parse_sense(result.sense)}"
        raise ScsiCommandError(f"{path.name}: command 0x{cdb[0]:02x} failed: {detail}", portal=session.portal,
                               status=result.status, sense=result.sense)
    return bytes(result.data)
