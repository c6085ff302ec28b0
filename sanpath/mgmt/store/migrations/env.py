"""Alembic's environment for the pool store: migrations run on the connection that ``Store.open`` hands
over (``config.attributes["connection"]``), SQLite and PostgreSQL alike; never from alembic's CLI."""

from __future__ import annotations

from alembic import context

from sanpath.mgmt.store.model import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
