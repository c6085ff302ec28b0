"""``python -m benchmarks``: sanpath side by side with its peers, on the same targets, into BENCHMARKS.md.

Suites (``--suite``): ``target``, iscsi-perf against tgtd and against the sanpath target; ``initiator``,
``sanpath bench`` against iscsi-perf on each of those targets' LUN (see benchmarks/initiator.py);
``multipath``, scaling over 1, 2 and 4 shaped paths and failover/failback under cable pulls in the
namespace lab (see benchmarks/multipath.py; root); ``export``, issue 7's whole-LUN read, nbdcopy through
``sanpath attach`` over two shaped lab paths against qemu-img through libiscsi over one (see
benchmarks/export.py; root). Both
targets serve one random backing file for the whole run; runs alternate (the peer first, being the
reference) so that machine drift hits both. A target or client that fails is reported with its error and
log, never with guessed numbers.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from contextlib import ExitStack
from pathlib import Path

from sanpath.testing.tgtd import TgtdUnavailableError

from . import export, initiator, iscsi_perf, multipath, report
from .backing import random_backing_file
from .contenders import STARTERS, Contender, verify
from .iscsi_perf import WORKLOADS, PerfError
from .loopback import LoopbackError, private_loopback

ROOT = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="counted runs per workload and target (default 3)")
    p.add_argument("--seconds", type=int, default=10, help="length of each client run (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of an uncounted first run (default 2; 0: none)")
    p.add_argument("--size-mib", type=int, default=1024, help="backing file size in MiB (default 1024)")
    p.add_argument("--suite", choices=("target", "initiator", "multipath", "export", "all"), default="target",
                   help="target: iscsi-perf vs two targets; initiator: sanpath bench vs iscsi-perf on each "
                        "target; multipath: scaling, failover and failback in the namespace lab; export: "
                        "nbdcopy through sanpath attach (2 lab paths) vs qemu-img through libiscsi (1 path), "
                        "whole LUN (--seconds unused; --warmup > 0: one uncounted round); all: every suite in "
                        "that order (default target)")
    p.add_argument("--pulls", type=int, default=40,
                   help="multipath: cable pulls per failover run, host and array side in turn (default 40)")
    p.add_argument("--quiet-minutes", type=float, default=10,
                   help="multipath: minutes of full load with no fault per target, counting false failovers "
                        "(default 10; 0: skip)")
    p.add_argument("--contenders", default="tgtd,sanpath",
                   help="comma-separated targets, reference first (default tgtd,sanpath)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="report file (default BENCHMARKS.md)")
    p.add_argument("--congestion-control", metavar="NAME",
                   help="target and initiator suites: run in a network namespace of their own whose loopback "
                        "uses this TCP congestion control, e.g. cubic (root; default: the machine's, "
                        "unchanged; see benchmarks/loopback.py)")
    p.add_argument("--tmpdir", help="where to put the backing file (default: the system temp dir)")
    return p


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _failure(contender: Contender, what: str, error: Exception) -> str:
    return f"{what}: {error}\n--- {contender.name} log (tail) ---\n{contender.log()[-1500:]}"


def _target_suite(contenders: list[Contender], plan: list[tuple[int, int]], failures: dict[str, str],
                  rounds: int) -> list[report.Run]:
    """iscsi-perf against each target in turn; a target that fails is recorded in ``failures`` and skipped."""
    runs: list[report.Run] = []
    for round_no, seconds in plan:
        for w in WORKLOADS:
            for c in contenders:
                if c.name in failures:
                    continue
                label = "warm-up" if round_no == 0 else f"round {round_no}/{rounds}"
                try:
                    sample = iscsi_perf.run(c.url, w, seconds)
                except PerfError as e:
                    failures[c.name] = _failure(c, f"{w.key}, {label}", e)
                    _say(f"{c.name} {w.key} {label}: FAILED ({str(e).splitlines()[0]})")
                    continue
                runs.append(report.Run(round_no, w, c.name, sample))
                _say(f"{label} {w.key:8} {c.name:8} {sample.iops:>8,} IOPS {sample.mib_per_s:8.1f} MiB/s")
    return runs


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in STARTERS]
    if unknown or len(names) != 2:
        _say(f"--contenders takes two of {', '.join(STARTERS)} (reference first), got {args.contenders!r}")
        return 2
    rerun = ".venv/bin/python -m benchmarks " + shlex.join(
        [*(["--suite", args.suite] if args.suite != "target" else []),
         "--rounds", str(args.rounds), *(["--seconds", str(args.seconds)] if args.suite != "export" else []),
         "--warmup", str(args.warmup), "--size-mib", str(args.size_mib),
         *(["--contenders", ",".join(names)] if args.suite not in ("multipath", "export") else []),
         *(["--pulls", str(args.pulls), "--quiet-minutes", f"{args.quiet_minutes:g}"]
           if args.suite in ("multipath", "all") else []),
         *(["--congestion-control", args.congestion_control] if args.congestion_control else [])])
    suites = ("target", "initiator", "multipath", "export") if args.suite == "all" else (args.suite,)
    if args.congestion_control:
        if {"multipath", "export"} & set(suites):
            _say("--congestion-control is for the target and initiator suites (the lab makes its own namespaces)")
            return 2
        try:
            private_loopback(args.congestion_control)
        except LoopbackError as e:
            _say(str(e))
            return 2
        _say(f"running in a network namespace of our own, TCP congestion control {args.congestion_control}")
    sections: list[str] = []
    status = 0
    failures: dict[str, str] = {}
    notes: list[str] = []
    size = args.size_mib * 2**20
    env = report.Environment.here()
    _say(f"writing {args.size_mib} MiB of random data")
    with random_backing_file(size, directory=args.tmpdir) as path, ExitStack() as stack:
        contenders: list[Contender] = []
        for name in names if {"target", "initiator"} & set(suites) else ():
            try:
                contenders.append(stack.enter_context(STARTERS[name](path)))
                _say(f"{name} serving {contenders[-1].url}")
            except TgtdUnavailableError as e:
                _say(str(e))
                return 2
            except Exception as e:  # a target still being written may fail in any way: report, don't crash
                failures[name] = f"did not start: {type(e).__name__}: {e}"
                _say(f"{name} did not start: {e}")
        for c in contenders:
            _say(f"{c.name}: comparing the LUN with the backing file (qemu-img compare)")
            problem = verify(c, path)
            if problem and problem.startswith("not verified"):
                notes.append(problem)
            elif problem:
                failures[c.name] = f"served different bytes than the backing file: {problem}"
                _say(f"{c.name}: {failures[c.name]}")
        plan = [(0, args.warmup)] * (args.warmup > 0) + [(r, args.seconds) for r in range(1, args.rounds + 1)]
        down = dict(failures)  # a target down at start is down for every suite; later failures are per suite
        if "target" in suites:
            runs = _target_suite(contenders, plan, failures, args.rounds)
            sections.append(report.render(WORKLOADS, names, runs, seconds=args.seconds, rounds=args.rounds,
                                          env=env, rerun=rerun, size=size, failures=failures, notes=notes))
            status |= names[0] in failures
        if "initiator" in suites:
            env = report.Environment.here() if "target" in suites else env
            up = [c for c in contenders if c.name not in down]
            i_runs, i_failures = initiator.run_suite(up, plan, lun_bytes=size, say=_say, failure=_failure)
            sections.append(initiator.render([c.name for c in up], i_runs, seconds=args.seconds,
                                             rounds=args.rounds, env=env, rerun=rerun, lun_bytes=size,
                                             failures={**down, **i_failures}, notes=notes))
            status |= not up or any(k.startswith(f"{initiator.PEER} on ") for k in i_failures)
        if "multipath" in suites:
            stack.close()  # the loopback targets are done; the lab suite starts its own
            section, failed = multipath.run_suite(path, plan, seconds=args.seconds, rounds=args.rounds,
                                                  pulls=args.pulls, quiet_minutes=args.quiet_minutes,
                                                  rerun=rerun, say=_say)
            sections.append(section)
            status |= failed
        if "export" in suites:
            stack.close()
            section, failed = export.run_suite(path, size, rounds=args.rounds, warmup=args.warmup > 0,
                                               rerun=rerun, say=_say)
            sections.append(section)
            status |= failed
    for section in sections:
        report.write(args.output, section)
        print(section)
    _say(f"wrote {args.output}")
    return status


if __name__ == "__main__":
    sys.exit(main())
