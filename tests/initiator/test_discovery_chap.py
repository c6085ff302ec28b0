"""Discovery sessions with CHAP: an array that requires it ([server] discovery_chap) refuses anonymous
discovery and answers an initiator with the right secret; an array that does not require it still
answers an initiator configured with CHAP."""

from __future__ import annotations

from dataclasses import replace

from sanpath.initiator.discovery import discover
from sanpath.initiator.session import SessionConfig
from sanpath.iscsi.auth import ChapCredentials
from sanpath.target.config import ChapSpec, quick_config
from sanpath.testing.inproc import TEST_IQN, running_target

SECRET = b"discovery-secret-42"


async def test_discovery_chap_required() -> None:
    spec = replace(quick_config(TEST_IQN, ["127.0.0.1:0"], ["mem:1MiB"]),
                   discovery_chap=ChapSpec("disc-user", SECRET))
    async with running_target(spec=spec) as server:
        host, port = server.portals[0]
        records, errors = await discover([(host, port)], SessionConfig("", nop_interval=0))
        assert not records and errors[f"{host}:{port}"].status == 0x0201  # type: ignore[attr-defined]
        good = SessionConfig("", nop_interval=0, chap=ChapCredentials("disc-user", SECRET))
        records, errors = await discover([(host, port)], good)
        assert not errors and [r.iqn for r in records] == [TEST_IQN]
        wrong = SessionConfig("", nop_interval=0, chap=ChapCredentials("disc-user", b"not-the-secret-99"))
        records, errors = await discover([(host, port)], wrong)
        assert not records and "CHAP" in str(errors[f"{host}:{port}"])


async def test_chap_configured_but_discovery_open() -> None:
    async with running_target() as server:
        host, port = server.portals[0]
        config = SessionConfig("", nop_interval=0, chap=ChapCredentials("disc-user", SECRET))
        records, errors = await discover([(host, port)], config)
        assert not errors and [r.iqn for r in records] == [TEST_IQN]
