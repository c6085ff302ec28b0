"""``sanpath host serve|list|show|set-iqn|maintenance|set-multipathing``: the host daemon, and the hosts of
the pool."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..mgmt.client import ApiClient, api_option, emit, format_option, run

HOST_COLUMNS = [("NAME", lambda h: h["name_label"]), ("UUID", lambda h: h["uuid"]), ("IQN", lambda h: h["iqn"]),
                ("ENABLED", lambda h: h["enabled"]), ("MAINTENANCE", lambda h: h["maintenance_mode"]),
                ("MULTIPATHING", lambda h: h["multipathing"]),
                ("HANDLER", lambda h: h["multipath_handle"]), ("LIVE", lambda h: h["live"])]


@click.group()
def host() -> None:
    """This host's daemon, and the hosts of the pool."""


@host.command("serve")
@click.option("--db", metavar="URL", help="The pool store (default: SQLite in the state directory).")
@click.option("--pool-key", type=click.Path(dir_okay=False), help="The pool key file from sanpath pool create.")
@click.option("--name", help="This host's name in the pool (default: the hostname).")
@click.option("--api", metavar="unix:PATH", help="The API's unix socket (default /run/sanpath/api.sock as root, "
              "else $XDG_RUNTIME_DIR/sanpath/api.sock).")
@click.option("--api-tcp", metavar="ADDR:PORT", help="Also serve the API over TCP (needs TLS; every request needs "
              "a bearer token: sanpath pool token-create NAME makes one).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True))
@click.option("--console", metavar="[ADDR:]PORT", help="Also serve the web console (ADDR 127.0.0.1 unless given; "
              "off loopback it needs --tls-cert/--tls-key and asks for a sign-in with an API token).")
def serve(**kw: Any) -> None:
    """Run the host daemon in the foreground until SIGTERM: it keeps this host's plugged PBDs attached."""
    from ..mgmt.serve import ServeOptions
    from ..mgmt.serve import serve as run_daemon

    run("host serve", lambda: asyncio.run(run_daemon(ServeOptions(**kw))))


@host.command("list")
@api_option
@format_option("table", "json")
def list_hosts(api: str | None, fmt: str) -> None:
    """The hosts of the pool: name, uuid, IQN, enabled, maintenance mode, multipathing, handler, live."""
    run("host list", lambda: emit(ApiClient(api).call("GET", "/hosts"), fmt, HOST_COLUMNS))


@host.command("show")
@click.argument("ref", required=False)
@api_option
@format_option("table", "json")
def show(ref: str | None, api: str | None, fmt: str) -> None:
    """One host (this one when REF, a name or uuid, is not given)."""

    def go() -> None:
        emit(ApiClient(api).call("GET", f"/hosts/{ref}" if ref else "/self"), fmt, HOST_COLUMNS)

    run("host show", go)


@host.command("set-iqn")
@click.argument("iqn")
@click.option("--host", "ref", help="The host (default: the daemon's own).")
@api_option
@format_option("table", "json")
def set_iqn(iqn: str, ref: str | None, api: str | None, fmt: str) -> None:
    """Change the host's IQN; refused while it has iSCSI sessions (ISCSIInitiator, 70)."""

    def go() -> None:
        client = ApiClient(api)
        target = ref or client.call("GET", "/self")["uuid"]
        emit(client.call("POST", f"/hosts/{target}/iqn", body={"iqn": iqn}), fmt, HOST_COLUMNS)

    run("host set-iqn", go)



def _target(client: ApiClient, ref: str | None) -> str:
    return ref or str(client.call("GET", "/self")["uuid"])


@host.command("maintenance")
@click.argument("mode", type=click.Choice(["enter", "exit"]))
@click.option("--host", "ref", help="The host (default: the daemon's own).")
@click.option("--force", is_flag=True, help="Drain the NBD clients' requests in flight and disconnect them.")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the NBD clients to leave (then the host is enabled again).")
@api_option
@format_option("table", "json")
def maintenance(mode: str, ref: str | None, force: bool, timeout: float, api: str | None, fmt: str) -> None:
    """Enter maintenance mode (disable the host: no new plugs, no new NBD clients; wait for its clients to
    leave) or exit it."""

    def go() -> None:
        client = ApiClient(api, timeout=timeout + 60)
        target = _target(client, ref)
        if mode == "enter" and fmt == "table":
            click.echo(f"entering maintenance mode: waiting up to {timeout:g} s for the NBD clients"
                       f"{' (draining them)' if force else ''}...", err=True)
        emit(client.call("POST", f"/hosts/{target}/maintenance",
                         body={"mode": mode, "force": force, "timeout": timeout}), fmt, HOST_COLUMNS)

    run(f"host maintenance {mode}", go)


@host.command("set-multipathing")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--handler", type=click.Choice(["dmp", "rdac"]), help="dmp (DM-MP) or rdac (MPP RDAC, for LSI "
              "arrays); default: unchanged.")
@click.option("--host", "ref", help="The host (default: the daemon's own).")
@api_option
@format_option("table", "json")
def set_multipathing(state: str, handler: str | None, ref: str | None, api: str | None, fmt: str) -> None:
    """Change the host's multipathing, in maintenance mode only: its plugged PBDs are unplugged, the
    setting changed, and exactly those PBDs replugged (multihomed when multipathing is on)."""

    def go() -> None:
        client = ApiClient(api)
        result = client.call("POST", f"/hosts/{_target(client, ref)}/multipathing",
                             body={"enabled": state == "on", "handler": handler})
        emit(result, fmt, [("HOST", lambda r: r["name_label"]), ("MULTIPATHING", lambda r: r["multipathing"]),
                           ("HANDLER", lambda r: r["multipath_handle"]),
                           ("REPLUGGED", lambda r: ",".join(r["replugged"]) or "-")])

    run("host set-multipathing", go)
