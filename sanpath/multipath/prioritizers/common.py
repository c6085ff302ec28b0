"""What the prioritizers share: the bound on every call, and the value for "could not tell"."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sanpath.aio import within

from ..probe import PathProbe, ProbeSession

log = logging.getLogger("sanpath.multipath.prioritizers")

PRIO_UNDEF = -1
"""The priority of a path whose priority could not be read (multipath-tools' PRIO_UNDEF): below every
real value, so group_by_prio puts it in the last group. The checker decides whether it is alive."""


async def bounded(name: str, path: PathProbe, timeout: float, probe: Callable[[ProbeSession], Awaitable[int]]) -> int:
    """Run ``probe`` on the path's session within ``timeout`` (its commands through ``probe.data_in``, which
    leaves a command to the session's own timeout when this gives up); any failure logs why and gives
    PRIO_UNDEF."""
    session = path.session
    if session is None or not session.logged_in:
        return PRIO_UNDEF
    try:
        return await within(probe(session), timeout)
    except TimeoutError:
        log.warning("%s: %s prioritizer: no answer within %g s", path.name, name, timeout)
    except Exception as e:  # transport and SCSI errors alike: the priority is unknown
        log.warning("%s: %s prioritizer: %s", path.name, name, e)
    return PRIO_UNDEF
