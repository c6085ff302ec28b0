"""Export suite (``--suite export``): issue 7's benchmark, a whole-LUN read through the NBD export of
``sanpath attach`` over two shaped paths against qemu-img reading the same LUN through libiscsi over one.

Lab: 2 storage subnets, controller A only, so the host has two NICs and the array two, one per subnet,
and each path has a 1 Gbit/s link of its own end to end (host-sK and ctlA-sK shaped with tbf, as in the
multipath suite's scaling runs). The array namespace runs tgtd, serving the backing file as LUN 1 on
198.18.1.1:3260 and 198.18.2.1:3260. tgtd rather than the sanpath target: the array side stays C for
both clients, so the figure is about the host side (libiscsi + qemu-img against sanpath's initiator,
multipath device and NBD server + nbdcopy); it is also a target sanpath did not write.

Each round, alternating, the peer first (it is the reference):

(a) ``qemu-img convert -n -f raw iscsi://198.18.1.1:3260/IQN/1 --target-image-opts driver=null-co,size=N``
    in the host namespace: qemu's iscsi driver (libiscsi), one session, one path; the sink is qemu's
    ``null-co`` driver, which drops every write (``-O raw /dev/null`` is refused: "output file is smaller
    than input file"), the counterpart of nbdcopy's ``null:``;
(b) ``sanpath attach --target 198.18.1.1,198.18.2.1 --iqn IQN --source 198.18.1.10,198.18.2.10 --nbd
    unix:PATH`` started in the host namespace, and once it is ready (both paths logged in) the timed
    ``nbdcopy nbd+unix:///SCSIID?socket=PATH null:``; then attach is stopped (SIGTERM), so every round
    starts from a cold attach like (a) starts from a cold libiscsi session.

Both clients run with their defaults otherwise. The time is the client process's wall clock (start to
exit: its connect and login, a few ms, are in it for both). MB/s are 10^6 bytes/s of LUN read. The bytes
each host NIC received during a client's run (``ip -s link``) are recorded too: they show the split over
the paths and that the whole LUN crossed the wire.
"""

from __future__ import annotations

import json
import re
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sanpath.errors import SanpathError
from sanpath.lab import Lab, Topology, netns
from sanpath.target.spawn import terminate
from sanpath.testing.tgtd import run_tgtd

from . import report
from .iscsi_perf import PerfError
from .multipath import _Stderr

SECTION = "## Export: nbdcopy over sanpath attach (2 paths) vs qemu-img over libiscsi (1 path)"
IQN = "iqn.2026-11.org.sanpath.bench:export"
RATE = "1gbit"
LUN = 1  # tgtd's LUN 0 is its controller
PATHS = 2
GOAL = 1.9  # 2 paths against 1: the ideal is 2.0; issue 6's 2-path scaling goal (1.9) applied here
PEER = "qemu-img (libiscsi)"
OURS = "nbdcopy (sanpath attach)"
READY = re.compile(r"sanpath attach ready: (\S+) \((\d+) of (\d+) paths active\)")
PY = sys.executable


@dataclass(frozen=True, slots=True)
class Sample:
    round: int  # 0: warm-up, not counted
    client: str  # PEER or OURS
    seconds: float
    mbps: float  # 10^6 bytes of the LUN per second
    rx: tuple[int, ...]  # bytes received by host-s1, host-s2 during the run
    ready_s: float | None = None  # OURS: attach's start until ready (not in ``seconds``)


def _rx(lab: Lab) -> tuple[int, ...]:
    ns = lab.ns("host")
    out = []
    for k in range(1, PATHS + 1):
        data = json.loads(netns.ip(ns, "-j", "-s", "link", "show", "dev", f"host-s{k}"))
        out.append(int(data[0]["stats64"]["rx"]["bytes"]))
    return tuple(out)


def _timed(lab: Lab, argv: Sequence[str], timeout: float) -> float:
    """Run ``argv`` in the host namespace to completion: its wall-clock seconds; PerfError if it fails."""
    start = time.monotonic()
    try:
        proc = lab.exec_in("host", argv, check=False, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PerfError(f"`{shlex.join(argv)}` still running after {timeout:.0f} s") from None
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise PerfError(f"`{shlex.join(argv)}` exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-1500:]}")
    return elapsed


def qemu_img_argv(url: str, size: int) -> list[str]:
    return ["qemu-img", "convert", "-n", "-f", "raw", url, "--target-image-opts", f"driver=null-co,size={size}"]


def attach_argv(lab: Lab, sock: str, control: str) -> list[str]:
    topo = lab.topology
    targets = [topo.controller_address("A", k) for k in range(1, PATHS + 1)]
    sources = [topo.host_address(k) for k in range(1, PATHS + 1)]
    return [PY, "-m", "sanpath", "attach", "--target", ",".join(targets), "--iqn", IQN,
            "--source", ",".join(sources), "--nbd", f"unix:{sock}", "--control", control]


def nbdcopy_argv(uri: str) -> list[str]:
    return ["nbdcopy", uri, "null:"]


def _peer(lab: Lab, size: int, round_no: int, timeout: float) -> Sample:
    url = f"iscsi://{lab.topology.controller_address('A', 1)}:3260/{IQN}/{LUN}"
    before = _rx(lab)
    seconds = _timed(lab, qemu_img_argv(url, size), timeout)
    rx = tuple(b - a for a, b in zip(before, _rx(lab), strict=True))
    return Sample(round_no, PEER, seconds, size / seconds / 1e6, rx)


def _ours(lab: Lab, size: int, round_no: int, timeout: float, workdir: str) -> Sample:
    sock, control = f"{workdir}/nbd-{round_no}.sock", f"{workdir}/attach-{round_no}.sock"
    argv = attach_argv(lab, sock, control)
    started = time.monotonic()
    proc = lab.popen_in("host", argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
    err = _Stderr(proc)
    try:
        assert proc.stdout is not None
        line = ""
        if select.select([proc.stdout], [], [], 60)[0]:
            line = proc.stdout.readline()
        ready_s = time.monotonic() - started
        m = READY.match(line)
        if not m or m.group(2) != m.group(3) or int(m.group(3)) != PATHS:
            raise PerfError(f"sanpath attach not ready on {PATHS} of {PATHS} paths: {line.strip()!r}\n"
                            + "\n".join(err.lines[-30:]))
        before = _rx(lab)
        seconds = _timed(lab, nbdcopy_argv(m.group(1)), timeout)
        rx = tuple(b - a for a, b in zip(before, _rx(lab), strict=True))
    finally:
        terminate(proc, grace=30)
        err.thread.join(timeout=5)
    if proc.returncode != 0:
        raise PerfError(f"sanpath attach exited {proc.returncode} on SIGTERM:\n" + "\n".join(err.lines[-30:]))
    return Sample(round_no, OURS, seconds, size / seconds / 1e6, rx, ready_s)


def measure(backing: str, size: int, rounds: int, warmup: bool, state_dir: str, say: Callable[[str], None],
            failures: dict[str, str]) -> list[Sample]:
    samples: list[Sample] = []
    timeout = size / 20e6 + 120  # far slower than 20 MB/s is a hang, not a figure
    lab = Lab(topology=Topology(subnets=PATHS, controllers=1), state_path=f"{state_dir}/export.json")
    with lab:
        for link in lab.topology.storage_links():
            lab.shape(link.name, RATE)
        portals = [p for _, p in lab.topology.portals()]
        with run_tgtd(backing, iqn=IQN, portals=portals, prefix=lab.prefix("array")) as tgtd:
            say(f"export: tgtd on {', '.join(tgtd.portals)}, every storage link shaped to {RATE}")
            for round_no in [0] * warmup + list(range(1, rounds + 1)):
                label = "warm-up" if round_no == 0 else f"round {round_no}/{rounds}"
                for client, run in ((PEER, lambda r: _peer(lab, size, r, timeout)),
                                    (OURS, lambda r: _ours(lab, size, r, timeout, state_dir))):
                    if client in failures:
                        continue
                    try:
                        s = run(round_no)
                    except (PerfError, SanpathError, OSError, subprocess.SubprocessError) as e:
                        failures[client] = f"{label}: {e}"
                        say(f"export {label} {client}: FAILED ({str(e).splitlines()[0]})")
                        continue
                    samples.append(s)
                    say(f"export {label} {client:24} {s.seconds:6.2f} s {s.mbps:7.1f} MB/s rx "
                        + "/".join(f"{b / 1e6:,.0f}" for b in s.rx) + " MB"
                        + (f" (attach ready in {s.ready_s:.2f} s)" if s.ready_s is not None else ""))
    return samples


# --- the report -------------------------------------------------------------------------------------


def _counted(samples: Sequence[Sample], client: str) -> list[Sample]:
    return [s for s in samples if s.round > 0 and s.client == client]


def render(samples: Sequence[Sample], *, rounds: int, warmup: bool, size: int, env: report.Environment,
           rerun: str, failures: dict[str, str]) -> str:
    peer, ours = _counted(samples, PEER), _counted(samples, OURS)
    med = {c: (statistics.median(s.seconds for s in xs), statistics.median(s.mbps for s in xs)) if xs else None
           for c, xs in ((PEER, peer), (OURS, ours))}
    base = med[PEER][1] if med[PEER] else None
    lines = [SECTION, "",
             f"Lab: 2 storage subnets, controller A only: host-s1/ctlA-s1 and host-s2/ctlA-s2, all four links "
             f"shaped to 1 Gbit/s (tbf, burst 1 ms, both directions), so each path has its own 1 Gbit/s link end "
             f"to end. Target: tgtd in the array namespace on 198.18.1.1:3260 and 198.18.2.1:3260, LUN 1 = a "
             f"{size // 2**20} MiB backing file of random bytes (os.urandom, in the page cache). tgtd for both "
             "clients, not the sanpath target: the array side stays C, so the comparison is about the host "
             "side only. Each round, back to back: (a) qemu-img reads the whole LUN through its iscsi driver "
             "(libiscsi) over one path (subnet 1) into qemu's `null-co` driver, which drops the writes "
             "(`-O raw /dev/null` is refused: \"output file is smaller than input file\"); (b) `sanpath attach` "
             "is started over both paths and, once ready, nbdcopy reads the whole LUN from its NBD export "
             "(unix socket) into `null:`, nbdcopy's own discard sink; attach is stopped after each round. "
             "Both clients keep their defaults otherwise (nbdcopy: up to 4 connections, since the export "
             "offers multi-conn; qemu-img convert: 8 coroutines). Time: the client process's wall "
             "clock, start to exit (attach's start-up is not in it, and is listed below). MB/s: 10^6 bytes "
             f"of LUN per second. {rounds} counted round{'s' * (rounds != 1)}"
             + (" after an uncounted warm-up round" if warmup else "") + "; medians. Clients: "
             + report.package_versions("qemu-utils", "libnbd-bin") + ".", "",
             "Commands (host namespace; N = LUN bytes, IQN = " + f"`{IQN}`):", "",
             f"- (a) `{shlex.join(qemu_img_argv(f'iscsi://198.18.1.1:3260/{IQN}/{LUN}', size))}`",
             "- (b) `sanpath attach --target 198.18.1.1,198.18.2.1 --iqn IQN --source 198.18.1.10,198.18.2.10 "
             "--nbd unix:PATH --control CTL` (run as `python -m sanpath`), then "
             f"`{shlex.join(nbdcopy_argv('nbd+unix:///SCSIID?socket=PATH'))}`", "",
             "| client | paths | seconds | MB/s | ratio | goal |", "|---|---:|---:|---:|---:|---:|"]
    for client, paths in ((PEER, 1), (OURS, PATHS)):
        m = med[client]
        ratio = m[1] / base if m and base else None
        goal = "" if client == PEER or ratio is None else f"≥ {GOAL} {'met' if ratio >= GOAL else '**missed**'}"
        lines.append(f"| {client} | {paths} | {'n/a' if m is None else f'{m[0]:.2f}'} | "
                     f"{'n/a' if m is None else f'{m[1]:,.1f}'} | {'n/a' if ratio is None else f'{ratio:.2f}'} | "
                     f"{goal} |")
    wire = [f"{client}: " + " / ".join(
        f"{statistics.median(s.rx[k] / s.seconds for s in xs) / 1e6:,.1f}" for k in range(PATHS))
        for client, xs in ((PEER, peer), (OURS, ours)) if xs]
    if wire:
        lines += ["", "Received per host NIC during the run, host-s1 / host-s2 (MB/s, medians; bytes as `ip -s "
                  "link` counts them, headers included; each link is shaped to 1 Gbit/s, 125 MB/s): "
                  + "; ".join(wire) + "."]
    lines += ["", f"Ratio: nbdcopy's median MB/s over qemu-img's. Two 1 Gbit/s paths against one: the ideal is "
              f"2.00; the goal ({GOAL}) is issue 6's 2-path scaling goal applied here.", "",
              "Every counted run, in run order (seconds, MB/s, MB received by host-s1 / host-s2 during the run):", ""]
    by_round = {s.round: s for s in peer}
    for s in sorted(peer + ours, key=lambda s: (s.round, s.client != PEER)):
        extra = ""
        if s.client == OURS:
            pair = by_round.get(s.round)
            extra = (f"; attach ready in {s.ready_s:.2f} s" if s.ready_s is not None else "") + (
                f"; this round's ratio {s.mbps / pair.mbps:.2f}" if pair else "")
        lines.append(f"- round {s.round}, {s.client}: {s.seconds:.2f} s, {s.mbps:,.1f} MB/s, rx "
                     + " / ".join(f"{b / 1e6:,.1f}" for b in s.rx) + extra)
    return "\n".join(lines + report.footer(env, rerun, failures))


def run_suite(backing: str, size: int, *, rounds: int, warmup: bool, rerun: str,
              say: Callable[[str], None]) -> tuple[str, bool]:
    """The BENCHMARKS.md section and whether something failed."""
    env = report.Environment.here()
    failures: dict[str, str] = {}
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="sanpath-export-bench-") as state_dir:
        try:
            samples = measure(backing, size, rounds, warmup, state_dir, say, failures)
        except (SanpathError, RuntimeError, OSError, subprocess.SubprocessError) as e:
            failures["lab"] = f"{type(e).__name__}: {e}"
            say(f"export: FAILED ({str(e).splitlines()[0]})")
    return (render(samples, rounds=rounds, warmup=warmup, size=size, env=env, rerun=rerun, failures=failures),
            bool(failures))
