"""The supervisor: starts the data-path process of each plugged PBD of this host, watches it, and after
a daemon restart adopts the ones still running through their control sockets (``pbd-<uuid>.sock`` in
the runtime directory), so that a PBD never has two processes and I/O never stops for a daemon.

The processes run in sessions of their own (``start_new_session``): a daemon killed with SIGKILL takes
none of them along. Whether a process is alive is judged by its control socket answering ``status``
with its PBD's uuid, never by a pid alone (a pid can be reused, and an adopted child that died is
reaped by init, not by us)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from .errors import KINDS, XenError

log = logging.getLogger(__name__)
READY_TIMEOUT = 60.0


@dataclass
class DataPath:
    pbd: str
    pid: int
    control: str
    nbd: str
    process: asyncio.subprocess.Process | None = None  # None once adopted


async def ask(path: str, request: dict[str, Any], timeout: float = 3.0) -> dict[str, Any] | None:
    """One request on a control socket; None when nothing answers in time."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path, limit=1 << 22), timeout)
    except (TimeoutError, OSError):
        return None
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        line = await asyncio.wait_for(reader.readline(), timeout)
        answer = json.loads(line) if line else None
        return answer if isinstance(answer, dict) else None
    except (TimeoutError, OSError, ValueError):
        return None
    finally:
        writer.close()


class Supervisor:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.running: dict[str, DataPath] = {}
        for directory in (run_dir, os.path.join(run_dir, "nbd")):  # makedirs gives the mode to the leaf only
            os.makedirs(directory, mode=0o700, exist_ok=True)

    def control_path(self, pbd: str) -> str:
        return os.path.join(self.run_dir, f"pbd-{pbd}.sock")

    def nbd_path(self, scsi_id: str) -> str:
        """The SR's export: one stable socket per LUN, named by its SCSIid."""
        return os.path.join(self.run_dir, "nbd", f"{scsi_id}.sock")

    def log_path(self, pbd: str) -> str:
        return os.path.join(self.run_dir, f"pbd-{pbd}.log")

    async def adopt(self) -> list[DataPath]:
        """The data-path processes left running by an earlier daemon, taken over."""
        adopted = []
        for path in sorted(glob.glob(os.path.join(self.run_dir, "pbd-*.sock"))):
            pbd = os.path.basename(path)[4:-5]
            answer = await ask(path, {"op": "status"})
            if not answer or not answer.get("ok") or answer["status"].get("pbd") != pbd:
                continue
            st = answer["status"]
            dp = DataPath(pbd, int(st["pid"]), path, st["nbd"])
            self.running[pbd] = dp
            adopted.append(dp)
            log.info("adopted the data-path process of PBD %s (pid %d)", pbd, dp.pid)
        return adopted

    async def start(self, pbd: str, spec: dict[str, Any]) -> DataPath:
        """Start the process and wait for its ready line; raises XenError with the process's own error."""
        if pbd in self.running and await self.status(pbd) is not None:
            return self.running[pbd]  # never a second process for one PBD
        spec = {**spec, "pbd": pbd, "control": self.control_path(pbd)}
        logfile = open(self.log_path(pbd), "ab")  # noqa: SIM115 (the child keeps it)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sanpath.host.pbd", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=logfile, start_new_session=True)
        finally:
            logfile.close()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(spec).encode() + b"\n")  # secrets travel here, never in argv
        await proc.stdin.drain()
        proc.stdin.close()
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise XenError("ISCSIQueryDaemon", f"the data-path process of PBD {pbd} was not ready within "
                           f"{READY_TIMEOUT:g} s; see {self.log_path(pbd)}", pbd) from None
        try:
            ready = json.loads(line) if line else {}
        except ValueError:
            ready = {}
        if not ready.get("ready"):
            await proc.wait()
            name = str(ready.get("error")) if ready.get("error") in KINDS else "ISCSIQueryDaemon"
            message = ready.get("message") or f"the data-path process exited {proc.returncode}; see " \
                                              f"{self.log_path(pbd)}"
            raise XenError(name, message, pbd)
        dp = DataPath(pbd, int(ready["pid"]), self.control_path(pbd), ready["nbd"], proc)
        self.running[pbd] = dp
        return dp

    async def status(self, pbd: str) -> dict[str, Any] | None:
        """The process's status, or None when it is gone (and then it is forgotten)."""
        dp = self.running.get(pbd)
        if dp is None:
            return None
        answer = await ask(dp.control, {"op": "status"})
        if answer and answer.get("ok") and answer["status"].get("pbd") == pbd:
            return dict(answer["status"])
        if _pid_alive(dp.pid) and answer is None:
            return None  # alive but not answering this time: judged again on the next round
        self.forget(pbd)
        return None

    def forget(self, pbd: str) -> None:
        dp = self.running.pop(pbd, None)
        if dp is not None and dp.process is not None and dp.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                dp.process.kill()

    def gone(self, pbd: str) -> bool:
        """Whether the PBD's process has certainly exited."""
        dp = self.running.get(pbd)
        if dp is None:
            return True
        if dp.process is not None:
            return dp.process.returncode is not None
        return not _pid_alive(dp.pid)

    async def stop(self, pbd: str, timeout: float = 40.0) -> None:
        """Ask the process to drain, flush and log out; SIGKILL it after ``timeout``."""
        dp = self.running.get(pbd)
        if dp is None:
            return
        await ask(dp.control, {"op": "stop"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if dp.process is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(dp.process.wait(), 0.1)
            else:
                await asyncio.sleep(0.1)
            if self.gone(pbd):
                break
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(dp.pid, signal.SIGKILL)
        self.running.pop(pbd, None)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
