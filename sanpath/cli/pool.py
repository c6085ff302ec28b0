"""``sanpath pool create|dump|restore|set-multipathing|set-alert-period|token-*``: a pool in a store (SQLite
or PostgreSQL) and its key file (mode 0600); a dump of every row and its restore; the pool-wide
settings; the API's bearer tokens."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ..mgmt.client import ApiClient, api_option, emit, format_option, run
from ..mgmt.errors import XenError


@click.group()
def pool() -> None:
    """The pool: the store every host of it shares, and the key of its secrets."""


T = TypeVar("T")
db_option = click.option("--db", metavar="URL", help="SQLAlchemy URL of the store (default: SQLite in the state "
                         "directory); postgresql+asyncpg://USER@/DB?host=/run/postgresql for a pool of several hosts.")


def _with_store(db: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    from ..mgmt import places
    from ..mgmt.store import Store

    async def go() -> T:
        store = await Store.open(db or places.default_db())
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


@pool.command("create")
@db_option
@click.option("--key-file", required=True, type=click.Path(dir_okay=False),
              help="Where to write the new pool key (mode 0600). Give it to every host: --pool-key FILE.")
@click.option("--name", "name_label", default="sanpath pool", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def create(db: str | None, key_file: str, name_label: str, fmt: str) -> None:
    """Create the pool and its key; prints the pool's uuid."""
    from ..mgmt import places
    from ..mgmt.poolkey import PoolKey
    from ..mgmt.store import Store

    async def work() -> dict[str, str]:
        store = await Store.open(db or places.default_db())
        try:
            if (existing := await store.pool()) is not None:
                raise XenError("VALUE_INVALID", f"the store holds pool {existing.name_label} ({existing.uuid}) "
                               "already", existing.uuid, advice="Use it (with its key file), or give another --db.")
            key = PoolKey.create(key_file)
            created = await store.create_pool(name_label, key)
            return {"uuid": created.uuid, "name_label": created.name_label, "key_file": key_file}
        finally:
            await store.close()

    def go() -> None:
        result = asyncio.run(work())
        click.echo(json.dumps(result) if fmt == "json" else result["uuid"])

    run("pool create", go)


@pool.command("set-multipathing")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--handler", type=click.Choice(["dmp", "rdac"]), help="dmp or rdac; default: each host's own.")
@click.option("--force", is_flag=True, help="Drain and disconnect each host's NBD clients when it enters "
              "maintenance mode.")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds each host waits for its NBD clients to leave.")
@api_option
@format_option("table", "json")
def set_multipathing(state: str, handler: str | None, force: bool, timeout: float, api: str | None,
                     fmt: str) -> None:
    """The rolling change: one host at a time into maintenance mode, changed, out again; stops at the
    first failure (that host stays as the error says)."""

    def go() -> None:
        result: object = None
        for line in ApiClient(api).lines("POST", "/pool/multipathing", body={
                "enabled": state == "on", "handler": handler, "force": force, "timeout": timeout}):
            step = json.loads(line)
            if "error" in step:
                raise XenError.from_json(step)
            if "result" in step:
                result = step["result"]
            elif fmt == "table":
                click.echo(f"{step['host']}: {step['step']}", err=True)
        emit(result, fmt, [("HOST", lambda r: r["name_label"]), ("MULTIPATHING", lambda r: r["multipathing"]),
                           ("HANDLER", lambda r: r["multipath_handle"]),
                           ("REPLUGGED", lambda r: ",".join(r["replugged"]) or "-")])

    run("pool set-multipathing", go)


@pool.command("set-alert-period")
@click.argument("seconds", type=click.FloatRange(1, 86400))
@api_option
def set_alert_period(seconds: float, api: str | None) -> None:
    """How often MULTIPATH_PERIODIC_ALERT repeats while a path is missing (default 120 s)."""
    run("pool set-alert-period", lambda: ApiClient(api).call(
        "POST", "/pool/other_config", body={"multipath_alert_period": seconds}) and None)


@pool.command("dump")
@db_option
def dump(db: str | None) -> None:
    """Every row of the pool's store as JSON on stdout (secrets stay encrypted with the pool key, API
    tokens stay digests): sanpath pool dump > FILE."""

    def go() -> None:
        data = _with_store(db, lambda store: store.dump())
        json.dump(data, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        rows = sum(len(v) for v in data["tables"].values())
        click.echo(f"dumped {rows} rows of {len(data['tables'])} tables", err=True)

    run("pool dump", go)


@pool.command("restore")
@click.argument("file", type=click.File("r"))
@db_option
def restore(file: Any, db: str | None) -> None:
    """Load a dump into an empty store (all rows or none). Stop the pool's daemons first; start them again
    on the restored store with the same pool key."""

    def go() -> None:
        try:
            data = json.load(file)
        except ValueError as e:
            raise XenError("VALUE_INVALID", f"{file.name} is not JSON: {e}", file.name) from None
        counts = _with_store(db, lambda store: store.restore(data))
        click.echo(", ".join(f"{n} {table}" for table, n in counts.items()))

    run("pool restore", go)


@pool.command("token-create")
@click.argument("name")
@api_option
def token_create(name: str, api: str | None) -> None:
    """Make a bearer token for the API over TCP and print it, this once (the pool keeps only its SHA-256
    digest). Only over the daemon's unix socket."""
    run("pool token-create", lambda: click.echo(ApiClient(api).call("POST", "/tokens", body={"name_label": name})
                                                ["token"]))


@pool.command("token-list")
@api_option
@format_option("table", "json")
def token_list(api: str | None, fmt: str) -> None:
    """The API tokens by name (never the tokens)."""
    run("pool token-list", lambda: emit(ApiClient(api).call("GET", "/tokens"), fmt,
                                        [("NAME", lambda t: t["name_label"]), ("UUID", lambda t: t["uuid"])]))


@pool.command("token-delete")
@click.argument("ref")
@api_option
def token_delete(ref: str, api: str | None) -> None:
    """Delete an API token (by name or uuid); TCP clients using it are refused from then on (within 30 s)."""
    run("pool token-delete", lambda: ApiClient(api).call("DELETE", f"/tokens/{ref}") and None)
