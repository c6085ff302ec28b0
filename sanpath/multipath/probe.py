"""The SCSI commands checkers and prioritizers send: to the path's LUN, shielded from the caller's
timeout. When a check gives up (``asyncio.wait_for``), the command itself is not cancelled under the
session: it stays in flight until it completes or the session's own ``command_timeout`` aborts it the
proper way (ABORT TASK, LUN RESET, connection drop). Cancelling it instead would leave the session with
a task whose waiter is gone and that nothing aborts on the target.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..errors import ScsiCommandError
from ..initiator.session import CommandResult, Session
from ..scsi.constants import Status
from ..scsi.sense import parse_sense
from .path import Path


def _retrieve(task: asyncio.Task[CommandResult]) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned command's error is not news: do not log it as unretrieved


async def command(path: Path, session: Session, cdb: bytes, *, read_length: int = 0) -> CommandResult:
    """Run ``cdb`` on the path's LUN; the result whatever its status (UNIT ATTENTION retried by the
    session as for any command)."""
    lun = path.device.lun if path.device is not None else path.spec.lun
    task = asyncio.ensure_future(session.execute(lun, cdb, read_length=read_length))
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


async def data_in(path: Path, session: Session, cdb: bytes, read_length: int) -> bytes:
    """Run ``cdb`` and return its data; any status but GOOD raises ``ScsiCommandError``."""
    result = await command(path, session, cdb, read_length=read_length)
    if result.status != Status.GOOD:
        detail = f"status 0x{result.status:02x}"
        with contextlib.suppress(Exception):
            detail += f", {parse_sense(result.sense)}"
        raise ScsiCommandError(f"{path.name}: command 0x{cdb[0]:02x} failed: {detail}", portal=session.portal,
                               status=result.status, sense=result.sense)
    return bytes(result.data)
