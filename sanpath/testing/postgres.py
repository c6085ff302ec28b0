"""A throwaway PostgreSQL server for tests, from Debian's ``postgresql`` package.

``PostgresCluster`` owns one private cluster: a temporary directory (the data directory, the server log
and the unix socket), ``initdb`` into it, and a server started with ``pg_ctl`` that listens on that
directory's unix socket only (``listen_addresses=''``: never TCP) and trades durability for speed
(fsync, synchronous_commit and full_page_writes off). As root, the directory belongs to the ``postgres``
user and initdb, pg_ctl and the server run as that user (the server refuses to run as root). On exit it
stops the server (``pg_ctl stop -m immediate``, then SIGKILL for anything left) and removes the whole
directory, also when the body raised.

``unavailable_reason`` says why the server cannot run here (None when it can); the tests' gate
(``require_postgres`` in tests/helpers) skips or fails on it. Nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from urllib.parse import quote

from ..errors import SanpathError

SUPERUSER = "postgres"  # the role initdb creates (-U) and the OS user the server runs as under root
PORT = 5432  # only names the socket file (.s.PGSQL.5432): there is no TCP listener
START_TIMEOUT = 30.0
_COMMAND_TIMEOUT = 60.0
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL
_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres", "psql")


class PostgresError(SanpathError):
    """The throwaway PostgreSQL server failed; the message carries the command and the server log tail."""


class PostgresUnavailableError(PostgresError):
    """PostgreSQL cannot run here: a binary is missing, or we are root and there is no ``postgres`` user."""


def _version_key(bin_dir: str) -> tuple[int, ...]:
    version = os.path.basename(os.path.dirname(bin_dir))  # /usr/lib/postgresql/<version>/bin
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def find_bin(name: str) -> str | None:
    """The PostgreSQL binary ``name`` (initdb, pg_ctl, postgres, psql): from PATH, else from the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps the server binaries off PATH)."""
    found = shutil.which(name)
    if found is not None:
        return found
    for bin_dir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        path = os.path.join(bin_dir, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def unavailable_reason() -> str | None:
    """Why the throwaway server cannot run here (a binary or the ``postgres`` user missing), or None."""
    missing = [name for name in _SERVER_BINARIES if find_bin(name) is None]
    if missing:
        return f"PostgreSQL missing: {', '.join(missing)} (Debian package postgresql); ./run test installs it"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return (f"running as root but there is no {SUPERUSER!r} user to run the server as "
                    "(Debian package postgresql creates it); ./run test installs it")
    return None


def _clean_env() -> dict[str, str]:
    """Our environment without PG* (PGHOST, PGPORT, PGDATA... would redirect the tools) and with the C locale."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PG", "LC_")) and k not in ("LANG", "LANGUAGE")}
    env["LC_ALL"] = "C"
    return env


def _process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()[0]  # the command name may contain spaces and parentheses


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphaned postmaster is reaped by PID 1, if at all)."""
    return _process_state(pid) not in (None, "Z", "X")


def processes_in(directory: str) -> list[int]:
    """Live processes whose working directory is ``directory`` or below it (every server process
    chdirs into its data directory), found through /proc/PID/cwd."""
    root = os.path.realpath(directory)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        cwd = cwd.removesuffix(" (deleted)")
        if (cwd == root or cwd.startswith(root + os.sep)) and process_alive(int(entry)):
            pids.append(int(entry))
    return pids


def _reachable_by(path: str, uid: int, gid: int) -> str | None:
    """The first ancestor of ``path`` that user ``uid`` cannot search (by mode bits), or None."""
    current = os.path.realpath(path)
    while True:
        st = os.stat(current)
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


class PostgresCluster:
    """One private PostgreSQL server; use it as a context manager (or call ``start`` and ``stop``).

    ``base_dir`` is where the temporary directory goes (default: the system temp directory). As root it
    must be searchable by the ``postgres`` user, so pytest's ``tmp_path`` (mode 0700) does not do.
    """

    def __init__(self, *, base_dir: str | None = None, start_timeout: float = START_TIMEOUT) -> None:
        self.base_dir = base_dir
        self.start_timeout = start_timeout
        self.dir = ""  # the temporary directory; empty until started
        self._initdb = ""
        self._pg_ctl = ""
        self._psql = ""
        self._run_as: tuple[int, int] | None = None  # (uid, gid) of postgres when we are root
        self.startup_seconds = 0.0  # initdb and pg_ctl start, for the curious

    # --- where things are --------------------------------------------------------------------------

    @property
    def socket_dir(self) -> str:
        """The unix socket directory: the host to connect to (``.s.PGSQL.5432`` lives in it)."""
        return self.dir

    @property
    def data_dir(self) -> str:
        return os.path.join(self.dir, "data")

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "server.log")

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, or None when the server is not running."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of a database: ``postgresql+asyncpg://postgres@/DBNAME?host=SOCKETDIR``."""
        return (f"postgresql+asyncpg://{SUPERUSER}@/{quote(dbname, safe='')}"
                f"?host={quote(self.socket_dir, safe='/')}")

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _log_tail(self, limit: int = 2000) -> str:
        text = self.log()[-limit:]
        return f"\n--- postgres log (tail) ---\n{text}" if text else ""

    # --- running the tools ----------------------------------------------------------------------------

    def _run(self, cmd: list[str], *, as_server: bool, timeout: float = _COMMAND_TIMEOUT,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a tool; with ``as_server`` as the postgres user when we are root (never through sudo)."""
        uid: int | None = None
        gid: int | None = None
        extra_groups: list[int] | None = None
        if as_server and self._run_as is not None:
            (uid, gid), extra_groups = self._run_as, []  # setgroups([]): drop root's supplementary groups
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                                  cwd=self.dir, env=_clean_env(), user=uid, group=gid, extra_groups=extra_groups)
        except subprocess.TimeoutExpired as e:
            raise PostgresError(f"{shlex.join(cmd)} gave no answer in {timeout:.0f}s{self._log_tail()}") from e
        if check and proc.returncode != 0:
            raise PostgresError(f"{shlex.join(cmd)} exited {proc.returncode}: "
                                f"{proc.stderr.strip() or proc.stdout.strip()}{self._log_tail()}")
        return proc

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql over the unix socket (synchronous: fine inside a running event loop);
        returns psql's unaligned, tuples-only output."""
        return self._run([self._psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
                          "-p", str(PORT), "-U", SUPERUSER, "-d", dbname, "-c", sql], as_server=False).stdout

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL (see ``url``)."""
        if not name or "\0" in name or len(name.encode()) > 63:
            raise PostgresError(f"bad database name {name!r}: 1 to 63 bytes, no NUL")
        quoted = '"' + name.replace('"', '""') + '"'
        self.psql(f"CREATE DATABASE {quoted}")
        return self.url(name)

    # --- life cycle -------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise PostgresUnavailableError(reason)
        self._initdb, self._pg_ctl, self._psql = (str(find_bin(n)) for n in ("initdb", "pg_ctl", "psql"))
        base = self.base_dir if self.base_dir is not None else tempfile.gettempdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SUPERUSER)
            self._run_as = (entry.pw_uid, entry.pw_gid)
            blocked = _reachable_by(base, entry.pw_uid, entry.pw_gid)
            if blocked is not None:
                raise PostgresError(f"the {SUPERUSER} user cannot enter {blocked} (mode bits), so it cannot "
                                    f"use a cluster under {base}; pass a base_dir it can reach")
        socket_path = os.path.join(os.path.realpath(base), "sanpath-pg-XXXXXXXX", f".s.PGSQL.{PORT}")
        if len(os.fsencode(socket_path)) > _SOCKET_PATH_MAX:
            raise PostgresError(f"unix socket path {socket_path} is longer than {_SOCKET_PATH_MAX} bytes; "
                                "pass a shorter base_dir")
        self.dir = tempfile.mkdtemp(prefix="sanpath-pg-", dir=os.path.realpath(base))
        if any(c in self.dir for c in ',"\\') or any(c.isspace() for c in self.dir):
            raise PostgresError(f"{self.dir}: unix_socket_directories cannot take this path (comma, quote, "
                                "backslash or space); pass another base_dir")
        if self._run_as is not None:
            os.chown(self.dir, *self._run_as)

    def start(self) -> PostgresCluster:
        """initdb and start the server; on any failure nothing is left running or on disk."""
        if self.dir:
            raise PostgresError(f"cluster in {self.dir} is already started")
        began = time.monotonic()
        try:
            self._prepare()
            self._run([self._initdb, "-D", self.data_dir, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                       "--locale=C", "--no-sync"], as_server=True)
            self._launch()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _launch(self) -> None:
        options = ["-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}",
                   "-c", f"port={PORT}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                   "-c", "full_page_writes=off"]
        # pg_ctl hands -o to /bin/sh, so quote it for the shell; -w waits until the server accepts
        # connections (postmaster.pid says "ready"), bounded by -t
        timeout = max(1, round(self.start_timeout))
        self._run([self._pg_ctl, "start", "-D", self.data_dir, "-l", self.log_path, "-s", "-w",
                   "-t", str(timeout), "-o", shlex.join(options)], as_server=True, timeout=timeout + 10)

    def halt(self) -> None:
        """Stop the server and keep its data: an outage, ended by ``resume``."""
        self._run([self._pg_ctl, "stop", "-D", self.data_dir, "-m", "fast", "-s", "-w", "-t", "30"], as_server=True,
                  timeout=40)

    def resume(self) -> None:
        self._launch()

    def stop(self) -> None:
        """Stop the server (immediate mode, then SIGKILL for anything left) and remove the directory."""
        if not self.dir:
            return
        try:
            if os.path.isdir(self.data_dir):
                pid = self.pid
                if pid is not None and process_alive(pid):
                    self._run([self._pg_ctl, "stop", "-D", self.data_dir, "-m", "immediate", "-s", "-w", "-t", "30"],
                              as_server=True, check=False, timeout=40)
                self._kill_leftovers(pid)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""

    def _kill_leftovers(self, pid: int | None) -> None:
        """SIGKILL the postmaster and any server process still in the directory; wait until they are gone."""
        def leftovers() -> set[int]:
            found = set(processes_in(self.dir))
            if pid is not None and process_alive(pid):
                found.add(pid)
            return found

        deadline = time.monotonic() + 10.0
        while pids := leftovers():
            for p in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise PostgresError(f"postgres processes {sorted(pids)} of {self.dir} survived SIGKILL")
            time.sleep(0.05)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextmanager
def postgres_cluster(*, base_dir: str | None = None, start_timeout: float = START_TIMEOUT) -> Iterator[PostgresCluster]:
    """A started ``PostgresCluster``, stopped and removed on exit."""
    with PostgresCluster(base_dir=base_dir, start_timeout=start_timeout) as cluster:
        yield cluster
