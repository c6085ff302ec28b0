"""Multipath suite (``--suite multipath``): issue 6's performance goals, measured in the namespace lab.

Scaling. A lab with four storage subnets and one controller (A): four host NICs, each cabled through its
own switch to its own controller NIC, every one of those eight storage links shaped to 1 Gbit/s (tbf on
both ends' egress). So each path has a 1 Gbit/s link of its own end to end, and N paths are N independent
1 Gbit/s paths. (The reference topology's 2 subnets x 2 controllers would give four paths but only two
host NICs, each shared by two paths: two independent 1 Gbit/s pipes, not four.) tgtd in the array
namespace serves the backing file through all four controller addresses. 128 KiB sequential reads at
queue depth 32 from the host namespace: iscsi-perf over one path (the C reference), ``sanpath bench`` over
one multipath device of 1, 2 and 4 paths (round-robin over the paths), alternating, over several rounds.

Failover and failback. The reference topology (2 subnets, controllers A and B: four paths), unshaped,
tgtd or the sanpath target (portal profile) on all four controller addresses, default settings. One
``sanpath bench`` run of verified 4 KiB random writes at queue depth 32, during which the suite pulls a
cable (at the switch: the NIC loses carrier, its traffic vanishes, as in a real pull), holds it out,
plugs it back in and waits, again and again: the host's cable on subnet 1 (host side: the host's NIC
loses carrier), controller A's on subnet 2 (array side: the host sees nothing but silence), the host's
on subnet 2, controller B's on subnet 1, and round again. From the bench's JSON:

- the stall per pull: the longest gap with no I/O completing between this pull and the next one (the
  bench lists every gap of 50 ms or more with its wall-clock start), p50 and max per side;
- the failback per pull: from the restore until each path the pull had killed completed its first I/O
  again (the bench records, per reinstatement, when the path next completed an I/O); the pull's figure is
  that of its slowest path.

False failovers. The same topology and load, no fault, for ``--quiet-minutes`` (10): every path failure
the bench reports is a false one.

Both clocks are the same wall clock (the bench runs on this machine, in another network namespace only).
"""

from __future__ import annotations

import functools
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from sanpath.errors import SanpathError
from sanpath.lab import Lab, Topology
from sanpath.target.spawn import serve_target
from sanpath.testing.tgtd import run_tgtd

from . import iscsi_perf, report
from .iscsi_perf import PerfError

SECTION = "## Multipath: scaling, failover and failback in the lab"
IQN = "iqn.2026-11.org.sanpath.bench:lab"
RATE = "1gbit"
SEQ = iscsi_perf.WORKLOADS[0]  # 128 KiB sequential read, QD 32
SEQ_BYTES = 128 * 1024
SCALING_GOALS = {2: 1.9, 4: 3.6}  # issue 6: N-path MB/s over 1-path MB/s
STALL_GOAL_MS = 250.0  # issue 21, for host-side and array-side pulls alike
FAILBACK_GOAL_MS = 2000.0
STALL_FLOOR_MS = 50.0  # the bench lists gaps from 50 ms up; a pull with none stalled less than that
PULL_LINKS = ("host-s1", "ctlA-s2", "host-s2", "ctlB-s1")
HOLD, SETTLE, LEAD = 2.0, 3.0, 2.0  # seconds: cable out, cable in before the next pull, run before the first
VERIFY_REGION = "256MiB"
# a pull every few seconds is exactly the flapping the marginal-path rule holds out (3 failures in 60 s:
# out for 30 s), which would hide failback after the third pull of a path; every run lifts that limit
BASE = ("marginal_failures=100",)
PY = sys.executable


# --- scaling -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    round: int
    client: str  # "iscsi-perf" or "sanpath bench"
    paths: int
    mbps: float  # 10^6 bytes per second
    spread: str = ""  # sanpath bench: I/Os per path


def _bench_argv(targets: Sequence[str], sources: Sequence[str], rest: Sequence[str]) -> list[str]:
    return [PY, "-m", "sanpath", "bench", "--target", ",".join(targets), "--iqn", IQN,
            "--source", ",".join(sources), *rest, "--format", "json"]


def _seq_argv(lab: Lab, paths: int, seconds: int) -> list[str]:
    topo = lab.topology
    targets = [topo.controller_address("A", k) for k in range(1, paths + 1)]
    sources = [topo.host_address(k) for k in range(1, paths + 1)]
    return _bench_argv(targets, sources, ["--rw", "read", "--bs", str(SEQ_BYTES), "--qd", str(SEQ.queue_depth),
                                          "--time", str(seconds), "--quiet"])


def _sanpath_seq(lab: Lab, paths: int, seconds: int, round_no: int) -> Sample:
    out, _ = iscsi_perf.run_timed(lab.prefix("host") + _seq_argv(lab, paths, seconds), seconds,
                                  merge_stderr=False)
    try:
        r = json.loads(out)
    except ValueError:
        raise PerfError(f"sanpath bench printed no JSON:\n{out[-1500:]}") from None
    ios = [p["ios"] for p in r["per_path"].values()]
    if r["errors"] or r["write_ios"] or len(ios) != paths or r["bs"] != SEQ_BYTES:
        raise PerfError(f"sanpath bench over {paths} paths not comparable: errors {r['errors']}, writes "
                        f"{r['write_ios']}, {len(ios)} paths, bs {r['bs']}:\n{r.get('topology', '')}")
    return Sample(round_no, "sanpath bench", paths, float(r["mbps"]), "/".join(f"{n:,}" for n in ios))


def _perf_seq(lab: Lab, seconds: int, round_no: int) -> Sample:
    url = f"iscsi://{lab.topology.controller_address('A', 1)}:3260/{IQN}/1"
    out, _ = iscsi_perf.run_timed(lab.prefix("host") + iscsi_perf.command(url, SEQ, seconds), seconds)
    s = iscsi_perf.parse(out, SEQ)
    return Sample(round_no, "iscsi-perf", 1, s.iops * s.transfer_bytes / 1e6)


def scaling(backing: str, plan: Sequence[tuple[int, int]], state_dir: str, say: Callable[[str], None],
            failures: dict[str, str]) -> list[Sample]:
    samples: list[Sample] = []
    lab = Lab(topology=Topology(subnets=4, controllers=1), state_path=f"{state_dir}/scaling.json")
    with lab:
        for link in lab.topology.storage_links():
            lab.shape(link.name, RATE)
        portals = [p for _, p in lab.topology.portals()]
        with run_tgtd(backing, iqn=IQN, portals=portals, prefix=lab.prefix("array")) as tgtd:
            say(f"scaling: tgtd on {', '.join(tgtd.portals)}, every storage link shaped to {RATE}")
            rounds = max((r for r, _ in plan), default=0)
            for round_no, seconds in plan:
                label = "warm-up" if round_no == 0 else f"round {round_no}/{rounds}"
                for key, run in [("iscsi-perf, 1 path", lambda s, r: _perf_seq(lab, s, r)),
                                 *((f"sanpath bench, {n} path{'s' * (n > 1)}",
                                    lambda s, r, n=n: _sanpath_seq(lab, n, s, r)) for n in (1, 2, 4))]:
                    if key in failures:
                        continue
                    try:
                        sample = run(seconds, round_no)
                    except PerfError as e:
                        failures[key] = f"{label}: {e}\n--- tgtd log (tail) ---\n{tgtd.log()[-1500:]}"
                        say(f"scaling {key} {label}: FAILED ({str(e).splitlines()[0]})")
                        continue
                    samples.append(sample)
                    say(f"scaling {label} {key:22} {sample.mbps:8.1f} MB/s {sample.spread}")
    return samples


# --- failover and failback ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pull:
    link: str
    pulled: float  # wall clock, just before the cable was pulled
    restored: float  # wall clock, once it was plugged in again
    stall_ms: float | None = None  # None: no gap of STALL_FLOOR_MS or more
    failback_ms: float | None = None  # None: some killed path carried no I/O before the next pull
    killed: tuple[str, ...] = ()  # the paths this pull took down
    side: str = ""  # "host": the host's NIC lost carrier; "array": a controller's cable


@dataclass
class FailoverRun:
    target: str
    settings: tuple[str, ...]
    pulls: list[Pull] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)


class _Stderr:
    """A child's stderr read line by line in a thread (so its pipe never fills), with a wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(text in line for line in self.lines):
                if not self.thread.is_alive() or time.monotonic() > deadline:
                    return False
                self.cond.wait(0.2)
        return True


def _killed_by(lab: Lab, link: str, paths: Sequence[str]) -> tuple[str, ...]:
    x = lab.link(link)
    if x.role == "host":  # the host's NIC: every path leaving through it
        return tuple(p for p in paths if p.startswith(f"{x.ip}->"))
    return tuple(p for p in paths if f"->{x.ip}:" in p)  # a controller port: the paths to it


def _side(lab: Lab, link: str) -> str:
    return "host" if lab.link(link).role == "host" else "array"


def _analyse(pulls: list[Pull], result: dict[str, Any], lab: Lab, end: float) -> list[Pull]:
    stalls = [(float(t), float(ms)) for t, ms in result.get("stalls", [])]
    out = []
    for i, p in enumerate(pulls):
        until = pulls[i + 1].pulled if i + 1 < len(pulls) else end
        gaps = [ms for t, ms in stalls if p.pulled - 0.01 <= t < until]
        killed = _killed_by(lab, p.link, list(result.get("per_path", {})))
        backs: list[float | None] = []
        for path in killed:
            first = [f["first_io"] for f in result.get("failbacks", []) if f["path"] == path
                     and f["first_io"] is not None and p.restored <= f["first_io"] < until]
            backs.append((min(first) - p.restored) * 1000 if first else None)
        failback = None if not backs or None in backs else max(b for b in backs if b is not None)
        out.append(Pull(p.link, p.pulled, p.restored, max(gaps) if gaps else None, failback, killed,
                        _side(lab, p.link)))
    return out


def failover(target: str, serve: Callable[[Lab], AbstractContextManager[list[str]]], settings: Sequence[str],
             pulls: int, state_dir: str, say: Callable[[str], None]) -> FailoverRun:
    """One verified 4 KiB random-write run with ``pulls`` cable pulls, against ``target`` as ``serve``
    starts it in the lab's array namespace (yielding the addresses to give ``--target``)."""
    lab = Lab(topology=Topology(subnets=2, controllers=2), state_path=f"{state_dir}/failover.json")
    run = FailoverRun(target, tuple(settings))
    with lab, serve(lab) as targets:
        seconds = LEAD + pulls * (HOLD + SETTLE) + 1
        sources = [lab.topology.host_address(k) for k in (1, 2)]
        run.argv = _bench_argv(targets, sources, [
            "--rw", "randwrite", "--bs", "4K", "--qd", "32", "--time", f"{seconds:g}", "--verify",
            "--size", VERIFY_REGION, *(a for s in (*BASE, *settings) for a in ("--set", s))])
        proc = lab.popen_in("host", run.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
        err = _Stderr(proc)
        if not err.wait_for("] run ", 60):
            proc.kill()
            raise PerfError(f"{target}: the bench never started its timed phase:\n" + "\n".join(err.lines[-30:]))
        start = time.time()
        taken: list[Pull] = []
        for i in range(pulls):
            link = PULL_LINKS[i % len(PULL_LINKS)]
            time.sleep(max(0.0, start + LEAD + i * (HOLD + SETTLE) - time.time()))
            pulled = time.time()
            lab.pull(link)
            time.sleep(HOLD)
            lab.restore(link)
            taken.append(Pull(link, pulled, time.time()))
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=120)
        err.thread.join(timeout=5)
        end = time.time()
        try:
            run.result = json.loads(out)
        except ValueError:
            raise PerfError(f"{target}: sanpath bench (exit {proc.returncode}) printed no JSON:\n"
                            + "\n".join(err.lines[-30:])) from None
    run.pulls = _analyse(taken, run.result, lab, end)
    r = run.result
    say(f"failover {target} {' '.join(settings) or 'defaults'}: errors {r['errors']}, verify failures "
        f"{r['verify_failures']}, stalls p50/max {_p50_max([p.stall_ms for p in run.pulls])} ms, "
        f"failback p50/max {_p50_max([p.failback_ms for p in run.pulls])} ms")
    return run


@dataclass
class QuietRun:
    target: str
    minutes: float
    result: dict[str, Any] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)

    @property
    def false_failovers(self) -> int:
        return sum(int(p["errors"]) for p in self.result.get("per_path", {}).values())


def quiet(target: str, serve: Callable[[Lab], AbstractContextManager[list[str]]], minutes: float,
          state_dir: str, say: Callable[[str], None]) -> QuietRun:
    """Full load, no fault, for ``minutes``: every path failure is a false failover."""
    lab = Lab(topology=Topology(subnets=2, controllers=2), state_path=f"{state_dir}/quiet.json")
    run = QuietRun(target, minutes)
    with lab, serve(lab) as targets:
        sources = [lab.topology.host_address(k) for k in (1, 2)]
        run.argv = _bench_argv(targets, sources, ["--rw", "randwrite", "--bs", "4K", "--qd", "32",
                                                  "--time", f"{minutes * 60:g}", "--verify", "--size",
                                                  VERIFY_REGION, "--quiet"])
        out, _ = iscsi_perf.run_timed(lab.prefix("host") + run.argv, minutes * 60, merge_stderr=False)
    try:
        run.result = json.loads(out)
    except ValueError:
        raise PerfError(f"{target}: sanpath bench printed no JSON:\n{out[-1500:]}") from None
    r = run.result
    say(f"quiet load {target} {minutes:g} min: {run.false_failovers} false failovers, errors {r['errors']}, "
        f"verify failures {r['verify_failures']}, {r['iops']:,.0f} IOPS")
    return run


@contextmanager
def _serve_tgtd(backing: str, lab: Lab) -> Iterator[list[str]]:
    portals = [p for _, p in lab.topology.portals()]
    with run_tgtd(backing, iqn=IQN, portals=portals, prefix=lab.prefix("array")) as t:
        yield [p.rsplit(":", 1)[0] for p in t.portals]  # tgtd's SendTargets names only the portal asked


@contextmanager
def _serve_sanpath(backing: str, lab: Lab) -> Iterator[list[str]]:
    portals = [p for _, p in lab.topology.portals()]
    args = ["--iqn", IQN, "--profile", "portal", *(a for p in portals for a in ("--portal", p)), "--lun", backing]
    with serve_target(*args, prefix=lab.prefix("array")) as t:
        yield [t.portals[0].rsplit(":", 1)[0]]  # its SendTargets names every portal


# --- the report -------------------------------------------------------------------------------------


def _p50_max(values: Sequence[float | None]) -> str:
    """p50 and max of per-pull figures; a None (below the stall floor / no failback) is shown as such."""
    known = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(known) < len(values):
        return f"{len(values) - len(known)} of {len(values)} n/a"
    return f"{statistics.median(known):,.0f} / {max(known):,.0f}"


def _median(samples: Sequence[Sample], client: str, paths: int) -> float | None:
    xs = [s.mbps for s in samples if s.round > 0 and s.client == client and s.paths == paths]
    return statistics.median(xs) if xs else None


def render(samples: list[Sample], runs: list[FailoverRun], quiet_runs: list[QuietRun], *, seconds: int,
           rounds: int, pulls: int, env: report.Environment, rerun: str, failures: dict[str, str]) -> str:
    base = _median(samples, "sanpath bench", 1)
    perf = _median(samples, "iscsi-perf", 1)
    lines = [SECTION, "",
             "### Scaling: 128 KiB sequential reads, QD 32, every path shaped to 1 Gbit/s", "",
             "Lab: 4 storage subnets, controller A only; host-sK and ctlA-sK shaped to 1 Gbit/s (tbf, burst "
             "1 ms, both directions), so every path has its own 1 Gbit/s link end to end. Target: tgtd in "
             "the array namespace on 198.18.K.1:3260 (K = 1..4), LUN 1 = the backing file. Clients in the "
             f"host namespace, {rounds} rounds of {seconds} s each after a warm-up, alternating in the order "
             "of the table. sanpath bench builds one multipath device over the paths (discovery on each "
             "address, one session per path, round-robin). MB/s are 10^6 bytes/s; each cell is the median "
             "of the rounds.", "",
             "| client | paths | MB/s | vs sanpath 1 path | goal |", "|---|---:|---:|---:|---:|"]
    for client, paths in (("iscsi-perf", 1), ("sanpath bench", 1), ("sanpath bench", 2), ("sanpath bench", 4)):
        m = _median(samples, client, paths)
        ratio = m / base if m is not None and base else None
        goal = SCALING_GOALS.get(paths) if client == "sanpath bench" else None
        verdict = "" if goal is None or ratio is None else f"≥ {goal} {'met' if ratio >= goal else '**missed**'}"
        lines.append(f"| {client} | {paths} | {'n/a' if m is None else f'{m:,.1f}'} | "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {verdict} |")
    if perf and base:
        lines += ["", f"sanpath bench over 1 path / iscsi-perf over the same path: {base / perf:.2f}."]
    lines += ["", "Every counted run (sanpath bench: I/Os per path):", ""]
    for client, paths in (("iscsi-perf", 1), ("sanpath bench", 1), ("sanpath bench", 2), ("sanpath bench", 4)):
        cell = [s for s in samples if s.round > 0 and s.client == client and s.paths == paths]
        if cell:
            lines.append(f"- {client}, {paths} path{'s' * (paths > 1)}: " + ", ".join(
                f"{s.mbps:,.1f}" + (f" ({s.spread})" if s.spread and paths > 1 else "") for s in cell))
    lines += ["", f"### Failover and failback: {pulls} cable pulls under verified 4 KiB random writes, QD 32", "",
              "Lab: the reference topology (2 storage subnets, controllers A and B, four paths), unshaped. "
              f"One `sanpath bench --rw randwrite --bs 4K --qd 32 --verify --size {VERIFY_REGION}` run per row; "
              f"{LEAD:g} s into it, and every {HOLD + SETTLE:g} s, a cable is pulled at its switch port (the "
              f"NIC loses carrier; packets vanish), held out {HOLD:g} s and plugged back in, cycling through "
              f"{', '.join(PULL_LINKS)} (a host cable kills two paths, a controller cable one). Stall: the "
              "longest gap with no I/O completing from one pull to the next, from the bench's list of gaps "
              f"≥ {STALL_FLOOR_MS:g} ms. Failback: from the restore until every path the pull killed completed "
              "an I/O again. p50 / max over the pulls, in ms, the stall apart for host-side pulls (the host's "
              "NIC loses carrier) and array-side ones (a controller's cable: the host sees only silence). Errors "
              "and verify failures are the run's totals (the read-back after the run checks every unit "
              f"written). Every run sets `{' '.join(BASE)}`: a path that goes down every 10 to 20 s fails 3 or "
              "more times in 60 s, which the marginal-path rule would hold back for 30 s (its purpose), hiding "
              "the failback being measured. There is no stock Linux initiator to run beside it here (no iSCSI "
              "kernel modules in this sandbox); the 10 to 15 s figure for open-iscsi with dm-multipath defaults "
              "is from PEERS.md, not measured. What bounds the figures, with the default settings: a host-side "
              "pull is known the moment the kernel reports the lost carrier over rtnetlink, and the paths' "
              "connections are dropped then; an array-side pull is noticed when a connection with commands in "
              "flight has been silent for `busy_silence` (0.05 s) and a NOP-Out then stays unanswered for "
              "`busy_nop_timeout` (0.1 s); then the fence (a login through a surviving portal: milliseconds "
              "here) and the reissue. Failback waits for the link to come up (host side) or the next re-login "
              "attempt (every `relogin_backoff`, 0.25 s), then the checker.", "",
              "| target | settings | pulls (host / array) | stall, host side | stall, array side | "
              f"goal ≤ {STALL_GOAL_MS:g} | failback p50 / max | goal ≤ {FAILBACK_GOAL_MS:g} | errors | "
              "verify failures |", "|---|---|---:|---:|---:|---|---:|---|---:|---:|"]
    for run in runs:
        stalls = {side: [p.stall_ms if p.stall_ms is not None else STALL_FLOOR_MS for p in run.pulls
                         if p.side == side] for side in ("host", "array")}
        every = stalls["host"] + stalls["array"]
        backs = [p.failback_ms for p in run.pulls]
        r = run.result
        stall_ok = bool(every) and max(every) <= STALL_GOAL_MS
        back_ok = bool(backs) and None not in backs and max(b for b in backs if b is not None) <= FAILBACK_GOAL_MS
        lines.append(f"| {run.target} | {', '.join(run.settings) or 'defaults'} | {len(stalls['host'])} / "
                     f"{len(stalls['array'])} | {_p50_max(stalls['host'])} | {_p50_max(stalls['array'])} | "
                     f"{'met' if stall_ok else '**missed**'} | {_p50_max(backs)} | "
                     f"{'met' if back_ok else '**missed**'} | {r.get('errors', 'n/a')} | "
                     f"{r.get('verify_failures', 'n/a')} |")
    lines += ["", "Per pull (link: stall ms / failback ms; \"<50\": no gap of 50 ms or more):", ""]
    for run in runs:
        cells = [f"{p.link}: {'<50' if p.stall_ms is None else f'{p.stall_ms:,.0f}'} / "
                 f"{'none' if p.failback_ms is None else f'{p.failback_ms:,.0f}'}" for p in run.pulls]
        lines.append(f"- {run.target}, {' '.join(run.settings) or 'defaults'}: {'; '.join(cells)}")
        lines.append(f"  (verified reads {run.result.get('verify_reads', 0):,}, "
                     f"{run.result.get('iops', 0):,.0f} IOPS over the run, command: "
                     f"`{shlex.join(['sanpath', *run.argv[3:]])}`)")
    if quiet_runs:
        lines += ["", "### False failovers: full load, no fault", "",
                  "The same lab and load (verified 4 KiB random writes, QD 32, four paths), default settings, "
                  "no cable touched: every path failure is a false failover. Goal: 0.", "",
                  "| target | minutes | false failovers | I/Os | IOPS | errors | verify failures |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for q in quiet_runs:
            r = q.result
            lines.append(f"| {q.target} | {q.minutes:g} | {q.false_failovers} | {r.get('ios', 0):,} | "
                         f"{r.get('iops', 0):,.0f} | {r.get('errors', 'n/a')} | {r.get('verify_failures', 'n/a')} |")
        lines += ["", f"Command: `{shlex.join(['sanpath', *quiet_runs[0].argv[3:]])}`"]
    return "\n".join(lines + report.footer(env, rerun, failures))


def run_suite(backing: str, plan: Sequence[tuple[int, int]], *, seconds: int, rounds: int, pulls: int,
              quiet_minutes: float, rerun: str, say: Callable[[str], None]) -> tuple[str, bool]:
    """Scaling, then failover against tgtd and the sanpath target, then full load with no fault against
    each. Returns the BENCHMARKS.md section and whether something failed outright."""
    env = report.Environment.here()
    failures: dict[str, str] = {}
    runs: list[FailoverRun] = []
    quiet_runs: list[QuietRun] = []
    with tempfile.TemporaryDirectory(prefix="sanpath-mp-bench-") as state_dir:
        samples: list[Sample] = []
        try:
            samples = scaling(backing, plan, state_dir, say, failures)
        except (SanpathError, RuntimeError, OSError, subprocess.SubprocessError) as e:
            failures["scaling"] = f"{type(e).__name__}: {e}"
            say(f"scaling: FAILED ({str(e).splitlines()[0]})")
        for target, starter in (("tgtd", _serve_tgtd), ("sanpath", _serve_sanpath)):
            key = f"failover {target}"
            try:
                runs.append(failover(target, functools.partial(starter, backing), (), pulls, state_dir, say))
            except (SanpathError, RuntimeError, OSError, subprocess.SubprocessError) as e:
                failures[key] = str(e)
                say(f"{key}: FAILED ({str(e).splitlines()[0]})")
        for target, starter in (("tgtd", _serve_tgtd), ("sanpath", _serve_sanpath)) if quiet_minutes else ():
            key = f"quiet load {target}"
            try:
                quiet_runs.append(quiet(target, functools.partial(starter, backing), quiet_minutes, state_dir, say))
            except (SanpathError, RuntimeError, OSError, subprocess.SubprocessError) as e:
                failures[key] = str(e)
                say(f"{key}: FAILED ({str(e).splitlines()[0]})")
    section = render(samples, runs, quiet_runs, seconds=seconds, rounds=rounds, pulls=pulls, env=env, rerun=rerun,
                     failures=failures)
    return section, bool(failures)
