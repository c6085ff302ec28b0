"""``sanpath host serve|list|show|set-iqn``: the host daemon, and the hosts of the pool."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..mgmt.client import ApiClient, api_option, emit, format_option, run

HOST_COLUMNS = [("NAME", lambda h: h["name_label"]), ("UUID", lambda h: h["uuid"]), ("IQN", lambda h: h["iqn"]),
                ("ENABLED", lambda h: h["enabled"]), ("MULTIPATHING", lambda h: h["multipathing"]),
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
@click.option("--api-tcp", metavar="ADDR:PORT", help="Also serve the API over TCP (needs TLS; a bearer token is "
              "required, read from --token-file, made on first use).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True))
@click.option("--token-file", type=click.Path(dir_okay=False), help="The API token for TCP clients "
              "(default: api.token in the state directory).")
def serve(**kw: Any) -> None:
    """Run the host daemon in the foreground until SIGTERM: it keeps this host's plugged PBDs attached."""
    from ..mgmt.serve import ServeOptions
    from ..mgmt.serve import serve as run_daemon

    run("host serve", lambda: asyncio.run(run_daemon(ServeOptions(**kw))))


@host.command("list")
@api_option
@format_option("table", "json")
def list_hosts(api: str | None, fmt: str) -> None:
    """The hosts of the pool: name, uuid, IQN, enabled, multipathing, handler, live."""
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

