"""The arrays the initiator is proven against: tgtd (a target no one here wrote) and the sanpath target,
each on loopback, with optional CHAP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sanpath.initiator.device import ScsiDevice
from sanpath.initiator.session import Session, SessionConfig
from sanpath.iscsi.auth import ChapCredentials
from sanpath.target.config import ChapSpec, LunSpec, PortalGroupSpec, ServerSpec, TargetSpec
from sanpath.target.server import TargetServer
from sanpath.testing.faultproxy import FaultProxy
from sanpath.testing.inproc import TEST_IQN, running_target
from sanpath.testing.tgtd import ChapAccount, TgtdChap, run_tgtd
from tests.helpers.gates import require_peer

KINDS = ["sanpath", "tgtd"]
SIZE = 64 << 20
USER, SECRET = "initiator-user", b"initiator-secret-1234"
TUSER, TSECRET = "target-user", b"target-secret-56789"


@dataclass
class Array:
    kind: str
    host: str
    port: int
    iqn: str
    lun: int
    server: TargetServer | None = None  # the in-process sanpath target, for fault tests

    @property
    def portal(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self) -> str:
        return f"iscsi://{self.portal}/{self.iqn}/{self.lun}"


@asynccontextmanager
async def array(kind: str, tmp_path: Path, *, chap: bool = False, mutual: bool = False) -> AsyncIterator[Array]:
    backing = tmp_path / f"{kind}.img"
    with open(backing, "wb") as f:
        f.truncate(SIZE)
    if kind == "tgtd":
        require_peer("tgtd", "tgtadm", package="tgt")
        tchap = None
        if chap:
            tchap = TgtdChap(ChapAccount(USER, SECRET.decode()),
                             ChapAccount(TUSER, TSECRET.decode()) if mutual else None)
        with run_tgtd(str(backing), chap=tchap) as t:
            for key in ("HeaderDigest", "DataDigest"):  # tgtd offers no digests unless told to
                t.tgtadm("--mode", "target", "--op", "update", "--tid", "1", "--name", key, "--value", "CRC32C,None")
            host, port = t.portal.rsplit(":", 1)
            yield Array(kind, host, int(port), t.iqn, 1)
        return
    iqn = "iqn.2026-11.org.sanpath.test:initiator-suite"
    spec = ServerSpec((TargetSpec(
        iqn, portal_groups=(PortalGroupSpec(1, (("127.0.0.1", 0),)),),
        luns=(LunSpec(0, str(backing), SIZE),),
        chap=ChapSpec(USER, SECRET, TUSER if mutual else None, TSECRET if mutual else None) if chap else None,
    ),))
    async with running_target(spec=spec) as server:
        host, port = server.portals[0]
        yield Array(kind, host, port, iqn, 0, server)


def chap_credentials(mutual: bool = False, algorithms: tuple[int, ...] = (5,)) -> dict[str, object]:
    return {"chap": ChapCredentials(USER, SECRET), "mutual": ChapCredentials(TUSER, TSECRET) if mutual else None,
            "chap_algorithms": algorithms}


def random_blocks(n: int, block: int = 512) -> bytes:
    return os.urandom(n * block)


@asynccontextmanager
async def ua_after_reconnect() -> AsyncIterator[tuple[FaultProxy, Session, ScsiDevice]]:
    """LUN 0 (8 MiB) of the in-process target, reached through a ``FaultProxy`` by a session that
    reconnects; like a real array, every LU raises a UNIT ATTENTION (POWER ON / RESET) after each new login."""
    async with running_target(luns=("mem:8MiB",)) as server:
        proxy = FaultProxy(*server.portals[0])
        host, port = await proxy.start()
        session = await Session.open(SessionConfig(host, port, TEST_IQN, reconnect=True, reconnect_backoff=0.05))
        try:
            dev = await ScsiDevice(session, 0).open()
            for lu in server.targets[TEST_IQN].luns.values():
                lu.ua_on_new_nexus = True
            yield proxy, session, dev
        finally:
            await session.logout()
            await proxy.stop()
