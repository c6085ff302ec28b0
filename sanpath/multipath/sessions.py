"""The sessions behind paths, one per (source, portal, target IQN), shared by every LUN path through it.

Re-login goes through here, so that paths of several LUNs behind one dead session bring up exactly one
new session (with the old ISID, which makes the target reinstate and fence the old one) instead of one
each: sessions with one ISID would keep reinstating each other (PEERS.md, failure mode 8)."""

from __future__ import annotations

import asyncio
import dataclasses

from ..initiator.session import Session, SessionConfig

Key = tuple[str | None, str, int, str | None]


def key_of(config: SessionConfig) -> Key:
    return (config.source, config.host, config.port, config.target)


class SessionPool:
    def __init__(self) -> None:
        self.current: dict[Key, Session] = {}
        self._locks: dict[Key, asyncio.Lock] = {}

    async def open(self, config: SessionConfig) -> Session:
        key = key_of(config)
        async with self._locks.setdefault(key, asyncio.Lock()):
            session = self.current.get(key)
            if session is None or not session.logged_in:
                session = await Session.open(config)
                self.current[key] = session
            return session

    async def relogin(self, old: Session, *, connect_timeout: float | None = None) -> Session:
        """The live session replacing ``old``: an existing one if another path already logged in again,
        else a new login with the old ISID (its TCP connection given up after ``connect_timeout``)."""
        key = key_of(old.config)
        async with self._locks.setdefault(key, asyncio.Lock()):
            session = self.current.get(key)
            if session is not None and session is not old and session.logged_in:
                return session
            config = dataclasses.replace(old.config, isid=old.isid)
            if connect_timeout is not None:
                config = dataclasses.replace(config, connect_timeout=min(connect_timeout, config.login_timeout))
            session = await Session.open(config)
            self.current[key] = session
            return session

    async def close(self) -> None:
        for session in list(self.current.values()):
            await session.logout()
        self.current.clear()
