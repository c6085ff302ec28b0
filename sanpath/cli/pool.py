"""``sanpath pool create``: a pool in a store (SQLite or PostgreSQL) and its key file (mode 0600)."""

from __future__ import annotations

import asyncio
import json

import click

from ..mgmt.client import run
from ..mgmt.errors import XenError


@click.group()
def pool() -> None:
    """The pool: the store every host of it shares, and the key of its secrets."""


@pool.command("create")
@click.option("--db", metavar="URL", help="SQLAlchemy URL of the store (default: SQLite in the state directory); "
              "postgresql+asyncpg://USER@/DB?host=/run/postgresql for a pool of several hosts.")
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
