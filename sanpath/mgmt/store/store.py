"""The pool store: the one owner of the pool's rows. Every change is one transaction through a method
here; callers get detached row objects, never a session. SQLite (one host, the default) and PostgreSQL
(a pool of many hosts) behave the same: uniqueness (one SR per SCSIid, one PBD per SR and host, unique
IQNs) is enforced by the schema, so two racing requests cannot both win on either store."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import event, func, select, text, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ..errors import XenError
from ..poolkey import PoolKey
from .model import PBD, PIF, SR, ApiToken, Base, Host, Message, Pool, Secret, new_uuid

T = TypeVar("T", bound=Base)
_MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")
CONNECT_TIMEOUT = 5.0  # seconds (PostgreSQL)
COMMAND_TIMEOUT = 30.0
# what a store that is away raises: the driver's socket errors (asyncpg's connect does not wrap them),
# timeouts, and the DBAPI's own connection errors
UNREACHABLE = (OSError, TimeoutError, OperationalError, InterfaceError)
NOT_IN_REPERTOIRE = "22021"  # SQLSTATE: PostgreSQL text holds no NUL character
DUMP_FORMAT = "sanpath-pool-dump"
DUMP_VERSION = 1
_TABLES = (Pool, Host, PIF, SR, PBD, Secret, Message, ApiToken)  # parents before children
_MIGRATION_LOCK = 0x5A4E5041  # PostgreSQL advisory lock held while one daemon migrates


def _migrate(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
    cfg = Config()
    cfg.set_main_option("script_location", _MIGRATIONS)
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


class Store:
    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """A session; a store that cannot be reached (the server down, its socket gone, no answer) is
        STORE_UNREACHABLE, whichever driver and step found it out. Text that PostgreSQL cannot hold (a NUL
        character, from any name or reference a client sent) is VALUE_INVALID (SQLite holds it)."""
        try:
            async with self._sessions() as s:
                yield s
        except UNREACHABLE as e:
            raise unreachable(e) from None
        except DBAPIError as e:
            if getattr(e.orig, "sqlstate", None) != NOT_IN_REPERTOIRE:
                raise
            raise XenError("VALUE_INVALID", "a name or reference holds a NUL character, which the pool store "
                           "cannot hold", advice="Remove the NUL (\\0) character and try again.") from None

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and bring the schema to the newest migration (from an empty store too)."""
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            raise XenError("VALUE_INVALID", "--db is not an SQLAlchemy URL; write e.g. "
                           "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@/DB?host=/run/postgresql") from None
        shown = parsed.render_as_string(hide_password=True)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database:
                try:
                    os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), mode=0o700, exist_ok=True)
                except OSError as e:
                    raise XenError("VALUE_INVALID", f"--db {shown}: cannot make its directory: {e.strerror}",
                                   shown) from None
            kwargs["connect_args"] = {"timeout": 30}
        elif parsed.get_backend_name() == "postgresql":
            # a server that went away is found out at the next checkout, not by the request that uses the
            # connection; a server that does not answer fails the request in seconds, not never
            kwargs.update(pool_pre_ping=True, connect_args={"timeout": CONNECT_TIMEOUT,
                                                            "command_timeout": COMMAND_TIMEOUT})
        try:
            engine = create_async_engine(url, **kwargs)
        except Exception as e:  # unknown dialect, missing driver
            raise XenError("VALUE_INVALID", f"--db {shown}: {e}", shown) from None
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_migrate)
        except (OSError, SQLAlchemyError) as e:
            await engine.dispose()
            reason = str(getattr(e, "orig", None) or e).splitlines()[0]
            raise XenError("VALUE_INVALID", f"cannot open the pool store {shown}: {reason}", shown,
                           advice="Check --db: the server, the database, the user and its rights.") from None
        return cls(engine, url)

    async def close(self) -> None:
        await self.engine.dispose()

    async def now(self) -> float:
        """The store's clock (seconds since the epoch): every host's heartbeat is written and judged by
        it, so that hosts whose clocks disagree still agree on who is live."""
        if self.engine.dialect.name != "postgresql":
            return time.time()  # SQLite: one host, one clock
        try:
            async with self.engine.connect() as conn:
                return float((await conn.execute(text("SELECT extract(epoch FROM clock_timestamp())"))).scalar_one())
        except UNREACHABLE as e:
            raise unreachable(e) from None

    # --- generic ---------------------------------------------------------------------------------------

    async def _get(self, cls: type[T], uuid: str) -> T:
        async with self._session() as s:
            row = await s.get(cls, uuid)
        if row is None:
            raise XenError("HANDLE_INVALID", f"no {cls.__name__} with uuid {uuid}", cls.__name__, uuid)
        return row

    async def _all(self, cls: type[T], *where: Any) -> list[T]:
        async with self._session() as s:
            return list((await s.scalars(select(cls).where(*where))).all())

    async def _add(self, row: T) -> T:
        async with self._session() as s, s.begin():
            s.add(row)
        return row

    async def _update(self, cls: type[T], uuid: str, fields: dict[str, Any]) -> T:
        async with self._session() as s, s.begin():
            row = await s.get(cls, uuid, with_for_update=True)
            if row is None:
                raise XenError("HANDLE_INVALID", f"no {cls.__name__} with uuid {uuid}", cls.__name__, uuid)
            for k, v in fields.items():
                setattr(row, k, v)
        return row

    async def _delete(self, cls: type[T], uuid: str) -> None:
        async with self._session() as s, s.begin():
            row = await s.get(cls, uuid)
            if row is not None:
                await s.delete(row)

    # --- pool ------------------------------------------------------------------------------------------

    async def pool(self) -> Pool | None:
        rows = await self._all(Pool)
        return rows[0] if rows else None

    async def update_pool(self, **fields: Any) -> Pool:
        pool = await self.pool()
        if pool is None:
            raise XenError("POOL_NOT_INITIALISED", "this store holds no pool")
        return await self._update(Pool, pool.uuid, fields)

    async def create_pool(self, name: str, key: PoolKey) -> Pool:
        if (existing := await self.pool()) is not None:
            raise XenError("VALUE_INVALID", f"this store holds pool {existing.name_label} ({existing.uuid}) "
                           "already", existing.uuid, advice="Use that pool (give its key file), or another --db.")
        try:
            return await self._add(Pool(uuid=new_uuid(), singleton=1, name_label=name, key_check=key.check_token(),
                                        created=time.time(), other_config={}))
        except IntegrityError:  # another daemon made it at the same moment
            made = await self.pool()
            raise XenError("VALUE_INVALID", f"this store holds pool {made.name_label if made else '?'} already",
                           advice="Use that pool (give its key file), or another --db.") from None

    # --- hosts -----------------------------------------------------------------------------------------

    async def hosts(self) -> list[Host]:
        return sorted(await self._all(Host), key=lambda h: h.name_label)

    async def host(self, ref: str) -> Host:
        """A host by uuid or name (one indexed read either way)."""
        async with self._session() as s:
            row = await s.get(Host, ref) or (await s.scalars(select(Host).where(Host.name_label == ref))).first()
        if row is None:
            raise XenError("HANDLE_INVALID", f"no host named or with uuid {ref!r}", "host", ref)
        return row

    async def add_host(self, name: str, iqn: str) -> Host:
        await self.check_iqn_free(iqn, None)
        try:
            return await self._add(Host(uuid=new_uuid(), name_label=name, iqn=iqn, enabled=True, multipathing=True,
                                        multipath_handle="dmp", heartbeat=0.0, other_config={}))
        except IntegrityError:
            raise XenError("VALUE_INVALID", f"a host named {name!r} exists already", name,
                           advice="Give this host another --name.") from None

    async def check_iqn_free(self, iqn: str, host_uuid: str | None) -> None:
        """iSCSI names compare without case (RFC 3722), so a case variant is in use as well."""
        for h in await self._all(Host, func.lower(Host.iqn) == iqn.lower()):
            if h.uuid != host_uuid:
                raise XenError("IQN_IN_USE", f"IQN {iqn} is host {h.name_label}'s ({h.uuid})", iqn, h.name_label)

    async def update_host(self, uuid: str, **fields: Any) -> Host:
        if "iqn" in fields:
            await self.check_iqn_free(fields["iqn"], uuid)
        try:
            return await self._update(Host, uuid, fields)
        except IntegrityError:
            raise XenError("IQN_IN_USE", f"IQN {fields.get('iqn')} is another host's", fields.get("iqn")) from None

    # --- PIFs ------------------------------------------------------------------------------------------

    async def pifs(self, host_uuid: str | None = None) -> list[PIF]:
        where = [PIF.host_uuid == host_uuid] if host_uuid else []
        return sorted(await self._all(PIF, *where), key=lambda p: (p.host_uuid, p.device))

    async def sync_pifs(self, host_uuid: str, links: Sequence[dict[str, Any]]) -> bool:
        """Make the host's PIF rows match what netlink shows (``links``: device, mac, mtu, carrier, kind,
        master, addresses). A purpose set by the admin is kept; a link that went away stays, marked not
        present, so that its purpose survives a NIC being renamed back. Returns whether anything changed."""
        seen = {link["device"]: link for link in links}
        changed = False
        async with self._session() as s, s.begin():
            rows = {p.device: p for p in (await s.scalars(select(PIF).where(PIF.host_uuid == host_uuid))).all()}
            for device, link in seen.items():
                row = rows.get(device)
                if row is None:
                    s.add(PIF(uuid=new_uuid(), host_uuid=host_uuid, purpose="none", present=True, other_config={},
                              **link))
                    changed = True
                    continue
                for k, v in {**link, "present": True}.items():
                    if getattr(row, k) != v:
                        setattr(row, k, v)
                        changed = True
            for device, row in rows.items():
                if device not in seen and row.present:
                    row.present = False
                    changed = True
        return changed

    async def set_pif_purpose(self, host_uuid: str, device: str, purpose: str) -> PIF:
        if purpose not in ("storage", "management", "none"):
            raise XenError("VALUE_INVALID", f"purpose {purpose!r}: use storage, management or none", purpose)
        rows = await self._all(PIF, PIF.host_uuid == host_uuid, PIF.device == device)
        if not rows:
            known = ", ".join(p.device for p in await self.pifs(host_uuid)) or "none"
            raise XenError("HANDLE_INVALID", f"no PIF {device!r} on this host; it has: {known}", "PIF", device)
        return await self._update(PIF, rows[0].uuid, {"purpose": purpose})

    # --- SRs -------------------------------------------------------------------------------------------

    async def srs(self) -> list[SR]:
        return sorted(await self._all(SR), key=lambda r: r.name_label)

    async def sr(self, uuid: str) -> SR:
        return await self._get(SR, uuid)

    async def sr_on(self, scsi_id: str) -> SR | None:
        rows = await self._all(SR, SR.scsi_id == scsi_id)
        return rows[0] if rows else None

    async def create_sr(self, name: str, scsi_id: str, device_config: dict[str, Any], sm_config: dict[str, Any],
                        ) -> SR:
        try:
            return await self._add(SR(uuid=new_uuid(), name_label=name, type="lvmoiscsi", shared=True,
                                      scsi_id=scsi_id, device_config=device_config, sm_config=sm_config,
                                      other_config={}))
        except IntegrityError:
            other = await self.sr_on(scsi_id)
            raise XenError("SRInUse", f"LUN {scsi_id} is used by SR {other.name_label if other else '?'} "
                           f"({other.uuid if other else '?'})", scsi_id) from None

    async def delete_sr(self, uuid: str) -> None:
        """The SR with its PBDs and the secrets they refer to."""
        for pbd in await self.pbds(sr_uuid=uuid):
            await self.delete_pbd(pbd.uuid)
        await self._delete(SR, uuid)

    # --- PBDs ------------------------------------------------------------------------------------------

    async def pbds(self, *, sr_uuid: str | None = None, host_uuid: str | None = None) -> list[PBD]:
        where = ([PBD.sr_uuid == sr_uuid] if sr_uuid else []) + ([PBD.host_uuid == host_uuid] if host_uuid else [])
        return sorted(await self._all(PBD, *where), key=lambda p: (p.sr_uuid, p.host_uuid))

    async def pbd(self, uuid: str) -> PBD:
        return await self._get(PBD, uuid)

    async def create_pbd(self, sr_uuid: str, host_uuid: str, device_config: dict[str, Any]) -> PBD:
        try:
            return await self._add(PBD(uuid=new_uuid(), sr_uuid=sr_uuid, host_uuid=host_uuid,
                                       device_config=device_config, plugged=False, currently_attached=False,
                                       generation=0, observed_generation=0, error={}, other_config={}))
        except IntegrityError:
            raise XenError("PBD_EXISTS", f"SR {sr_uuid} has a PBD on host {host_uuid} already",
                           sr_uuid, host_uuid) from None

    async def update_pbd(self, uuid: str, **fields: Any) -> PBD:
        return await self._update(PBD, uuid, fields)

    async def request_plug(self, uuid: str, plugged: bool) -> PBD:
        """Set the desired state and bump the generation in one statement (two racing requests get two
        generations), so the reconciler acts on each once."""
        async with self._session() as s, s.begin():
            result = await s.execute(update(PBD).where(PBD.uuid == uuid)
                                     .values(plugged=plugged, generation=PBD.generation + 1))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise XenError("HANDLE_INVALID", f"no PBD with uuid {uuid}", "PBD", uuid)
        return await self.pbd(uuid)

    async def settle_pbd(self, uuid: str, generation: int, **fields: Any) -> bool:
        """The reconciler's write of what it did for request ``generation``: applied only if no newer
        request came meanwhile (that one is acted on next). Returns whether it was applied."""
        async with self._session() as s, s.begin():
            result = await s.execute(update(PBD).where(PBD.uuid == uuid, PBD.generation == generation)
                                     .values(**fields))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def delete_pbd(self, uuid: str) -> None:
        pbd = await self._get(PBD, uuid)
        for key, value in pbd.device_config.items():
            if key.endswith("_secret"):
                await self._delete(Secret, value)
        await self._delete(PBD, uuid)

    # --- secrets ---------------------------------------------------------------------------------------

    async def put_secret(self, token: str) -> str:
        row = await self._add(Secret(uuid=new_uuid(), value=token, other_config={}))
        return row.uuid

    async def secret(self, uuid: str) -> str:
        return (await self._get(Secret, uuid)).value

    async def copy_secrets(self, device_config: dict[str, Any]) -> dict[str, Any]:
        """``device_config`` with a new secret row for each ``*_secret`` reference (every PBD holds its own
        copy of the SR's secrets, still encrypted)."""
        out = dict(device_config)
        for key, value in device_config.items():
            if key.endswith("_secret"):
                out[key] = await self.put_secret(await self.secret(value))
        return out

    # --- messages --------------------------------------------------------------------------------------

    async def add_message(self, name: str, priority: int, obj_class: str, obj_uuid: str, body: dict[str, Any],
                          text_: str) -> Message:
        """A message stamped with the store's clock, so that every host's messages sort together."""
        return await self._add(Message(uuid=new_uuid(), name=name, priority=priority, obj_class=obj_class,
                                       obj_uuid=obj_uuid, timestamp=await self.now(), body=body, text=text_,
                                       acknowledged=False, other_config={}))

    async def acknowledge_message(self, uuid: str) -> Message:
        """Mark a message seen: it moves from the current alerts to the past ones (and is kept)."""
        return await self._update(Message, uuid, {"acknowledged": True})

    async def messages(self, *, since: float = 0.0, priority: int | None = None,
                       name: str | None = None) -> list[Message]:
        """Messages from ``since`` on, oldest first; ``priority``: at most that number (1 is the most urgent)."""
        where = [Message.timestamp >= since] + ([Message.priority <= priority] if priority is not None else []) + (
            [Message.name == name] if name else [])
        return sorted(await self._all(Message, *where), key=lambda m: (m.timestamp, m.uuid))


    # --- API tokens ------------------------------------------------------------------------------------

    async def create_token(self, name: str) -> tuple[ApiToken, str]:
        """A new token: its row (the digest only) and the token itself, which is never kept."""
        token = secrets.token_urlsafe(32)
        try:
            row = await self._add(ApiToken(uuid=new_uuid(), name_label=name, digest=token_digest(token),
                                           created=await self.now(), other_config={}))
        except IntegrityError:
            raise XenError("VALUE_INVALID", f"a token named {name!r} exists already", name,
                           advice="Give another name, or delete that token first.") from None
        return row, token

    async def tokens(self) -> list[ApiToken]:
        return sorted(await self._all(ApiToken), key=lambda t: t.name_label)

    async def token_known(self, token: str) -> bool:
        return bool(await self._all(ApiToken, ApiToken.digest == token_digest(token)))

    async def delete_token(self, ref: str) -> None:
        rows = [t for t in await self.tokens() if ref in (t.uuid, t.name_label)]
        if not rows:
            raise XenError("HANDLE_INVALID", f"no API token named or with uuid {ref!r}", "api_token", ref)
        await self._delete(ApiToken, rows[0].uuid)

    # --- dump and restore --------------------------------------------------------------------------------

    async def dump(self) -> dict[str, Any]:
        """Every row of every table, as JSON-ready data (secrets stay encrypted, tokens stay digests)."""
        tables: dict[str, list[dict[str, Any]]] = {}
        async with self._session() as s:
            for cls in _TABLES:
                cols = [c.name for c in cls.__table__.columns]
                rows = (await s.scalars(select(cls))).all()
                tables[cls.__tablename__] = sorted(({c: getattr(r, c) for c in cols} for r in rows),
                                                   key=lambda r: r["uuid"])
        return {"format": DUMP_FORMAT, "version": DUMP_VERSION, "tables": tables}

    async def restore(self, dump: dict[str, Any]) -> dict[str, int]:
        """Load a dump into this store, which must hold no pool; all rows or none. Returns rows per table."""
        if not isinstance(dump, dict) or dump.get("format") != DUMP_FORMAT:
            raise XenError("VALUE_INVALID", "not a sanpath pool dump (no \"format\": \"sanpath-pool-dump\")",
                           advice="Give a file written by sanpath pool dump.")
        if dump.get("version") != DUMP_VERSION:
            raise XenError("VALUE_INVALID", f"pool dump version {dump.get('version')!r}; this sanpath reads "
                           f"version {DUMP_VERSION}", str(dump.get("version")))
        if (existing := await self.pool()) is not None:
            raise XenError("VALUE_INVALID", f"this store holds pool {existing.name_label} ({existing.uuid}) "
                           "already; a dump is restored into an empty store", existing.uuid,
                           advice="Give --db a new, empty store (or wipe this one first).")
        tables = dump.get("tables") or {}
        counts = {}
        try:
            async with self._session() as s, s.begin():
                for cls in _TABLES:
                    cols = {c.name for c in cls.__table__.columns}
                    rows = tables.get(cls.__tablename__, [])
                    for row in rows:
                        if set(row) != cols:
                            raise XenError("VALUE_INVALID", f"pool dump: a {cls.__tablename__} row has columns "
                                           f"{sorted(row)}, expected {sorted(cols)}", cls.__tablename__)
                        s.add(cls(**row))
                    await s.flush()
                    counts[cls.__tablename__] = len(rows)
        except IntegrityError as e:
            raise XenError("VALUE_INVALID", f"pool dump: rows break the schema's rules: {str(e.orig).splitlines()[0]}",
                           advice="The dump is damaged; restore an intact one.") from None
        return counts


def unreachable(e: BaseException) -> XenError:
    reason = str(getattr(e, "orig", None) or e).splitlines()[0] if str(e) else type(e).__name__
    return XenError("STORE_UNREACHABLE", f"the pool store is unreachable: {reason}", reason)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()
