"""What the checkers share: the bound on every check, and the reading of a SCSI status and sense data
as a path verdict.

The verdicts (``classify``):

- GOOD, RECOVERED ERROR -> up.
- NOT READY 04h/0Bh (ALUA standby), 04h/0Ch (unavailable) -> ghost: the array answers through this
  port but will not do I/O here now; the path can come back without any failure of ours.
- NOT READY 04h/0Ah (ALUA transitioning) -> ghost, not up: I/O sent now would itself end in NOT READY,
  and not down: the transition is the array moving ownership, which ends by itself (SPC-4 5.15.2.6), and
  must not count as a failure towards the marginal (flapping) limit. The next check sees the new state.
- ILLEGAL REQUEST 94h/01h (RDAC "LUN not owned": the passive controller) -> ghost.
- BUSY, TASK SET FULL, RESERVATION CONFLICT -> up: the target is alive and answered; overload and
  another host's reservation are not path failures (failing every path for them only stops I/O).
- UNIT ATTENTION -> retry (``None``): a reset or a changed state was reported, not a failure.
- anything else (MEDIUM ERROR, HARDWARE ERROR, other NOT READY...) -> down.

``bounded`` turns every exception and the timeout into a down verdict with a reason, so a checker never
raises and never outlives its ``timeout`` (PEERS.md: status must never wait on a dead path). The
commands go through ``probe.command``: a check that gives up leaves its command to the session's own
command timeout rather than cancelling it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sanpath.aio import within

from ...initiator.session import CommandResult
from ...scsi.constants import SenseKey, Status
from ...scsi.sense import parse_sense
from ..probe import PathProbe, ProbeSession, command
from ..sense import GHOST_SENSE
from ..states import CheckResult

Verdict = tuple[CheckResult, str]

_ALIVE_STATUS = {Status.BUSY: "BUSY", Status.TASK_SET_FULL: "TASK SET FULL",
                 Status.RESERVATION_CONFLICT: "RESERVATION CONFLICT (another initiator's reservation)"}


def classify(result: CommandResult, what: str) -> Verdict | None:
    """The verdict on one command's outcome; None means "UNIT ATTENTION: ask again"."""
    if result.status == Status.GOOD:
        return CheckResult.UP, f"{what}: GOOD"
    if result.status in _ALIVE_STATUS:
        return CheckResult.UP, f"{what}: {_ALIVE_STATUS[Status(result.status)]}, target alive"
    if result.status != Status.CHECK_CONDITION:
        return CheckResult.DOWN, f"{what}: status 0x{result.status:02x}"
    try:
        sense = parse_sense(result.sense)
    except Exception:
        return CheckResult.DOWN, f"{what}: CHECK CONDITION with unreadable sense {bytes(result.sense).hex()}"
    if sense.key == SenseKey.UNIT_ATTENTION:
        return None
    if sense.key == SenseKey.RECOVERED_ERROR:
        return CheckResult.UP, f"{what}: {sense}"
    ghost = GHOST_SENSE.get((sense.key, sense.asc, sense.ascq))
    if ghost is not None:
        return CheckResult.GHOST, f"{what}: {ghost}"
    return CheckResult.DOWN, f"{what}: {sense}"


async def scsi_probe(path: PathProbe, session: ProbeSession, cdb: bytes, what: str, *, read_length: int = 0) -> Verdict:
    """Send ``cdb`` to the path's LUN, asking once more after a UNIT ATTENTION."""
    for _ in range(2):
        result = await command(path, session, cdb, read_length=read_length)
        verdict = classify(result, what)
        if verdict is not None:
            return verdict
    return CheckResult.DOWN, f"{what}: UNIT ATTENTION twice in a row"


async def bounded(path: PathProbe, timeout: float, probe: Callable[[ProbeSession], Awaitable[Verdict]]) -> Verdict:
    """Run ``probe`` on the path's session within ``timeout``; a missing session, a timeout or any
    error is a down verdict. A session that is not logged in fails at once (no waiting for a re-login)."""
    session = path.session
    if session is None or not session.logged_in:
        return CheckResult.DOWN, "session not logged in"
    try:
        return await within(probe(session), timeout)
    except TimeoutError:
        return CheckResult.DOWN, f"no answer within {timeout:g} s"
    except Exception as e:  # transport errors, aborted commands, protocol errors: all mean "down"
        return CheckResult.DOWN, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
