"""``sanpath demo --lab`` (root): the demo on the namespace lab, with a real cable pull.

Two processes, one per side of the wire:

- this one (the *driver*, in the root namespace) builds the lab (two storage subnets, controllers A and
  B), runs ``sanpath target serve`` in the array namespace with a portal on each controller address of
  each subnet (four portals), starts the host side in the host namespace, pulls the cable when the host
  side asks for it and plugs it back in, and always tears the lab down (errors, Ctrl-C and SIGTERM too);
- the *host side* (``sanpath demo --lab-host``, in the host namespace) is the whole system demo
  (``sanpath.workload.demo``: a host daemon on a SQLite store, the console, the guide's steps through
  the daemon's API, verified I/O through the SR's NBD export); each storage NIC reaches the portals of
  its own subnet, and the fault is a ``Cable`` that asks the driver to pull the cable.

They talk over the host side's stdin and stdout: a stdout line starting with ``PROTOCOL`` is a request
(``pull``, ``restore``) that the driver answers with one stdin line (``ok`` or ``error MESSAGE``), or the
``summary`` marker, after which the driver holds the host side's output back and prints it last, after
the teardown. Every other line is live output, which the driver passes through as it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import IO

from ..errors import ConfigError, SanpathError
from ..lab import Lab, Topology
from ..lab.topology import HOST, MANAGEMENT_SUBNET
from ..target.spawn import serve_target
from .demo import IQN, ArrayUnderTest, run_system_demo, summary

PROTOCOL = "@@sanpath-demo-lab "
SUBNETS = 2
CONTROLLERS = 2
HANG_GUARD = 120.0  # seconds beyond the load's before the driver gives up on the host side
STOP_GRACE = 30.0  # seconds for a stopped host side to unplug its PBD and stop its daemon before it is killed


# --- the host side (in the host namespace) ---------------------------------------------------------


class Cable:
    """A fault the host side cannot make itself: the driver, owner of the lab, pulls the cable (its
    switch port goes down) and plugs it back in."""

    def __init__(self, cable: str) -> None:
        self.cable, self.name = cable, f"cable {cable}"
        self._answers: asyncio.StreamReader | None = None  # the driver's, on stdin

    def describe(self) -> str:
        return f"Pull cable {self.cable} (its switch port goes down: no RST, no FIN; only liveness can tell)"

    async def inject(self) -> None:
        await self._request("pull")

    async def restore(self) -> None:
        await self._request("restore")

    async def _request(self, op: str) -> None:
        # A stream, not a blocking readline in a thread: a request cancelled while it waits (SIGTERM) must
        # leave no thread behind that the event loop's shutdown would wait for.
        if self._answers is None:
            self._answers = reader = asyncio.StreamReader()
            await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                               sys.stdin)
        print(PROTOCOL + op, flush=True)
        answer = (await self._answers.readline()).decode().strip()
        if answer != "ok":
            raise SanpathError(f"the lab could not {op} cable {self.cable}: {answer or 'no answer'}")


async def run_lab_host(*, targets: str, cable: str, seconds: float, out: Callable[[str], None]) -> int:
    """The host side: the whole system demo (a host daemon on a SQLite store, the console, the guide's
    steps) against the lab's array at ``targets``, the fault being ``cable`` pulled by the driver.
    Prints the summary after the protocol's summary marker; returns the exit status (0 only if nothing
    was lost)."""
    result = await run_system_demo(seconds=seconds, array=ArrayUnderTest(targets.split(","), Cable(cable)),
                                   out=out)
    out(PROTOCOL + "summary")
    out(summary(result))
    return 0 if result.ok else 1


# --- the driver (in the root namespace) ------------------------------------------------------------


def check_cable(cable: str) -> None:
    """Refuse a cable the lab does not have, or one that carries no storage path (host-mgmt)."""
    link = Topology(SUBNETS, CONTROLLERS).link(cable)
    if link.subnet == MANAGEMENT_SUBNET:
        raise ConfigError("--cable", f"{cable} is the management network; pull a storage cable "
                                     "(host-s1, host-s2, ctlA-s1, ctlB-s2, ...)")


def run_lab_demo(*, seconds: float, cable: str, size: str = "256MiB",
                 out: Callable[[str], None] = print) -> int:
    """Build the lab, run the demo across it with a real cable pull, tear the lab down. Returns the exit
    status: 0 only if the host side saw nothing lost and the lab came down cleanly. Raises NetnsError
    when the lab cannot be built (not root, no iproute2)."""
    check_cable(cable)
    lab = Lab(topology=Topology(SUBNETS, CONTROLLERS))
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    held: list[str] = []
    code = 1
    try:
        out(f"lab {lab.name}: building the reference topology ({SUBNETS} storage subnets, controllers "
            f"{' and '.join(lab.topology.controller_names)})")
        lab.up()
        topo = lab.topology
        portals = [p for _, p in topo.portals()]
        nics = ", ".join(topo.host_address(k) for k in range(1, SUBNETS + 1))
        args = ["--iqn", IQN, *(a for p in portals for a in ("--portal", p)), "--lun", f"mem:{size}"]
        with serve_target(*args, prefix=lab.prefix("array")) as target:
            out(f"array ({lab.ns('array')}): {IQN}, {size} LUN, portals {', '.join(target.portals)}")
            out(f"host ({lab.ns(HOST)}): storage NICs {nics}")
            # discovery on controller A of each subnet (SendTargets names all four portals)
            targets = ",".join(topo.controller_address("A", k) for k in range(1, SUBNETS + 1))
            argv = [sys.executable, "-m", "sanpath", "demo", "--lab-host", "--seconds", f"{seconds:g}",
                    "--target", targets, "--cable", cable]
            host = lab.popen_in(HOST, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                code = _drive(host, lab, cable, seconds, out, held)
            finally:
                _stop(host)
    finally:
        pulled = bool(lab.pulled)
        try:
            lab.down()
            out(f"\nlab {lab.name}: torn down{' (the cable was still pulled)' if pulled else ''}")
        except SanpathError as e:
            out(f"\nlab {lab.name}: teardown failed: {e}")
            code = 1
        finally:
            signal.signal(signal.SIGTERM, previous)
    for line in held:
        out(line)
    if not held:
        out("\nFAIL: the host side ended without a summary")
        code = 1
    return code


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop processes and the lab


def _drive(host: subprocess.Popen[str], lab: Lab, cable: str, seconds: float, out: Callable[[str], None],
           held: list[str]) -> int:
    """Pass the host side's output through, act on its requests; returns its exit status. A host side
    that hangs is killed after the load's time plus HANG_GUARD."""
    assert host.stdout is not None and host.stdin is not None
    guard = threading.Timer(seconds + HANG_GUARD, host.kill)
    guard.daemon = True
    guard.start()
    try:
        for raw in host.stdout:
            line = raw.rstrip("\n")
            if held:
                held.append(line)
            elif line == PROTOCOL + "summary":
                held.append("")  # from here on, held back until the lab is down
            elif line.startswith(PROTOCOL):
                _reply(host.stdin, _act(lab, cable, line[len(PROTOCOL):], out))
            else:
                out(line)
        code = host.wait()
    finally:
        guard.cancel()
    if held:
        held.pop(0)
    if code != 0 and not held:
        out(f"the host side exited with status {code}")
    return code


def _act(lab: Lab, cable: str, op: str, out: Callable[[str], None]) -> str:
    link = lab.link(cable)
    try:
        if op == "pull":
            lab.pull(cable)
            out(f">>> lab: `ip link set {link.port} down` in {lab.ns(link.switch)}: {cable} has no carrier")
        elif op == "restore":
            lab.restore(cable)
            out(f">>> lab: {cable} plugged back in")
        else:
            return f"error unknown request {op!r}"
    except SanpathError as e:
        return f"error {e}"
    return "ok"


def _reply(stdin: IO[str], answer: str) -> None:
    with contextlib.suppress(BrokenPipeError):
        stdin.write(answer + "\n")
        stdin.flush()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
