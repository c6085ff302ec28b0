"""Target NOP-In pings: a quiet initiator is pinged, an answering one stays, a silent one is dropped."""

from __future__ import annotations

from dataclasses import replace

from sanpath.iscsi import pdu as P
from sanpath.iscsi.constants import RESERVED_TAG
from sanpath.target.config import quick_config
from sanpath.testing.inproc import TEST_IQN, running_target
from sanpath.testing.rawinit import login


async def test_quiet_initiator_is_pinged_and_dropped_when_silent() -> None:
    spec = replace(quick_config(TEST_IQN, ["127.0.0.1:0"], ["mem:1MiB"]), nop_in_interval=0.2)
    async with running_target(spec=spec) as server:
        host, port = server.portals[0]
        s = await login(host, port, TEST_IQN)
        ping = await s.recv(timeout=10)
        assert isinstance(ping, P.NopIn) and ping.itt == RESERVED_TAG and ping.ttt != RESERVED_TAG
        # answering keeps the connection: the next thing we get is another ping, not a close
        await s.send(P.NopOut(immediate=True, itt=RESERVED_TAG, ttt=ping.ttt, cmdsn=s.cmdsn,
                              expstatsn=s.expstatsn))
        again = await s.recv(timeout=10)
        assert isinstance(again, P.NopIn) and again.ttt != ping.ttt
        # silence: the target gives up on the connection
        while (pdu := await s.recv(timeout=10)) is not None:
            assert isinstance(pdu, P.NopIn)
        assert not server.connections
