"""libiscsi's ``iscsi-perf`` (C, one session, READ(16) only): the workloads, one timed run, its output parsed.

How iscsi-perf ends, from its source (utils/iscsi-perf.c) and its output: ``-t N`` is a run length, not
a watchdog. Once per second it rewrites one progress line ("\\r"), and when N seconds have passed it
stops issuing reads, drains the queue and prints a last segment ``iops average A (M MB/s)``: reads
completed since the first command divided by the elapsed time. SIGINT would stop it too, but the summary
is then only printed if a second has passed since the last progress line, so we use ``-t``. Its "MB" is
2**20 bytes, truncated to an integer; we recompute MiB/s from the IOPS and the transfer size instead.
"""

from __future__ import annotations

import re
import signal
import subprocess
from dataclasses import dataclass

from sanpath.errors import SanpathError

_CAPACITY = re.compile(r"^capacity is (\d+) blocks or (\d+) byte")
_SUMMARY = re.compile(r"^iops average (\d+) \((\d+) MB/s\)\s*$")


class PerfError(SanpathError):
    """iscsi-perf failed, hung, or printed no summary; the message carries the tail of its output."""


@dataclass(frozen=True, slots=True)
class Workload:
    key: str
    title: str
    blocks: int  # logical blocks per READ(16) (iscsi-perf -b)
    random: bool  # iscsi-perf -r: random LBAs (any block, not aligned to the transfer size)
    queue_depth: int = 32  # iscsi-perf -m: commands in flight

    def args(self) -> list[str]:
        return ["-b", str(self.blocks), "-m", str(self.queue_depth), *(["-r"] if self.random else [])]


WORKLOADS = (
    Workload("seq128k", "128 KiB sequential read, QD 32", blocks=256, random=False),
    Workload("rand4k", "4 KiB random read, QD 32", blocks=8, random=True),
)


@dataclass(frozen=True, slots=True)
class PerfSample:
    iops: int
    transfer_bytes: int  # blocks per request times the LUN's block size

    @property
    def mib_per_s(self) -> float:
        return self.iops * self.transfer_bytes / 2**20


def command(url: str, workload: Workload, seconds: int) -> list[str]:
    return ["iscsi-perf", "-t", str(seconds), *workload.args(), url]


def parse(output: str, workload: Workload) -> PerfSample:
    """The final ``iops average`` segment, and the block size from the ``capacity is`` line."""
    segments = [s.strip() for s in output.replace("\r", "\n").splitlines()]
    block_size = 0
    for s in segments:
        if m := _CAPACITY.match(s):
            blocks, size = int(m.group(1)), int(m.group(2))
            block_size = size // blocks if blocks else 0
    summaries = [m for s in segments if (m := _SUMMARY.match(s))]
    if not summaries or not block_size:
        raise PerfError(f"iscsi-perf printed no {'summary' if block_size else 'capacity'} line:\n{output[-1500:]}")
    return PerfSample(int(summaries[-1].group(1)), workload.blocks * block_size)


def run_timed(cmd: list[str], seconds: float, *, grace: float = 30.0, merge_stderr: bool = True) -> tuple[str, str]:
    """Run a client that stops by itself after ``seconds``: its stdout and stderr (stderr is "" when merged
    into stdout). PerfError if it exits non-zero or outlives ``seconds + grace``; SIGINT first (both
    iscsi-perf and ``sanpath bench`` stop issuing I/O on it), then the kill for a stuck target."""
    # the output is about one line a second, or one JSON document: pipes cannot fill up
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, text=True,
                            errors="replace")
    try:
        out, err = proc.communicate(timeout=seconds + grace)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise PerfError(f"{' '.join(cmd)}: still running {seconds + grace:.0f}s after start (target stuck?):\n"
                        f"{(out + (err or ''))[-1500:]}") from None
    if proc.returncode != 0:
        raise PerfError(f"{' '.join(cmd)} exited {proc.returncode}:\n{(out + (err or ''))[-1500:]}")
    return out, err or ""


def run(url: str, workload: Workload, seconds: int, *, grace: float = 30.0) -> PerfSample:
    """One timed iscsi-perf run against ``url``; PerfError if it fails or outlives ``seconds + grace``."""
    output, _ = run_timed(command(url, workload, seconds), seconds, grace=grace)
    return parse(output, workload)
