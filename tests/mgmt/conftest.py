"""The management-plane suites run against both stores: a SQLite file and a PostgreSQL database (one
cluster for the whole run, started from Debian's package in a temporary directory; a fresh database
per test)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from sanpath.testing.postgres import PostgresCluster, postgres_cluster
from tests.helpers.gates import require_postgres

_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    require_postgres()
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database(f"t{next(_numbers)}")
