"""timeouts: liveness and queueing settings that combine badly. A path is seen dead after about
nop_interval + nop_timeout (the iSCSI NOP-Out ping, RFC 7143 11.18); a command is retried elsewhere after
command_timeout; with no usable path I/O is queued for no_path_retry polling intervals, or for ever.

- liveness no faster than command_timeout: commands time out on a dead path before it is failed, and are
  retried on paths nobody has seen die; with no_path_retry queue a dead array then hangs I/O for ever
  with no path ever marked faulty (an error), otherwise failover waits on every command's timeout.
- queueing shorter than a path's way back (liveness + relogin_backoff): a blip of every path fails I/O to
  the VMs before any path could return."""

from __future__ import annotations

from .facts import Facts
from .finding import STORAGE_TRAFFIC, Finding, Severity

ID = "timeouts"


def check(facts: Facts) -> list[Finding]:
    out = []
    for s in facts.settings:
        v = s.values
        try:
            liveness = float(v["nop_interval"]) + float(v["nop_timeout"])
            command = float(v["command_timeout"])
            polling = float(v["polling_interval"])
            backoff = float(v["relogin_backoff"])
        except (KeyError, TypeError, ValueError):
            continue
        retry = str(v.get("no_path_retry", "queue"))
        subject = f"{s.host}: LUN {s.scsi_id}" if s.host else f"LUN {s.scsi_id}"
        keys = ("nop_interval", "nop_timeout", "command_timeout", "no_path_retry", "polling_interval",
                "relogin_backoff")
        evidence = {k: v.get(k) for k in keys} | {"origins": {k: s.origins.get(k, "") for k in keys}}
        if liveness >= command:
            queue = retry == "queue"
            out.append(Finding(
                ID, Severity.ERROR if queue else Severity.WARNING, STORAGE_TRAFFIC, subject,
                f"a dead path is seen after {liveness:g} s of NOP-Out liveness, no sooner than commands time out "
                f"({command:g} s)" + ("; with no_path_retry queue a dead array hangs I/O for ever" if queue else ""),
                "Keep nop_interval + nop_timeout well under command_timeout (the defaults: 0.25 s + 0.5 s against "
                "30 s).", evidence, s.host))
        if retry.isdigit() and int(retry) * polling < liveness + backoff:
            out.append(Finding(
                ID, Severity.WARNING, STORAGE_TRAFFIC, subject,
                f"no_path_retry {retry} queues I/O for {int(retry) * polling:g} s, less than a path needs to be "
                f"seen dead and logged in again ({liveness + backoff:g} s): a blip of every path fails I/O",
                "Raise no_path_retry (counted in polling intervals) above that, or use queue.", evidence, s.host))
    return out
