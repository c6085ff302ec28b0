"""PostgreSQL stopped for 30 s under a plugged PBD with verified I/O running through its export (a cluster
of the test's own, so that the other tests' store stays up): no I/O error and no verify failure; the API
answers 503 STORE_UNREACHABLE meanwhile; once the server is back the API answers again, the daemon
reports again, and no row is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sanpath.testing.inproc import running_target
from sanpath.testing.mgmt import running_plane, sr_on_only_lun
from sanpath.testing.nbdio import VerifiedIo
from sanpath.testing.postgres import PostgresCluster, postgres_cluster
from tests.helpers.gates import require_postgres

IQN = "iqn.2026-12.org.sanpath.test:outage"
OUTAGE = 30.0


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    require_postgres()
    with postgres_cluster() as cluster:
        yield cluster


def _rows(dump: dict[str, list[dict[str, object]]]) -> set[tuple[str, object]]:
    return {(table, row["uuid"]) for table, rows in dump.items() for row in rows}


async def test_a_store_outage_never_touches_io(own_cluster: PostgresCluster) -> None:
    url = own_cluster.create_database("outage")
    async with running_target(iqn=IQN, portals=("127.0.0.1:0", "127.0.0.2:0")) as array, \
            running_plane(url) as plane:
        sr, scsi_id = await sr_on_only_lun(plane, array, IQN, "kept")
        pbd = sr["pbds"][0]
        before = _rows((await plane.store.dump())["tables"])
        uri = pbd["other_config"]["nbd"]
        io = await VerifiedIo.connect(uri.split("socket=", 1)[1], scsi_id)
        io.start()
        try:
            await io.until(200)
            await asyncio.to_thread(own_cluster.halt)
            loop = asyncio.get_running_loop()
            end = loop.time() + OUTAGE
            answers = []
            while loop.time() < end:
                r = await plane.call("GET", "/pbds")
                answers.append((r.status_code, r.json().get("error") if r.status_code != 200 else None))
                await asyncio.sleep(1.0)
            during = io.ios
            await asyncio.to_thread(own_cluster.resume)
            await io.until(200)
        finally:
            await io.stop()
        assert io.errors == [] and await io.check() == []
        await io.close()
        assert during > 400  # I/O went on through the outage
        assert answers and all(a == (503, "STORE_UNREACHABLE") for a in answers), answers
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # the daemon's next heartbeat makes the host live again, and its PBD known
            r = await plane.call("GET", "/pbds")
            if r.status_code == 200 and r.json()[0]["state"] == "attached":
                break
            assert asyncio.get_running_loop().time() < deadline, r.text
            await asyncio.sleep(0.2)
        assert r.json()[0]["currently_attached"] and (await plane.call("GET", "/self")).json()["live"]
        assert before <= _rows((await plane.store.dump())["tables"])
