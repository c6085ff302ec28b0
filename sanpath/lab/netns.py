"""Thin, typed wrappers over iproute2's ``ip`` and ``tc``, and the ledger of what the lab created.

Every function runs one command and raises ``NetnsError`` naming the command and the kernel's answer
when it fails. Objects are created through a ``Ledger``, which records each object *before* creating it
(a crash part-way leaves a record of a superset, never a leak) and tears down exactly what it recorded,
in reverse order, tolerating objects that are already gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SanpathError

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_GONE = ("Cannot find device", "No such file or directory", "does not exist", "Cannot open network namespace",
         "Invalid argument")


class NetnsError(SanpathError):
    """An ``ip``/``tc`` command failed, or the lab cannot run here (not root, iproute2 missing)."""


def require_root() -> None:
    """Raise ``NetnsError`` unless we can create namespaces (root) and iproute2 is installed."""
    if os.geteuid() != 0:
        raise NetnsError("the lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces); "
                         "run it as root, e.g. with sudo")
    missing = [c for c in ("ip", "tc") if shutil.which(c) is None]
    if missing:
        raise NetnsError(f"{', '.join(missing)} not found: the lab needs iproute2 (apt-get install iproute2)")


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one iproute2 command; on failure raise ``NetnsError`` with the command line and stderr."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise NetnsError(f"{argv[0]} not found: the lab needs iproute2 (apt-get install iproute2)") from None
    if check and proc.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc


def ip(ns: str | None, *args: str, check: bool = True) -> str:
    """``ip [-n NS] ARGS`` -> stdout."""
    return run(["ip", *(["-n", ns] if ns else []), *args], check=check).stdout


def tc(ns: str | None, *args: str, check: bool = True) -> str:
    """``tc [-n NS] ARGS`` -> stdout."""
    return run(["tc", *(["-n", ns] if ns else []), *args], check=check).stdout


# --- namespaces ---------------------------------------------------------------------------------------


def list_netns() -> list[str]:
    return [line.split()[0] for line in ip(None, "netns", "list").splitlines() if line.strip()]


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def netns_pids(name: str) -> list[int]:
    """Processes running inside namespace ``name`` (empty when it is gone)."""
    proc = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside namespace ``ns`` (``ip netns exec`` setns()es, then execs)."""
    return ["ip", "netns", "exec", ns, *argv]


def sysctl(ns: str, settings: dict[str, str | int]) -> None:
    """Set net.* sysctls inside ``ns`` (they are per namespace) by writing /proc/sys from a shell in it,
    so that nothing beyond iproute2 and sh is needed."""
    script = 'while [ $# -gt 0 ]; do echo "$2" > "/proc/sys/$1" || exit 1; shift 2; done'
    args = [a for key, value in settings.items() for a in (key.replace(".", "/"), str(value))]
    run(exec_argv(ns, ["sh", "-c", script, "sysctl", *args]))


# --- links --------------------------------------------------------------------------------------------


def link_show(ns: str, dev: str) -> dict[str, Any]:
    """``ip -j link show`` of one device: ifname, flags, operstate, master, qdisc ..."""
    data: list[dict[str, Any]] = json.loads(ip(ns, "-j", "link", "show", "dev", dev))
    return data[0]


def links(ns: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(ip(ns, "-j", "link", "show") or "[]")
    return data


def set_link(ns: str, dev: str, state: str) -> None:
    """``ip link set DEV up|down`` inside ``ns``."""
    if state not in ("up", "down"):
        raise ValueError(f"link state must be up or down, not {state!r}")
    ip(ns, "link", "set", "dev", dev, state)


def add_address(ns: str, dev: str, cidr: str) -> None:
    ip(ns, "address", "add", cidr, "dev", dev)


def set_master(ns: str, dev: str, bridge: str) -> None:
    ip(ns, "link", "set", "dev", dev, "master", bridge)


# --- shaping ------------------------------------------------------------------------------------------


def tbf_replace(ns: str, dev: str, rate: str, burst: str, latency: str) -> None:
    """A token-bucket filter as the root qdisc of ``dev``'s egress: at most ``rate``, bursts of ``burst``,
    packets queued no longer than ``latency`` (then dropped, like a switch's buffer overflowing)."""
    tc(ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", burst, "latency", latency)


def qdisc_del(ns: str, dev: str) -> None:
    """Remove ``dev``'s root qdisc (back to the default); no error when there is none to remove."""
    proc = run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)
    if proc.returncode != 0 and "No such file" not in proc.stderr and "Cannot find" not in proc.stderr \
            and "Cannot delete qdisc with handle of zero" not in proc.stderr:
        raise NetnsError(f"`tc -n {ns} qdisc del dev {dev} root` failed: {proc.stderr.strip()}")


def qdiscs(ns: str, dev: str) -> list[dict[str, Any]]:
    """``tc -s -j qdisc show dev DEV``: kind, options (a tbf's ``rate`` is in bytes per second), counters."""
    data: list[dict[str, Any]] = json.loads(tc(ns, "-s", "-j", "qdisc", "show", "dev", dev) or "[]")
    return data


# --- sockets inside a namespace -----------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def socket_in(ns: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in namespace ``ns``, created by a short-lived thread that setns()es there.

    A network namespace belongs to a thread, and a socket to the namespace it was made in, so the
    socket works in ns from any thread afterwards while this process stays where it is. Lets tests run
    an initiator or a bulk transfer in-process across the lab.
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    libc = _libc
    result: list[socket.socket | BaseException] = []

    def work() -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(family, type))
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=work, name=f"setns-{ns}", daemon=True)
    t.start()
    t.join()
    got = result[0]
    if isinstance(got, BaseException):
        raise NetnsError(f"cannot open a socket in namespace {ns}: {got}") from got
    return got


# --- the ledger ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Created:
    """One object the lab made: a namespace (``ns`` empty), or an interface inside namespace ``ns``."""

    kind: str  # "netns", "veth", "bridge"
    name: str
    ns: str = ""
    peer: str = ""  # veth: the other end's name
    peer_ns: str = ""  # veth: the other end's namespace

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Created:
        return cls(**data)


class Ledger:
    """Creates namespaces, veth pairs and bridges, recording each first; ``teardown`` undoes them all."""

    def __init__(self, entries: Iterable[Created] = (), on_change: Callable[[], None] | None = None) -> None:
        self.entries: list[Created] = list(entries)
        self._on_change = on_change

    def _record(self, entry: Created) -> None:
        self.entries.append(entry)
        if self._on_change is not None:
            self._on_change()

    def add_netns(self, name: str) -> None:
        if netns_exists(name):
            raise NetnsError(f"network namespace {name} already exists; is another lab using its name? "
                             f"(`ip netns del {name}` if it is a leftover)")
        self._record(Created("netns", name))
        ip(None, "netns", "add", name)
        ip(name, "link", "set", "dev", "lo", "up")
        # IPv4 only: no router solicitations, MLD or DAD chatter on the lab's links and in captures
        sysctl(name, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})

    def add_veth(self, name: str, ns: str, peer: str, peer_ns: str) -> None:
        """A veth pair created directly in its two namespaces (never visible in the root namespace)."""
        self._record(Created("veth", name, ns, peer, peer_ns))
        ip(None, "link", "add", name, "netns", ns, "type", "veth", "peer", "name", peer, "netns", peer_ns)

    def add_bridge(self, name: str, ns: str) -> None:
        """A bridge (a layer-2 switch; no STP, so ports forward as soon as they have carrier)."""
        self._record(Created("bridge", name, ns))
        ip(ns, "link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        ip(ns, "link", "set", "dev", name, "up")

    def namespaces(self) -> list[str]:
        return [e.name for e in self.entries if e.kind == "netns"]

    def teardown(self, grace: float = 3.0) -> list[str]:
        """Undo every recorded object, newest first. Processes still inside a lab namespace (a target,
        an initiator the lab started) get SIGTERM, then SIGKILL after ``grace`` seconds, so that no
        namespace outlives its name. Returns the problems met (empty: everything is gone)."""
        problems: list[str] = []
        for entry in reversed(self.entries):
            try:
                if entry.kind == "netns":
                    _stop_processes(entry.name, grace)
                    if netns_exists(entry.name):
                        ip(None, "netns", "del", entry.name)
                elif netns_exists(entry.ns):
                    proc = run(["ip", "-n", entry.ns, "link", "del", "dev", entry.name], check=False)
                    if proc.returncode != 0 and not any(g in proc.stderr for g in _GONE):
                        problems.append(f"{entry.kind} {entry.name} in {entry.ns}: {proc.stderr.strip()}")
            except NetnsError as e:
                problems.append(str(e))
        for name in self.namespaces():
            if netns_exists(name):
                problems.append(f"namespace {name} is still there")
        self.entries.clear()
        if self._on_change is not None:
            self._on_change()
        return problems


def _stop_processes(ns: str, grace: float) -> None:
    pids = [p for p in netns_pids(ns) if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 1.0)
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = [p for p in pids if _alive(p)]
        if not pids:
            return


def _alive(pid: int) -> bool:
    try:
        # reap it if it is our own child, else ask whether it still exists
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
