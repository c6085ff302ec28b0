"""Initiator suite: ``sanpath bench`` against libiscsi's ``iscsi-perf`` on the same LUN, alternating.

Both clients read the same LUN of the same target back to back, for each workload and each target, over
several rounds, in alternating order (iscsi-perf first in odd rounds, sanpath bench first in even ones), so
that neither always runs on the heels of the other; the ratio is sanpath bench's median IOPS over
iscsi-perf's. Both read the whole LUN (iscsi-perf always does; ``sanpath bench`` is given no
``--size``/``--offset``), one session each, at the same transfer size and queue depth. ``sanpath bench``
runs without ``--verify``, so it writes nothing and has no prefill phase: both read the random bytes
already in the backing file, and each result is checked to say so (no writes, the whole LUN read).
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import iscsi_perf, report
from .contenders import Contender
from .iscsi_perf import WORKLOADS, PerfError, PerfSample, Workload

SECTION = "## Initiator: sanpath bench vs iscsi-perf"
PEER = "iscsi-perf"
OURS = "sanpath bench"
CLIENTS = (PEER, OURS)  # the order within a cell in odd rounds (and the warm-up); even rounds reverse it
GOALS = {"seq128k": 1.0, "rand4k": 0.5}  # issues 19 and 4: sanpath bench IOPS at least this times iscsi-perf's
_MODES = {False: "read", True: "randread"}  # Workload.random -> sanpath bench --rw


@dataclass(frozen=True, slots=True)
class BenchSample(PerfSample):
    """One ``sanpath bench`` run: IOPS (rounded, as iscsi-perf's) plus its latency percentiles."""

    p50_us: float
    p99_us: float


def command(url: str, workload: Workload, transfer_bytes: int, seconds: int, *,
            python: str = sys.executable) -> list[str]:
    """``sanpath bench`` (as ``python -m sanpath``) for one workload: no --verify, so no writes, no prefill."""
    return [python, "-m", "sanpath", "bench", url, "--rw", _MODES[workload.random], "--bs", str(transfer_bytes),
            "--qd", str(workload.queue_depth), "--time", str(seconds), "--format", "json", "--quiet"]


def parse(output: str, workload: Workload, transfer_bytes: int, lun_bytes: int) -> BenchSample:
    """The JSON result, checked: the asked mode and size, reads only, no errors, the whole LUN."""
    try:
        r = json.loads(output)
        iops, lat, region = float(r["iops"]), r["lat_us"], int(r["region_size"])
    except (ValueError, KeyError, TypeError) as e:
        raise PerfError(f"sanpath bench printed no JSON result ({e}):\n{output[-1500:]}") from None
    problems = [
        *([f"rw {r.get('rw')!r}, not {_MODES[workload.random]!r}"] if r.get("rw") != _MODES[workload.random] else []),
        *([f"bs {r.get('bs')}, not {transfer_bytes}"] if r.get("bs") != transfer_bytes else []),
        *([f"{r.get('write_ios')} writes"] if r.get("write_ios") else []),
        *([f"{r.get('errors')} errors"] if r.get("errors") else []),
        *([f"stopped early: {r['stopped_early']}"] if r.get("stopped_early") else []),
        *([f"read a region of {region} bytes at {r.get('region_offset')}, not the whole LUN ({lun_bytes})"]
          if region != lun_bytes or r.get("region_offset") else []),
    ]
    if problems:
        raise PerfError(f"sanpath bench result not comparable: {'; '.join(problems)}:\n{output[-1500:]}")
    return BenchSample(round(iops), transfer_bytes, float(lat["p50"]), float(lat["p99"]))


def run(url: str, workload: Workload, transfer_bytes: int, seconds: int, lun_bytes: int) -> BenchSample:
    out, _ = iscsi_perf.run_timed(command(url, workload, transfer_bytes, seconds), seconds, merge_stderr=False)
    return parse(out, workload, transfer_bytes, lun_bytes)


def order(round_no: int) -> tuple[str, str]:
    """Who runs first in a round: the peer in odd rounds and the warm-up, sanpath bench in even rounds.
    Alternating cancels what running second does to a client (the target's state, the machine's drift)."""
    return CLIENTS if round_no % 2 or not round_no else (OURS, PEER)


def run_suite(contenders: Sequence[Contender], plan: Sequence[tuple[int, int]], *, lun_bytes: int,
              say: Callable[[str], None], failure: Callable[[Contender, str, Exception], str]
              ) -> tuple[list[report.Run], dict[str, str]]:
    """Every (round, seconds) of ``plan`` (round 0: warm-up): for each workload and target, iscsi-perf and
    sanpath bench on that target's LUN, in ``order(round)``. A client that fails on a target is not run
    there again."""
    runs: list[report.Run] = []
    failures: dict[str, str] = {}
    rounds = max((r for r, _ in plan), default=0)
    for round_no, seconds in plan:
        label = "warm-up" if round_no == 0 else f"round {round_no}/{rounds}"
        for w in WORKLOADS:
            for c in contenders:
                # sanpath bench takes bytes: the transfer size iscsi-perf read on this LUN (its block size
                # times -b), so both clients move the same bytes per command
                transfer = next((r.sample.transfer_bytes for r in reversed(runs)
                                 if r.workload == w and r.contender == c.name), w.blocks * 512)
                for client in order(round_no):
                    key = f"{client} on {c.name}"
                    if key in failures:
                        continue
                    try:
                        sample = (iscsi_perf.run(c.url, w, seconds) if client == PEER
                                  else run(c.url, w, transfer, seconds, lun_bytes))
                    except PerfError as e:
                        failures[key] = failure(c, f"{w.key}, {label}", e)
                        say(f"{key} {w.key} {label}: FAILED ({str(e).splitlines()[0]})")
                        continue
                    runs.append(report.Run(round_no, w, c.name, sample, client))
                    say(f"{label} {w.key:8} {c.name:8} {client:13} {sample.iops:>8,} IOPS "
                        f"{sample.mib_per_s:8.1f} MiB/s")
    return runs, failures


def render(contenders: Sequence[str], runs: Sequence[report.Run], *, seconds: int, rounds: int,
           env: report.Environment, rerun: str, lun_bytes: int, failures: dict[str, str],
           notes: Sequence[str] = ()) -> str:
    example = {w.key: next((r.sample.transfer_bytes for r in runs if r.workload == w), w.blocks * 512)
               for w in WORKLOADS}
    lines = [SECTION, "",
             f"Clients: libiscsi's `iscsi-perf` (C) and `sanpath bench` (this project's initiator, Python), "
             f"one session each, on the same LUN of the same target, back to back in alternating order "
             f"(iscsi-perf first in odd rounds, sanpath bench first in even ones), for each workload and "
             f"target, {rounds} rounds of {seconds} s after a warm-up run of each. "
             f"Targets: tgtd (LUN 1) and the sanpath target (LUN 0), both serving one {lun_bytes // 2**20} MiB "
             "backing file of random bytes (os.urandom) on 127.0.0.1, so reads come from the page cache. Both "
             "clients read the whole LUN: iscsi-perf sequentially from LBA 0, wrapping, or at random LBAs "
             "(any block); sanpath bench over its default region (the whole LUN; the report checks it), "
             "sequentially or at random offsets aligned to the transfer size. sanpath bench runs without "
             "`--verify`, so it writes nothing and has no prefill: its timed window is reads only (checked: "
             "0 writes, 0 errors in every result). Each cell is the median of the rounds; the ratio is "
             "sanpath bench's median IOPS over iscsi-perf's (MiB/s follow from IOPS times the transfer size).",
             "",
             "Commands (URL: `iscsi://127.0.0.1:PORT/IQN/LUN`; `sanpath bench` is run as `python -m sanpath "
             "bench`, the same command):",
             ""]
    for w in WORKLOADS:
        lines += [f"- {w.title}: `{shlex.join(iscsi_perf.command('URL', w, seconds))}` vs "
                  f"`{shlex.join(command('URL', w, example[w.key], seconds, python='.venv/bin/python'))}`"]
    lines += ["",
              f"| target | workload | {PEER} IOPS | {PEER} MiB/s | {OURS} IOPS | {OURS} MiB/s | ratio | goal | "
              f"{OURS} p99 µs |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in contenders:
        for w in WORKLOADS:
            ref, ours = report.counted(runs, w, c, PEER), report.counted(runs, w, c, OURS)
            ratio = report.ratio(ref, ours)
            goal = GOALS[w.key]
            verdict = "n/a" if ratio is None else f"≥ {goal} {'met' if ratio >= goal else '**missed**'}"
            p99 = [r.sample.p99_us for r in ours if isinstance(r.sample, BenchSample)]
            p99_cell = f"{statistics.median(p99):,.0f}" if p99 else "n/a"
            lines.append("| " + " | ".join([c, w.title, *report.median_cells(ref, ours), verdict, p99_cell]) + " |")
    lines += ["", "IOPS of every counted run, in run order (sanpath bench: p50/p99 latency in µs), and the ratio "
              "of each round's back-to-back pair (drift between rounds cancels out of it):", ""]
    for c in contenders:
        for w in WORKLOADS:
            for client in CLIENTS:
                cell = report.counted(runs, w, c, client)
                if cell:
                    lines.append(f"- {c} {w.key} {client}: " + ", ".join(
                        f"{r.sample.iops:,}" + (f" ({r.sample.p50_us:,.0f}/{r.sample.p99_us:,.0f})"
                                                if isinstance(r.sample, BenchSample) else "") for r in cell))
            by_round = {r.round: r.sample.iops for r in report.counted(runs, w, c, PEER)}
            pairs = [f"{r.sample.iops / by_round[r.round]:.2f}" for r in report.counted(runs, w, c, OURS)
                     if by_round.get(r.round)]
            if pairs:
                lines.append(f"- {c} {w.key} per-round ratio: {', '.join(pairs)}")
    sizes = {(r.contender, r.workload.key): r.sample.transfer_bytes for r in runs}
    if len({sizes[c, w.key] for c in contenders for w in WORKLOADS[:1] if (c, w.key) in sizes}) > 1:
        lines += ["", f"Warning: the targets report different block sizes, so transfer sizes differ: {sizes}."]
    return "\n".join(lines + report.footer(env, rerun, failures, notes))
