"""The loopback the target and initiator suites run over, and the TCP congestion control on it.

Every byte of those suites crosses loopback, where the round-trip time is a few microseconds. BBR sizes a
sender's congestion window from the round-trip time, so on loopback the window stays at a few dozen
segments (12 to 44 of 64 KiB on tgtd's socket, `ss -ti`, 2026-11-25) and the target's Data-In leaves as
the client's ACKs come back. On this machine, whose default is BBR, both clients ran about 30% slower
than with Linux's usual CUBIC (figures in BENCHMARKS.md). ``--congestion-control`` runs the benchmark in
a network namespace of its own, whose loopback uses the algorithm asked for; the machine's setting is not
touched, and the namespace goes when the benchmark exits.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

from sanpath.lab import NetnsError, netns

_CLONE_NEWNET = 0x40000000  # <sched.h>
_CC = Path("/proc/sys/net/ipv4/tcp_congestion_control")  # of the reading process's network namespace
_AVAILABLE = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")


class LoopbackError(Exception):
    """A private loopback with the asked-for congestion control cannot be had here."""


def congestion_control() -> str:
    """The TCP congestion control new connections of this process's network namespace get."""
    try:
        return _CC.read_text().strip()
    except OSError:
        return "unknown"


def available() -> list[str]:
    """The TCP congestion controls the kernel has loaded."""
    return _AVAILABLE.read_text().split() if _AVAILABLE.exists() else []


def private_loopback(algorithm: str) -> None:
    """Move this process (and every process it starts from now on) into a new network namespace with
    only loopback, up, and ``algorithm`` as its TCP congestion control."""
    if algorithm not in available():
        raise LoopbackError(f"TCP congestion control {algorithm!r} is not available here (available: "
                            f"{' '.join(available()) or 'none listed'}); load its module (modprobe tcp_{algorithm}) "
                            "or choose another")
    if os.geteuid() != 0:
        raise LoopbackError("--congestion-control needs root, to create a network namespace")
    if threading.active_count() > 1:  # unshare moves only the calling thread
        raise LoopbackError("the private loopback must be set up before any thread starts")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        raise LoopbackError(f"unshare(CLONE_NEWNET) failed: {os.strerror(ctypes.get_errno())}")
    try:
        netns.ip(None, "link", "set", "lo", "up")
    except NetnsError as e:
        raise LoopbackError(f"in the new namespace: {e}") from None
    _CC.write_text(algorithm)
