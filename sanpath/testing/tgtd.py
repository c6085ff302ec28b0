"""Running tgtd (the Linux SCSI target framework daemon, Debian package ``tgt``) as a private peer.

``run_tgtd`` owns one throwaway tgtd: its own management channel (``tgtd -C N``, so it never meets a
system tgtd), one portal on 127.0.0.1, one target whose LUN 1 is the given backing file (tgtd keeps
LUN 0 for its controller), every initiator allowed, and optional CHAP accounts. On exit it deletes the
target, stops the daemon and removes the management socket files, also when the body raised.

In the namespace lab, ``portals=`` lists the addresses to listen on instead (the first one on tgtd's
command line, the others added with ``tgtadm --mode portal --op new``) and ``prefix=`` runs the daemon
inside a namespace (``Lab.prefix("array")``). tgtadm still works from here: the management socket is a
file under /var/run/tgtd, which every network namespace shares. Note that tgtd answers SendTargets with
the one portal the discovery session came in on, not with all of them.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

from ..errors import SanpathError

DEFAULT_IQN = "iqn.2026-11.org.sanpath.test:tgtd"
TID = 1  # the one target of this private daemon
LUN = 1  # tgtd's LUN 0 is its own controller (peripheral type 0x0c)
_IPC_DIR = "/var/run/tgtd"  # tgtd's management socket lives at /var/run/tgtd/socket.<control port>


class TgtdError(SanpathError):
    """tgtd or tgtadm failed; the message carries the command and the tail of tgtd's log."""


class TgtdUnavailableError(TgtdError):
    """tgtd cannot run here: it is not installed, or we are not root."""


@dataclass(frozen=True, slots=True)
class ChapAccount:
    user: str
    secret: str


@dataclass(frozen=True, slots=True)
class TgtdChap:
    """CHAP for the target (RFC 7143 §12.1.3).

    ``incoming`` is the account the initiator must prove (one-way CHAP); ``outgoing``, when set, is
    the account the target proves back to the initiator (mutual CHAP).
    """

    incoming: ChapAccount
    outgoing: ChapAccount | None = None


@dataclass(frozen=True, slots=True)
class RunningTgtd:
    iqn: str
    portal: str  # "127.0.0.1:PORT", or the first of ``portals``
    control_port: int  # tgtadm -C N
    backing_file: str
    chap: TgtdChap | None
    process: subprocess.Popen[bytes]
    log_path: str  # tgtd's stdout and stderr
    portals: tuple[str, ...] = ()  # every "ADDR:PORT" tgtd listens on

    def url(self, lun: int = LUN, *, credentials: bool = False) -> str:
        """libiscsi URL of a LUN; with ``credentials`` it carries the one-way CHAP user and secret."""
        auth = ""
        if credentials:
            if self.chap is None:
                raise TgtdError(f"tgtd {self.iqn}: url(credentials=True) but the target has no CHAP account")
            acct = self.chap.incoming
            auth = f"{quote(acct.user, safe='')}%{quote(acct.secret, safe='')}@"
        return f"iscsi://{auth}{self.portal}/{self.iqn}/{lun}"

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def tgtadm(self, *args: str) -> str:
        """Run ``tgtadm -C <control port> --lld iscsi ARGS`` against this daemon; returns stdout."""
        return _tgtadm(self.control_port, self.log_path, *args)


def _tgtadm(control_port: int, log_path: str, *args: str, check: bool = True, timeout: float = 30.0) -> str:
    cmd = ["tgtadm", "-C", str(control_port), "--lld", "iscsi", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise TgtdError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"
                        f"{_log_tail(log_path)}")
    return proc.stdout


def _log_tail(log_path: str, limit: int = 1500) -> str:
    try:
        with open(log_path, errors="replace") as f:
            text = f.read()[-limit:]
    except OSError:
        return ""
    return f"\n--- tgtd log (tail) ---\n{text}" if text else ""


def _check_can_run() -> None:
    missing = [c for c in ("tgtd", "tgtadm") if shutil.which(c) is None]
    if missing:
        raise TgtdUnavailableError(f"{', '.join(missing)} not found: install the Debian package tgt "
                                   "(apt-get install tgt, or ./run test as root)")
    if os.geteuid() != 0:
        raise TgtdUnavailableError("tgtd needs root (it creates /var/run/tgtd and raises its limits); "
                                   "run as root or skip the tgtd peer")


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick; it may be taken again later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _control_socket_paths(control_port: int) -> tuple[str, str]:
    base = os.path.join(_IPC_DIR, f"socket.{control_port}")
    return base, base + ".lock"


def _pick_control_port() -> int:
    """A management port no other tgtd uses: its socket files do not exist (tgtd never removes them)."""
    for _ in range(100):
        n = random.randrange(10000, 32768)  # tgtd -C accepts at most 32767
        if not any(os.path.exists(p) for p in _control_socket_paths(n)):
            return n
    raise TgtdError(f"no free tgtd control port: /var/run/tgtd/socket.* exist for 100 random picks in {_IPC_DIR}")


def _wait_for(what: str, ready: Iterator[bool], proc: subprocess.Popen[bytes], log_path: str,
              timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for ok in ready:
        if ok:
            return
        if proc.poll() is not None:
            raise TgtdError(f"tgtd exited {proc.returncode} while waiting for {what}{_log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise TgtdError(f"tgtd: no {what} after {timeout:.0f}s{_log_tail(log_path)}")
        time.sleep(0.05)


def _management_answers(control_port: int) -> Iterator[bool]:
    cmd = ["tgtadm", "-C", str(control_port), "--mode", "system", "--op", "show"]
    while True:
        yield subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30).returncode == 0


def _portals_accept(portals: Sequence[str]) -> Iterator[bool]:
    """Each portal takes a TCP connection (only from where the portals are reachable: no namespace)."""
    while True:
        try:
            for portal in portals:
                host, port = portal.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=1.0):
                    pass
            yield True
        except OSError:
            yield False


def _portals_listed(control_port: int, portals: Sequence[str]) -> Iterator[bool]:
    """tgtd lists each portal as listening (``tgtadm --mode portal --op show``): the check used when tgtd
    runs in another network namespace, where this process cannot connect."""
    cmd = ["tgtadm", "-C", str(control_port), "--lld", "iscsi", "--mode", "portal", "--op", "show"]
    while True:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30).stdout
        listed = {line.split()[-1].rsplit(",", 1)[0] for line in out.splitlines() if line.startswith("Portal:")}
        yield all(p in listed for p in portals)


def _configure(control_port: int, log_path: str, iqn: str, backing_file: str, chap: TgtdChap | None) -> None:
    def adm(*args: str) -> None:
        _tgtadm(control_port, log_path, *args)

    adm("--mode", "target", "--op", "new", "--tid", str(TID), "--targetname", iqn)
    adm("--mode", "logicalunit", "--op", "new", "--tid", str(TID), "--lun", str(LUN),
        "--backing-store", backing_file)
    adm("--mode", "target", "--op", "bind", "--tid", str(TID), "--initiator-address", "ALL")
    if chap is not None:
        adm("--mode", "account", "--op", "new", "--user", chap.incoming.user, "--password", chap.incoming.secret)
        adm("--mode", "account", "--op", "bind", "--tid", str(TID), "--user", chap.incoming.user)
        if chap.outgoing is not None:
            adm("--mode", "account", "--op", "new", "--user", chap.outgoing.user,
                "--password", chap.outgoing.secret)
            adm("--mode", "account", "--op", "bind", "--tid", str(TID), "--user", chap.outgoing.user,
                "--outgoing")


def _stop(proc: subprocess.Popen[bytes], control_port: int, log_path: str) -> None:
    """Delete the target (dropping any session), ask tgtd to exit, then escalate to signals."""
    if proc.poll() is None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _tgtadm(control_port, log_path, "--mode", "target", "--op", "delete", "--force",
                    "--tid", str(TID), check=False, timeout=5)
            # tgtd ignores SIGTERM; "system delete" is its own shutdown request
            _tgtadm(control_port, log_path, "--mode", "system", "--op", "delete", check=False, timeout=5)
    for sig in (None, signal.SIGKILL):
        if sig is not None and proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


class TgtdPortalBusyError(TgtdError):
    """tgtd started but could not listen on the portal (tgtd logs it and keeps running)."""


@contextmanager
def _daemon(backing_file: str, portals: Sequence[str], iqn: str, chap: TgtdChap | None,
            timeout: float, prefix: Sequence[str] = ()) -> Iterator[RunningTgtd]:
    control_port = _pick_control_port()
    ipc_dir_existed = os.path.isdir(_IPC_DIR)
    fd, log_path = tempfile.mkstemp(prefix="sanpath-tgtd-", suffix=".log")
    proc: subprocess.Popen[bytes] | None = None
    try:
        # the log is a file, never a pipe: a chatty tgtd must not block on a full pipe
        # ``ip netns exec`` (the prefix) execs tgtd, so ``proc`` is tgtd itself and signals reach it
        proc = subprocess.Popen([*prefix, "tgtd", "-f", "-C", str(control_port), "--iscsi", f"portal={portals[0]}"],
                                stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True)
        _wait_for("management channel", _management_answers(control_port), proc, log_path, timeout)
        # tgtd binds its portal before it opens the management channel, so a failure is logged by now
        if "failed to create/bind to portal" in _log_tail(log_path, limit=100_000):
            raise TgtdPortalBusyError(f"tgtd could not listen on {portals[0]}{_log_tail(log_path)}")
        for portal in portals[1:]:
            _tgtadm(control_port, log_path, "--mode", "portal", "--op", "new", "--param", f"portal={portal}")
        _configure(control_port, log_path, iqn, backing_file, chap)
        ready = _portals_listed(control_port, portals) if prefix else _portals_accept(portals)
        _wait_for(f"listeners on {', '.join(portals)}", ready, proc, log_path, timeout)
        yield RunningTgtd(iqn, portals[0], control_port, backing_file, chap, proc, log_path, tuple(portals))
    finally:
        try:
            if proc is not None:
                _stop(proc, control_port, log_path)
        finally:
            for path in _control_socket_paths(control_port):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            if not ipc_dir_existed:
                with contextlib.suppress(OSError):
                    os.rmdir(_IPC_DIR)  # only if empty: another tgtd may have arrived meanwhile
            os.close(fd)
            os.unlink(log_path)


@contextmanager
def run_tgtd(backing_file: str, *, port: int = 0, iqn: str = DEFAULT_IQN, chap: TgtdChap | None = None,
             timeout: float = 15.0, portals: Sequence[str] = (), prefix: Sequence[str] = (),
             ) -> Iterator[RunningTgtd]:
    """Start a private tgtd serving ``backing_file`` as LUN 1 of ``iqn`` on 127.0.0.1:``port``.

    ``port=0`` picks a free loopback port (and picks again if another process takes it first).
    ``portals`` ("ADDR:PORT", e.g. a lab controller's addresses) replaces the loopback portal, and
    ``prefix`` (e.g. ``Lab.prefix("array")``) runs tgtd inside a network namespace.
    Raises TgtdUnavailableError when tgtd cannot run here (not installed, not root) and TgtdError
    when it fails to start, to listen, or to take the configuration.
    """
    _check_can_run()
    backing_file = os.path.abspath(backing_file)
    if not os.path.exists(backing_file):
        raise TgtdError(f"tgtd {iqn}: backing file {backing_file} does not exist")
    if port and portals:
        raise TgtdError(f"tgtd {iqn}: give port= (a loopback portal) or portals=, not both")
    for attempt in range(1, 4):
        with contextlib.ExitStack() as stack:
            listen = list(portals) or [f"127.0.0.1:{port or free_loopback_port()}"]
            try:
                running = stack.enter_context(_daemon(backing_file, listen, iqn, chap, timeout, prefix))
            except TgtdPortalBusyError:
                if port or portals or attempt == 3:
                    raise
                continue
            yield running
            return
