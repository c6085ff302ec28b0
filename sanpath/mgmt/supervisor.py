"""The supervisor: starts the data-path process of each plugged PBD of this host, watches it, and after
a daemon restart adopts the ones still running through their control sockets (``pbd-<uuid>.sock`` in
the runtime directory), so that a PBD never has two processes and I/O never stops for a daemon.

The processes run in sessions of their own (``start_new_session``): a daemon killed with SIGKILL takes
none of them along. Whether a PBD has a process is judged by its lock (``pbd-<uuid>.lock``, an exclusive
flock that the process takes before its first login and holds until it exits), never by a pid (a pid
can be reused, and an adopted child that died is reaped by init, not by us): so a PBD never gets a
second process, even while its first one is still logging in and cannot answer yet."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import glob
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from sanpath.aio import within

from .errors import KINDS, XenError

log = logging.getLogger(__name__)
READY_TIMEOUT = 60.0


STOP_TIMEOUT = 75.0  # NBD drain (5 s), flush (30 s), logouts: then SIGKILL


@dataclass
class DataPath:
    pbd: str
    pid: int  # 0 while an adopted process has not answered yet
    control: str
    nbd: str
    process: asyncio.subprocess.Process | None = None  # None once adopted


def held(lock_path: str) -> bool:
    """Whether a live process holds the exclusive flock on ``lock_path``."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock if we took it
    return False


async def ask(path: str, request: dict[str, Any], timeout: float = 3.0) -> dict[str, Any] | None:
    """One request on a control socket; None when nothing answers in time."""
    try:
        reader, writer = await within(asyncio.open_unix_connection(path, limit=1 << 22), timeout)
    except (TimeoutError, OSError):
        return None
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        line = await within(reader.readline(), timeout)
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
            st = os.stat(directory)
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                raise XenError("VALUE_INVALID", f"the runtime directory {directory} is not ours alone (owner uid "
                               f"{st.st_uid}, mode {st.st_mode & 0o777:o}); its sockets would be open to others",
                               directory, advice="Remove it, or give SANPATH_RUN_DIR a directory of mode 0700.")

    def control_path(self, pbd: str) -> str:
        return os.path.join(self.run_dir, f"pbd-{pbd}.sock")

    def nbd_path(self, scsi_id: str) -> str:
        """The SR's export: one stable socket per LUN, named by its SCSIid."""
        return os.path.join(self.run_dir, "nbd", f"{scsi_id}.sock")

    def log_path(self, pbd: str) -> str:
        """The process's log (rotated by the process itself); what it prints on stderr (a crash) goes to
        ``pbd-<uuid>.err`` beside it."""
        return os.path.join(self.run_dir, f"pbd-{pbd}.log")

    def lock_path(self, pbd: str) -> str:
        return os.path.join(self.run_dir, f"pbd-{pbd}.lock")

    async def adopt(self) -> list[DataPath]:
        """The data-path processes left running by an earlier daemon, taken over (one still logging in is
        taken over too: it answers once it is ready)."""
        adopted = []
        for lock in sorted(glob.glob(os.path.join(self.run_dir, "pbd-*.lock"))):
            pbd = os.path.basename(lock)[4:-5]
            if not held(lock):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)
                continue
            dp = DataPath(pbd, 0, self.control_path(pbd), "")
            answer = await ask(dp.control, {"op": "status"})
            if answer and answer.get("ok") and answer["status"].get("pbd") == pbd:
                dp.pid, dp.nbd = int(answer["status"]["pid"]), str(answer["status"]["nbd"])
            self.running[pbd] = dp
            adopted.append(dp)
            log.info("adopted the data-path process of PBD %s (pid %s)", pbd, dp.pid or "not answering yet")
        return adopted

    async def start(self, pbd: str, spec: dict[str, Any]) -> DataPath:
        """Start the process and wait for its ready line; raises XenError with the process's own error."""
        if held(self.lock_path(pbd)):  # never a second process for one PBD
            raise XenError("ISCSIQueryDaemon", f"PBD {pbd} has a data-path process already that does not "
                           "answer yet; it is judged again on the next round", pbd)
        spec = {**spec, "pbd": pbd, "control": self.control_path(pbd), "lock": self.lock_path(pbd),
                "log": self.log_path(pbd)}
        try:
            return await self._spawn(pbd, spec)
        except XenError:
            raise
        except Exception as e:  # the process could not start, or died before its ready line
            raise XenError("ISCSIQueryDaemon", f"the data-path process of PBD {pbd} did not start: {e}; see "
                           f"{self.log_path(pbd)}", pbd) from None

    async def _spawn(self, pbd: str, spec: dict[str, Any]) -> DataPath:
        with open(self.log_path(pbd)[:-4] + ".err", "ab") as logfile:  # the child keeps its own descriptor
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sanpath.host.pbd", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=logfile, start_new_session=True)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(spec).encode() + b"\n")  # secrets travel here, never in argv
            await proc.stdin.drain()
            proc.stdin.close()
            line = await within(proc.stdout.readline(), READY_TIMEOUT)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        try:
            ready = json.loads(line) if line else {}
        except ValueError:
            ready = {}
        if not isinstance(ready, dict) or not ready.get("ready"):
            try:
                await within(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            ready = ready if isinstance(ready, dict) else {}
            name = str(ready.get("error")) if ready.get("error") in KINDS else "ISCSIQueryDaemon"
            message = ready.get("message") or (f"the data-path process exited {proc.returncode}; see "
                                               f"{self.log_path(pbd)}")
            raise XenError(name, str(message), pbd)
        dp = DataPath(pbd, int(ready["pid"]), self.control_path(pbd), str(ready["nbd"]), proc)
        self.running[pbd] = dp
        return dp

    async def status(self, pbd: str) -> dict[str, Any] | None:
        """The process's status, or None when it does not answer (then, if it is gone, it is forgotten)."""
        dp = self.running.get(pbd)
        if dp is None:
            return None
        answer = await ask(dp.control, {"op": "status"})
        if answer and answer.get("ok") and answer["status"].get("pbd") == pbd:
            st = dict(answer["status"])
            dp.pid, dp.nbd = int(st["pid"]), str(st["nbd"])
            return st
        if self.gone(pbd):
            self.forget(pbd)
        return None  # alive but not answering this time (still logging in, or busy): judged next round

    async def request(self, pbd: str, request: dict[str, Any], timeout: float = 3.0) -> dict[str, Any] | None:
        """Any other control request to the PBD's process; None when it is not ours or does not answer."""
        dp = self.running.get(pbd)
        return None if dp is None else await ask(dp.control, request, timeout)

    def forget(self, pbd: str) -> None:
        dp = self.running.pop(pbd, None)
        if dp is not None and dp.process is not None and dp.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                dp.process.kill()

    def gone(self, pbd: str) -> bool:
        """Whether the PBD has no process any more (its lock is free)."""
        return not held(self.lock_path(pbd))

    async def stop(self, pbd: str, timeout: float = STOP_TIMEOUT) -> int | None:
        """Ask the process to drain, flush and log out; SIGKILL it after ``timeout``. Returns its exit
        status when it was our child (0: flushed and logged out), else None."""
        dp = self.running.get(pbd)
        if dp is None:
            return None
        await ask(dp.control, {"op": "stop"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.gone(pbd):
            if loop.time() > deadline:
                log.error("PBD %s: the data-path process did not stop within %g s; killed", pbd, timeout)
                with contextlib.suppress(ProcessLookupError):
                    if dp.pid:
                        os.kill(dp.pid, signal.SIGKILL)
                break
            await asyncio.sleep(0.1)
        self.running.pop(pbd, None)
        if dp.process is not None:
            with contextlib.suppress(TimeoutError):
                return await within(dp.process.wait(), 5)
        return None
