"""Where the management plane keeps things on a host: the state directory (the embedded SQLite store and
pool key) and the runtime directory (the API socket, the data-path processes' control sockets and NBD
exports). ``SANPATH_STATE_DIR`` and ``SANPATH_RUN_DIR`` override both (tests, several daemons on one
machine)."""

from __future__ import annotations

import os

from .. import control


def state_dir() -> str:
    """/var/lib/sanpath as root, else $XDG_STATE_HOME/sanpath (~/.local/state/sanpath)."""
    if env := os.environ.get("SANPATH_STATE_DIR"):
        return env
    if os.getuid() == 0:
        return "/var/lib/sanpath"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "sanpath")


def run_dir() -> str:
    """/run/sanpath as root, else $XDG_RUNTIME_DIR/sanpath."""
    if env := os.environ.get("SANPATH_RUN_DIR"):
        return env
    if os.getuid() == 0 and os.path.isdir("/run"):
        return "/run/sanpath"
    return control.default_control_dir()


def default_db() -> str:
    return f"sqlite+aiosqlite:///{os.path.join(state_dir(), 'pool.db')}"


def default_key() -> str:
    return os.path.join(state_dir(), "pool.key")


def default_api() -> str:
    return f"unix:{os.path.join(run_dir(), 'api.sock')}"
