"""`sanpath demo` (the README's first command) passes: nothing lost, failover and failback seen."""

from __future__ import annotations

import subprocess
import sys


def test_demo_passes() -> None:
    proc = subprocess.run([sys.executable, "-m", "sanpath", "demo", "--seconds", "6"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASS: nothing lost" in proc.stdout
    assert "failover seen, failback seen" in proc.stdout
    assert "0 errors, 0 verify failures" in proc.stdout
