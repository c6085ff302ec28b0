"""The throwaway PostgreSQL server: it serves over its unix socket only, and leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sanpath.testing.postgres import PostgresCluster, find_bin, process_alive, processes_in
from tests.helpers.gates import require_postgres


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    require_postgres()
    with PostgresCluster() as pg:
        yield pg


def _socket_inodes(pids: list[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except FileNotFoundError:
            continue  # the process ended meanwhile (a backend): it holds no socket any more
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _proc_net_inodes(table: str, listening_only: bool = False) -> set[int]:
    """Socket inodes of /proc/net/TABLE (tcp, tcp6, unix); for TCP, state 0A is LISTEN."""
    inodes = set()
    with open(f"/proc/net/{table}") as f:
        rows = f.read().splitlines()[1:]  # after the header
    for row in rows:
        fields = row.split()
        if table == "unix":
            inodes.add(int(fields[6]))
        elif not listening_only or fields[3] == "0A":
            inodes.add(int(fields[9]))
    return inodes


def test_find_bin() -> None:
    require_postgres()
    for name in ("initdb", "pg_ctl", "postgres"):
        path = find_bin(name)
        assert path is not None and os.access(path, os.X_OK), name
    assert find_bin("sanpath-no-such-postgres-binary") is None


async def test_round_trip_and_cleanup() -> None:
    require_postgres()
    with PostgresCluster() as pg:
        directory, pid = pg.dir, pg.pid
        assert pid is not None and process_alive(pid)
        assert pid in processes_in(pg.data_dir)
        conn = await asyncpg.connect(host=pg.socket_dir, user="postgres", database="postgres")
        try:
            assert await conn.fetchval("SELECT 1") == 1
            assert await conn.fetchval("SHOW listen_addresses") == ""
        finally:
            await conn.close()

        url = pg.create_database("roundtrip")  # synchronous, from inside the running event loop
        assert url == f"postgresql+asyncpg://postgres@/roundtrip?host={pg.socket_dir}"
        conn = await asyncpg.connect(host=pg.socket_dir, user="postgres", database="roundtrip")
        try:
            await conn.execute("CREATE TABLE paths (id integer PRIMARY KEY, state text NOT NULL)")
            await conn.executemany("INSERT INTO paths VALUES ($1, $2)", [(1, "active"), (2, "failed")])
            rows = await conn.fetch("SELECT id, state FROM paths ORDER BY id")
            assert [tuple(r) for r in rows] == [(1, "active"), (2, "failed")]
            assert await conn.fetchval("SELECT current_database()") == "roundtrip"
        finally:
            await conn.close()
    assert not os.path.exists(directory)
    assert not process_alive(pid)
    assert processes_in(directory) == []
    assert pg.dir == ""
    pg.stop()  # a second stop is harmless


def test_no_tcp_listener(cluster: PostgresCluster) -> None:
    assert cluster.psql("SHOW listen_addresses") == "\n"
    pids = processes_in(cluster.data_dir)
    assert cluster.pid in pids
    ours = _socket_inodes(pids)
    assert ours & _proc_net_inodes("unix"), "the check must at least see the server's unix socket"
    for table in ("tcp", "tcp6"):
        assert not ours & _proc_net_inodes(table, listening_only=True), f"postgres listens on {table}"
    assert os.path.exists(os.path.join(cluster.socket_dir, ".s.PGSQL.5432"))


async def test_sqlalchemy_url(cluster: PostgresCluster) -> None:
    engine = create_async_engine(cluster.create_database("via_sqlalchemy"))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x integer)"))
            await conn.execute(text("INSERT INTO t VALUES (41), (1)"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT sum(x) FROM t"))).scalar_one() == 42
            assert (await conn.execute(text("SELECT current_database()"))).scalar_one() == "via_sqlalchemy"
    finally:
        await engine.dispose()
    assert cluster.url() == f"postgresql+asyncpg://postgres@/postgres?host={cluster.socket_dir}"


def test_stopped_and_removed_when_the_body_raises() -> None:
    require_postgres()
    seen: dict[str, object] = {}
    with pytest.raises(RuntimeError, match="test body failed"), PostgresCluster() as pg:
        seen.update(dir=pg.dir, pid=pg.pid)
        raise RuntimeError("test body failed")
    directory, pid = seen["dir"], seen["pid"]
    assert isinstance(directory, str) and isinstance(pid, int)
    assert not os.path.exists(directory)
    assert not process_alive(pid)
    assert processes_in(directory) == []
