"""`sanpath demo` (what the README's first command, `./run demo`, runs) passes: the guide's steps are
narrated through a real daemon, nothing is lost, the failover and the failback are seen as alerts; and
`--serve` keeps the console up until Ctrl-C, then stops everything it started."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx

from sanpath.target.spawn import lines_until

STEPS = ("1. Multipathing is changed in maintenance mode only", "2. Discover IQNs", "3. Discover LUNs",
         "4. Create the SR", "5. Verified random I/O", "6. Black-hole portal", "7. Restore portal")


def test_demo_passes() -> None:
    proc = subprocess.run([sys.executable, "-m", "sanpath", "demo", "--seconds", "6"], capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    positions = [out.index(step) for step in STEPS]
    assert positions == sorted(positions), "the steps in the guide's order"
    assert "demo-host: 2 of 2 paths active (2 iSCSI sessions)" in out
    assert re.search(r"after \d+ ms: host demo-host: .*: 1 of 2 paths active", out)
    assert re.search(r"after \d+ ms: host demo-host: .*: recovered, 2 of 2 paths active", out)
    assert "PASS: nothing lost" in out
    assert "failover seen, failback seen" in out
    assert "0 errors, 0 verify failures" in out


def test_demo_serve_keeps_the_console_up_until_interrupted() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "sanpath", "demo", "--seconds", "4", "--serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
    assert proc.stdout is not None
    try:
        url = ""
        for line in lines_until(proc.stdout.fileno(), deadline=time.monotonic() + 120):
            if m := re.match(r"serving: the console is (\S+);", line):
                url = m.group(1)
                break
        assert url.startswith("http://127.0.0.1:"), url
        page = httpx.get(url, follow_redirects=True, timeout=10)
        assert page.status_code == 200 and "demo SR" in page.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
