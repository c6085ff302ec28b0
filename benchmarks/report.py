"""BENCHMARKS.md: medians and ratios of the recorded runs, the environment, and the section rewrite.

The file is a list of ``## `` sections; a run replaces only its own section and keeps every other one
(the lead's CONFORMANCE section in particular), so benchmarks and hand-written notes can share it.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .iscsi_perf import PerfSample, Workload
from .loopback import congestion_control

SECTION = "## Target: iscsi-perf against sanpath vs tgtd"
CONFORMANCE = "## CONFORMANCE"

INTRO = """# sanpath benchmarks

How these figures are made: every benchmark runs sanpath and a peer side by side in the same run, on
the same backing file, with the same C client, alternating the two (peer, sanpath, peer, sanpath, ...)
over several rounds so that drift on the shared machine hits both; the initiator suite also alternates
which of the two goes first (peer, sanpath, sanpath, peer, ...). Each cell is the median of the
rounds; the ratio is sanpath's median over the peer's. Absolute numbers move from machine to machine
and from hour to hour; the ratio is the figure to watch. Rerun with the command given in each section.
"""


@dataclass(frozen=True, slots=True)
class Run:
    round: int  # 0 is the warm-up, not counted
    workload: Workload
    contender: str  # the target
    sample: PerfSample
    client: str = "iscsi-perf"


def counted(runs: Sequence[Run], workload: Workload, contender: str, client: str = "iscsi-perf") -> list[Run]:
    """The counted (not warm-up) runs of one cell, in run order."""
    return [r for r in runs if r.round > 0 and r.workload == workload and r.contender == contender
            and r.client == client]


@dataclass(frozen=True, slots=True)
class Environment:
    date: str
    nproc: int
    cpu: str
    kernel: str
    python: str
    peers: str
    load: float  # 1-minute load average when the run started: other work on the machine shows here
    congestion_control: str  # TCP's, for connections made by the run (benchmarks/loopback.py)

    @classmethod
    def here(cls) -> Environment:
        cpu = "unknown CPU"
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        except OSError:
            pass
        return cls(datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), os.cpu_count() or 0,
                   cpu, f"{platform.system()} {platform.release()}", sys.version.split()[0],
                   package_versions("tgt", "libiscsi-bin"),
                   os.getloadavg()[0], congestion_control())


def package_versions(*packages: str) -> str:
    """The installed Debian versions of ``packages``, as "name version, ..." (for the reports)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *packages],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (no dpkg-query)"
    return ", ".join(line for line in out.splitlines() if line.strip()) or "unknown"


def _median(runs: Sequence[Run]) -> tuple[float, float] | None:
    if not runs:
        return None
    return statistics.median(r.sample.iops for r in runs), statistics.median(r.sample.mib_per_s for r in runs)


def median_cells(ref: Sequence[Run], ours: Sequence[Run]) -> list[str]:
    """Median IOPS and MiB/s of a reference cell and of ours, then the ratio of the IOPS medians."""
    a, b = _median(ref), _median(ours)
    cells = []
    for m in (a, b):
        cells += [f"{m[0]:,.0f}", f"{m[1]:,.1f}"] if m else ["n/a", "n/a"]
    return [*cells, f"{b[0] / a[0]:.2f}" if a and b and a[0] else "n/a"]


def ratio(ref: Sequence[Run], ours: Sequence[Run]) -> float | None:
    a, b = _median(ref), _median(ours)
    return b[0] / a[0] if a and b and a[0] else None


def footer(env: Environment, rerun: str, failures: dict[str, str], notes: Sequence[str] = ()) -> list[str]:
    """Notes, failures (with their logs), the rerun command, and the machine: the end of every section."""
    lines = [f"\nNote: {n}" for n in notes]
    for name, message in failures.items():
        lines += ["", f"**{name} failed** (no figures invented for it):", "", "```", message.strip(), "```"]
    return [*lines, "", "Rerun:", "", "```", rerun, "```", "",
            f"Date: {env.date}. Machine: {env.nproc} CPUs (`nproc`), {env.cpu}, {env.kernel}, "
            f"Python {env.python}; peers: {env.peers}. TCP congestion control: {env.congestion_control}. "
            f"Load average (1 min) at start {env.load:.2f}, at end {os.getloadavg()[0]:.2f}.", ""]


def render(workloads: Sequence[Workload], contenders: Sequence[str], runs: Sequence[Run], *, seconds: int,
           rounds: int, env: Environment, rerun: str, size: int, failures: dict[str, str],
           notes: Sequence[str] = ()) -> str:
    peer, ours = contenders[0], contenders[-1]
    lines = [SECTION, "",
             f"Client: libiscsi's `iscsi-perf` (C), one session, READ(16), `-t {seconds}` per run. "
             f"{rounds} rounds of {seconds} s per workload and target after a warm-up run of each; "
             f"order within a round: {', '.join(contenders)} for each workload. Backing file: "
             f"{size // 2**20} MiB of random bytes (os.urandom, not sparse) in a temp dir, written just before "
             "the run, so both targets read from the page cache; deleted afterwards. tgtd serves it as LUN 1 "
             "(default rdwr backing store), sanpath as LUN 0. Both on 127.0.0.1."
             + ("" if any(n.startswith("not verified") for n in notes) else
                " Before timing, each LUN was compared whole with the backing file (`qemu-img compare`)."),
             "",
             f"| workload | {peer} IOPS | {peer} MiB/s | {ours} IOPS | {ours} MiB/s | {ours}/{peer} |",
             "|---|---:|---:|---:|---:|---:|"]
    for w in workloads:
        cells = [w.title, *median_cells(counted(runs, w, peer), counted(runs, w, ours))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "IOPS of every counted run, in run order:", ""]
    for w in workloads:
        for c in contenders:
            iops = [f"{r.sample.iops:,}" for r in counted(runs, w, c)]
            if iops:
                lines.append(f"- {w.key} {c}: {', '.join(iops)}")
    sizes = {r.sample.transfer_bytes for r in runs if r.workload == workloads[0]}
    if len(sizes) > 1:
        lines += ["", f"Warning: the targets report different block sizes, so transfer sizes differ: {sorted(sizes)}."]
    return "\n".join(lines + footer(env, rerun, failures, notes))


def write(path: Path, section: str) -> None:
    """Replace this benchmark's section in ``path`` (create the file if needed); keep all others."""
    text = path.read_text() if path.exists() else INTRO
    preamble, *chunks = text.split("\n## ")
    sections = ["## " + c.rstrip("\n") + "\n" for c in chunks]
    heading = section.splitlines()[0]
    replaced = [section if s.splitlines()[0] == heading else s for s in sections]
    if section not in replaced:
        at = next((i for i, s in enumerate(replaced) if s.startswith(CONFORMANCE)), len(replaced))
        replaced.insert(at, section)
    if not any(s.startswith(CONFORMANCE) for s in replaced):
        replaced.append(f"{CONFORMANCE}\n\n(to be filled: iscsi-test-cu results against sanpath and tgtd)\n")
    path.write_text(preamble.rstrip("\n") + "\n\n" + "\n".join(replaced))
