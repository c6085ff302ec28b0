"""The benchmarks' private loopback: a network namespace of the run's own, with the congestion control
asked for, leaving the machine's setting alone. Needs root: skips locally without it, fails under CI=true."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.loopback import LoopbackError, available, congestion_control, private_loopback
from tests.helpers.gates import require_lab

ROOT = Path(__file__).resolve().parents[2]

# In a child process (the namespace cannot be left again): the algorithm in effect, then one TCP
# connection over the new loopback, which must work.
_CHILD = """
import socket, sys
from benchmarks.loopback import congestion_control, private_loopback
private_loopback(sys.argv[1])
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname(), timeout=5)
peer, _ = server.accept()
client.sendall(b"ping")
print(congestion_control(), client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\\0").decode(),
      peer.recv(4).decode())
"""


def _other_algorithm() -> str:
    """One the machine does not use, so that the switch shows (reno is always built in)."""
    others = [a for a in available() if a != congestion_control()]
    return others[0] if others else congestion_control()


def test_the_namespace_gets_the_algorithm_and_the_machine_keeps_its_own() -> None:
    require_lab()
    before = congestion_control()
    algorithm = _other_algorithm()
    out = subprocess.run([sys.executable, "-c", _CHILD, algorithm], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [algorithm, algorithm, "ping"]
    assert congestion_control() == before


def test_an_unknown_algorithm_is_refused_before_anything_changes() -> None:
    before = congestion_control()
    with pytest.raises(LoopbackError, match="'no-such-cc' is not available here"):
        private_loopback("no-such-cc")
    assert congestion_control() == before
