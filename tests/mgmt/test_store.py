"""The pool store on SQLite and on PostgreSQL: migrations from an empty store, the rows' rules
(uniqueness that racing requests cannot break), PIF sync, secrets, the pool key, and a dump restored
into a wiped store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect

from sanpath.mgmt.errors import XenError
from sanpath.mgmt.poolkey import PoolKey
from sanpath.mgmt.store import Store
from sanpath.mgmt.store.model import Base


async def test_migrations_build_the_model_from_an_empty_store(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            columns = {t: await conn.run_sync(lambda c, t=t: {col["name"] for col in inspect(c).get_columns(t)})
                       for t in Base.metadata.tables}
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables
        for name, table in Base.metadata.tables.items():
            assert columns[name] == {c.name for c in table.columns}, name
    finally:
        await store.close()
    again = await Store.open(store_url)  # a second open finds the schema current
    await again.close()


async def test_two_concurrent_sr_creates_for_one_scsi_id_one_wins(store_url: str) -> None:
    stores = [await Store.open(store_url) for _ in range(2)]  # two daemons, two engines
    try:
        results = await asyncio.gather(*(s.create_sr(f"sr{i}", "36001405aa", {}, {}) for i, s in enumerate(stores)),
                                       return_exceptions=True)
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1 and len(lost) == 1
        assert isinstance(lost[0], XenError) and lost[0].name == "SRInUse" and lost[0].code == 16
        assert [s.name_label for s in await stores[0].srs()] == [won[0].name_label]  # type: ignore[union-attr]
    finally:
        for s in stores:
            await s.close()


async def test_iqns_names_and_pbds_are_unique(store_url: str, tmp_path: Path) -> None:
    store = await Store.open(store_url)
    try:
        a = await store.add_host("a", "iqn.2026-12.com.example:a")
        with pytest.raises(XenError, match="host a") as e:
            await store.add_host("b", "iqn.2026-12.com.example:a")
        assert e.value.name == "IQN_IN_USE"
        with pytest.raises(XenError) as e:  # iSCSI names compare without case (RFC 3722)
            await store.add_host("b", "IQN.2026-12.COM.EXAMPLE:A")
        assert e.value.name == "IQN_IN_USE"
        with pytest.raises(XenError, match="named 'a'"):
            await store.add_host("a", "iqn.2026-12.com.example:other")
        sr = await store.create_sr("sr", "36001405bb", {}, {})
        await store.create_pbd(sr.uuid, a.uuid, {})
        with pytest.raises(XenError) as e:
            await store.create_pbd(sr.uuid, a.uuid, {})
        assert e.value.name == "PBD_EXISTS"
        with pytest.raises(XenError) as e:
            await store.pbd("no-such-uuid")
        assert e.value.name == "HANDLE_INVALID"
    finally:
        await store.close()


async def test_a_nul_character_is_a_clear_error_not_a_crash(store_url: str) -> None:
    """PostgreSQL text cannot hold NUL; a reference with one (any client may send it) is no such object
    on SQLite and VALUE_INVALID on PostgreSQL, never an unhandled driver error."""
    store = await Store.open(store_url)
    try:
        await store.add_host("h", "iqn.2026-12.com.example:h")
        with pytest.raises(XenError) as e:
            await store.host("h\x00")
        assert e.value.name == ("HANDLE_INVALID" if store_url.startswith("sqlite") else "VALUE_INVALID")
        assert [h.name_label for h in await store.hosts()] == ["h"]  # the store still answers
    finally:
        await store.close()


async def test_pif_sync_keeps_the_admins_purpose(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        h = await store.add_host("h", "iqn.2026-12.com.example:h")
        link = {"device": "eth1", "mac": "02:00:00:00:00:01", "mtu": 9000, "carrier": True, "kind": "",
                "master": "", "addresses": ["198.18.1.10/24"]}
        assert await store.sync_pifs(h.uuid, [link])
        await store.set_pif_purpose(h.uuid, "eth1", "storage")
        assert not await store.sync_pifs(h.uuid, [link])  # nothing changed
        assert await store.sync_pifs(h.uuid, [{**link, "carrier": False}])
        [pif] = await store.pifs(h.uuid)
        assert (pif.purpose, pif.carrier, pif.present) == ("storage", False, True)
        assert await store.sync_pifs(h.uuid, [])
        [pif] = await store.pifs(h.uuid)
        assert (pif.purpose, pif.present) == ("storage", False)
        with pytest.raises(XenError, match="eth1"):
            await store.set_pif_purpose(h.uuid, "eth9", "storage")
        with pytest.raises(XenError, match="storage, management or none"):
            await store.set_pif_purpose(h.uuid, "eth1", "iscsi")
    finally:
        await store.close()


async def test_secrets_are_stored_encrypted_and_the_pool_key_is_checked(store_url: str, tmp_path: Path) -> None:
    store = await Store.open(store_url)
    try:
        key = PoolKey.create(str(tmp_path / "pool.key"))
        assert os.stat(tmp_path / "pool.key").st_mode & 0o777 == 0o600
        pool = await store.create_pool("p", key)
        uuid = await store.put_secret(key.encrypt(b"s3cret-chap"))
        token = await store.secret(uuid)
        assert "s3cret" not in token
        assert key.decrypt(token) == b"s3cret-chap"
        key.verify(pool.key_check)
        other = PoolKey.create(str(tmp_path / "other.key"))
        with pytest.raises(XenError) as e:
            other.verify(pool.key_check)
        assert e.value.name == "POOL_KEY_INVALID"
        with pytest.raises(XenError, match="exists already"):
            PoolKey.create(str(tmp_path / "pool.key"))
        with pytest.raises(XenError, match="holds pool p"):
            await store.create_pool("again", key)
    finally:
        await store.close()


async def test_a_bad_url_is_refused_with_an_example() -> None:
    with pytest.raises(XenError, match="sqlite\\+aiosqlite"):
        await Store.open("not a url")


async def test_plug_requests_never_merge_and_a_stale_settle_is_dropped(store_url: str) -> None:
    stores = [await Store.open(store_url) for _ in range(2)]
    try:
        h = await stores[0].add_host("h", "iqn.2026-12.com.example:h")
        sr = await stores[0].create_sr("sr", "36001405cc", {}, {})
        pbd = await stores[0].create_pbd(sr.uuid, h.uuid, {})
        await asyncio.gather(*(s.request_plug(pbd.uuid, True) for s in stores))
        assert (await stores[0].pbd(pbd.uuid)).generation == 2  # two requests, two generations
        # the reconciler acted on generation 2; meanwhile an unplug came (3): its write must not land
        await stores[1].request_plug(pbd.uuid, False)
        assert not await stores[0].settle_pbd(pbd.uuid, 2, plugged=False, observed_generation=2)
        row = await stores[0].pbd(pbd.uuid)
        assert (row.plugged, row.generation, row.observed_generation) == (False, 3, 0)
        assert await stores[0].settle_pbd(pbd.uuid, 3, observed_generation=3)
        assert (await stores[0].pbd(pbd.uuid)).observed_generation == 3
        assert abs(await stores[0].now() - time.time()) < 60  # the store's clock, in seconds since the epoch
    finally:
        for s in stores:
            await s.close()


async def test_a_pool_dumped_and_restored_into_a_wiped_store_has_equal_records(store_url: str,
                                                                                tmp_path: Path) -> None:
    store = await Store.open(store_url)
    try:
        key = PoolKey.create(str(tmp_path / "pool.key"))
        await store.create_pool("dumped", key)
        h = await store.add_host("h1", "iqn.2026-12.com.example:h1")
        await store.sync_pifs(h.uuid, [{"device": "eth1", "mac": "02:00:00:00:00:01", "mtu": 9000, "carrier": True,
                                        "kind": "", "master": "", "addresses": ["198.18.1.10/24"]}])
        await store.set_pif_purpose(h.uuid, "eth1", "storage")
        secret = await store.put_secret(key.encrypt(b"chap-secret"))
        sr = await store.create_sr("sr", "36001405dd", {"target": "198.18.1.1"}, {"portals": [["198.18.1.1", 3260,
                                                                                                "iqn.x:y"]]})
        pbd = await store.create_pbd(sr.uuid, h.uuid, {"chappassword_secret": secret})
        await store.request_plug(pbd.uuid, True)
        await store.add_message("MULTIPATH_PERIODIC_ALERT", 3, "pool", "p", {"current": 1, "max": 2}, "1 of 2")
        _, token = await store.create_token("ops")
        before = await store.dump()
    finally:
        await store.close()
    assert {t: len(rows) for t, rows in before["tables"].items()} == {
        "pool": 1, "host": 1, "pif": 1, "sr": 1, "pbd": 1, "secret": 1, "message": 1, "api_token": 1}
    text = json.dumps(before)
    assert "chap-secret" not in text and token not in text  # encrypted, and a digest

    dump_file = tmp_path / "pool.json"
    out = subprocess.run([sys.executable, "-m", "sanpath", "pool", "dump", "--db", store_url], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    dump_file.write_text(out.stdout)
    assert json.loads(out.stdout) == json.loads(json.dumps(before))
    wiped = await _wipe(store_url)
    loaded = subprocess.run([sys.executable, "-m", "sanpath", "pool", "restore", str(dump_file), "--db", store_url],
                             capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert "1 pool, 1 host, 1 pif, 1 sr, 1 pbd, 1 secret, 1 message, 1 api_token" in loaded.stdout
    again = subprocess.run([sys.executable, "-m", "sanpath", "pool", "restore", str(dump_file), "--db", store_url],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "holds pool dumped" in again.stderr and "empty store" in again.stderr
    restored = await Store.open(store_url)
    try:
        assert json.loads(json.dumps(await restored.dump())) == json.loads(json.dumps(before))
        assert await restored.token_known(token)
        assert key.decrypt(await restored.secret(secret)) == b"chap-secret"
    finally:
        await restored.close()
    assert wiped


async def _wipe(url: str) -> bool:
    """Every row gone (the schema stays): the store as a fresh one."""
    store = await Store.open(url)
    try:
        async with store.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(table.delete())
        return (await store.dump())["tables"] == {t: [] for t in (await store.dump())["tables"]}
    finally:
        await store.close()
