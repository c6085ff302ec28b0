"""``sanpath host serve``: open the pool store, find or create this host's row, adopt the data-path
processes still running, start the reconciler, and serve the API on a root-only unix socket (and on
TCP with TLS and a bearer token when asked) until SIGTERM. Stopping the daemon leaves the data-path
processes running: a new daemon adopts them, and I/O never waits for the management plane."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import signal
import socket
import ssl
import sys
from collections.abc import Generator
from dataclasses import dataclass

import uvicorn

from . import places
from .api import build_app
from .console import build_console
from .daemon import HostDaemon
from .errors import XenError
from .identity import generate_iqn
from .poolkey import PoolKey
from .store import Store
from .store.model import Host
from .supervisor import Supervisor
from .workflow import Workflow, live


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon handles SIGTERM and SIGINT itself, for both of its servers


@dataclass(frozen=True, slots=True)
class ServeOptions:
    db: str | None = None
    pool_key: str | None = None
    name: str | None = None
    api: str | None = None  # unix:PATH
    api_tcp: str | None = None  # ADDR:PORT
    tls_cert: str | None = None
    tls_key: str | None = None
    console: str | None = None  # [ADDR:]PORT: the web console (ADDR defaults to 127.0.0.1)


async def open_pool(db: str | None, key_path: str | None) -> tuple[Store, PoolKey]:
    """The store and its pool key. With neither given, the embedded default: a SQLite store and a key in
    the state directory, the pool created on first start."""
    store = await Store.open(db or places.default_db())
    try:
        pool = await store.pool()
        path = key_path or places.default_key()
        if pool is None:
            if db is not None and key_path is None:
                raise XenError("POOL_NOT_INITIALISED", f"the store {db} holds no pool",
                               advice="Create it first: sanpath pool create --db URL --key-file FILE, then "
                                      "give --pool-key FILE.")
            key = PoolKey.load(path) if os.path.exists(path) else PoolKey.create(path)
            await store.create_pool("sanpath pool", key)
            return store, key
        key = PoolKey.load(path)
        key.verify(pool.key_check)
        return store, key
    except BaseException:
        await store.close()
        raise


async def find_host(store: Store, name: str, daemon_id: str) -> tuple[Host, bool]:
    """This host's row (made on first start, with a new IQN), and whether it was made now. A row whose
    live daemon is another one (two machines with one name) is refused: two daemons must never reconcile
    one host's PBDs."""
    for h in await store.hosts():
        if h.name_label == name:
            other = h.other_config.get("daemon", daemon_id)
            if other != daemon_id and live(h, await store.now()):
                raise XenError("HOST_DAEMON_RUNNING", f"host {name} is served by the daemon {other}, which is "
                               "reporting", name, other)
            return await store.update_host(h.uuid, other_config={**h.other_config, "daemon": daemon_id}), False
    made = await store.add_host(name, generate_iqn())
    return await store.update_host(made.uuid, other_config={"daemon": daemon_id}), True


def lock_daemon(run_dir: str) -> int:
    """The daemon's lock in its runtime directory, held for its life: one daemon per host."""
    fd = os.open(os.path.join(run_dir, "daemon.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise XenError("HOST_DAEMON_RUNNING", f"a host daemon runs already on {run_dir}", run_dir) from None
    return fd


def _unix_path(api: str) -> str:
    if not api.startswith("unix:") or len(api) <= 5:
        raise XenError("VALUE_INVALID", f"--api {api!r}: write unix:PATH", api)
    return api[5:]


def _tcp(address: str, option: str = "--api-tcp", default_host: str = "") -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    host = host or default_host
    if not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise XenError("VALUE_INVALID", f"{option} {address!r}: write ADDR:PORT, e.g. 127.0.0.1:8443", address)
    return host.strip("[]"), int(port)


def on_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(scheme: str, server: _Server, host: str) -> str:
    """The address a server listens on (its real port, when 0 was asked for)."""
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/"


@dataclass(frozen=True, slots=True)
class Started:
    """A daemon that is serving: what its ready line says."""

    host: Host
    api: str  # unix:PATH
    console: str | None  # the console's URL


async def serve(opts: ServeOptions, ready: asyncio.Future[Started] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM, or, for a daemon run inside another program (the demo), until
    ``stop`` is set: the signals are then that program's to handle."""
    api = opts.api or places.default_api()
    socket_path = _unix_path(api)
    tcp_address = _tcp(opts.api_tcp) if opts.api_tcp else None
    if opts.api_tcp and not (opts.tls_cert and opts.tls_key):
        raise XenError("VALUE_INVALID", "--api-tcp needs --tls-cert and --tls-key: the API is never offered "
                       "over TCP in clear", opts.api_tcp)
    console_address = _tcp(opts.console, "--console", "127.0.0.1") if opts.console else None
    console_tls = console_address is not None and not on_loopback(console_address[0])
    if console_tls and not (opts.tls_cert and opts.tls_key):
        raise XenError("VALUE_INVALID", f"--console {opts.console}: off loopback the console needs --tls-cert and "
                       "--tls-key (it is then served over HTTPS, with a sign-in)", opts.console,
                       advice="Bind it to 127.0.0.1 and reach it through an SSH tunnel, or give a certificate.")
    run_dir = places.run_dir()
    supervisor = Supervisor(run_dir)
    lock = lock_daemon(run_dir)
    store, key = await open_pool(opts.db, opts.pool_key)
    try:
        host, joined = await find_host(store, opts.name or socket.gethostname(), f"{socket.getfqdn()}:{run_dir}")
        daemon = HostDaemon(store, key, host, supervisor)
        workflow = Workflow(store, key, daemon.wake.set)
        if joined:  # new to the pool: a PBD for every shared SR, plugged by the reconciler
            await workflow.join(host)
        await daemon.start()
        servers = [await _serve_unix(build_app(daemon, workflow), socket_path)]
        if tcp_address is not None and opts.tls_cert and opts.tls_key:
            servers.append(await _serve_tcp(build_app(daemon, workflow, tcp=True), *tcp_address,
                                            opts.tls_cert, opts.tls_key))
        tcp = f" api-tcp https://{opts.api_tcp}" if opts.api_tcp else ""
        console, console_url = None, None
        if console_address is not None:
            console = build_console(daemon, workflow, login=console_tls)
            # an open page holds the event stream for ever: stopping waits for it only a second
            servers.append(await _serve_tcp(console, *console_address, opts.tls_cert if console_tls else None,
                                            opts.tls_key if console_tls else None, graceful=1))
            console_url = _url("https" if console_tls else "http", servers[-1][0], console_address[0])
            tcp += f" console {console_url}"
        print(f"sanpath host serve ready: host {host.name_label} ({host.uuid}) iqn {host.iqn} api {api}{tcp}",
              flush=True)
        if stop is None:
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set_result(Started(host, api, console_url))
        await stop.wait()
        print("sanpath host serve: stopping (the data-path processes go on)", file=sys.stderr, flush=True)
        for server, task in servers:
            server.should_exit = True
            await task
        if console is not None:
            await console.state.jobs.stop()
        await daemon.stop()
    finally:
        await store.close()
        os.close(lock)


async def _serve_unix(app: object, path: str) -> tuple[_Server, asyncio.Task[None]]:
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a daemon that died; the data-path sockets are elsewhere
    started = await _start(uvicorn.Config(app, uds=path, log_level="warning", lifespan="off"))  # type: ignore[arg-type]
    os.chmod(path, 0o600)  # uvicorn makes it 0666; a new directory is 0700, which keeps others out meanwhile
    return started


async def _serve_tcp(app: object, host: str, port: int, cert: str | None, key: str | None, *,
                     graceful: int | None = None) -> tuple[_Server, asyncio.Task[None]]:
    """HTTPS with ``cert`` and ``key``, else plain HTTP (the console on loopback)."""
    return await _start(uvicorn.Config(app, host=host, port=port, ssl_certfile=cert, ssl_keyfile=key,  # type: ignore[arg-type]
                                       ssl_version=ssl.PROTOCOL_TLS_SERVER, log_level="warning", lifespan="off",
                                       timeout_graceful_shutdown=graceful))


async def _start(config: uvicorn.Config) -> tuple[_Server, asyncio.Task[None]]:
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            problem = task.exception() if not task.cancelled() else None
            raise XenError("VALUE_INVALID", f"the API server did not start: {problem or 'it stopped'}",
                           advice="Check the address (is it in use?) and the TLS certificate and key.")
        await asyncio.sleep(0.02)
    return server, task
