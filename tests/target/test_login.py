"""The target's side of login over real sockets (RFC 7143 §6, §11.12, §11.13, §12): authentication, the
checks that refuse a login with the right status, text continuation, discovery, and what negotiation
changes on the wire afterwards."""

from __future__ import annotations

import struct

import pytest

from sanpath.errors import AuthenticationError
from sanpath.iscsi import pdu as P
from sanpath.iscsi import text as T
from sanpath.iscsi.auth import ChapCredentials, ChapInitiator
from sanpath.iscsi.constants import RESERVED_TAG, LoginStatus
from sanpath.target.config import ChapSpec, LunSpec, PortalGroupSpec, ServerSpec, TargetSpec
from sanpath.target.server import TargetServer
from sanpath.testing.inproc import TEST_IQN, running_target
from sanpath.testing.rawinit import INITIATOR, LoginRefused, RawSession, connect, login

LOOP = (("127.0.0.1", 0),)
USER, SECRET = "host1", b"initiator-secret-1"
TUSER, TSECRET = "array1", b"target-secret-22"
CHAP = ChapSpec(USER, SECRET, TUSER, TSECRET)
CHAP_ONE_WAY = ChapSpec(USER, SECRET)


def target_spec(iqn: str = TEST_IQN, *, groups: tuple[PortalGroupSpec, ...] = (PortalGroupSpec(1, LOOP),),
                chap: ChapSpec | None = None, initiators: tuple[str, ...] = ()) -> TargetSpec:
    return TargetSpec(iqn, portal_groups=groups, luns=(LunSpec(0, None, 1 << 20),), chap=chap,
                      initiators=initiators)


def server(*targets: TargetSpec) -> ServerSpec:
    return ServerSpec(targets)


def chap(*, secret: bytes = SECRET, user: str = USER, mutual: bytes | None = None, alg: int = 5) -> ChapInitiator:
    target = ChapCredentials(TUSER, mutual) if mutual is not None else None
    return ChapInitiator(ChapCredentials(user, secret), target=target, algorithms=(alg,))


def portal(srv: TargetServer) -> tuple[str, int]:
    return srv.portals[0]


def status(resp: P.LoginResponse) -> int:
    return resp.status_class << 8 | resp.status_detail


async def step(s: RawSession, keys: dict[str, str] | bytes, **kw: int) -> P.LoginResponse:
    resp = await s.login_step(keys, **kw)  # type: ignore[arg-type]
    assert isinstance(resp, P.LoginResponse), resp
    return resp


async def assert_closed(s: RawSession) -> None:
    assert await s.recv() is None
    await s.close()


async def refused(srv: TargetServer, target: str | None = TEST_IQN, **kw: object) -> LoginRefused:
    with pytest.raises(LoginRefused) as e:
        await login(*portal(srv), target, **kw)  # type: ignore[arg-type]
    await assert_closed(e.value.session)
    return e.value


async def first_request(srv: TargetServer, keys: dict[str, str], **kw: int) -> tuple[P.LoginResponse, RawSession]:
    s = await connect(*portal(srv))
    return await step(s, keys, csg=kw.pop("csg", 0), nsg=kw.pop("nsg", 1), **kw), s


def normal_keys(target: str = TEST_IQN, auth: str = "None") -> dict[str, str]:
    return {"InitiatorName": INITIATOR, "SessionType": "Normal", "TargetName": target, "AuthMethod": auth}


READ10_1 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0])


async def works(s: RawSession) -> None:
    st, data, _ = await s.command(READ10_1, read=512)
    assert st == 0 and len(data) == 512
    await s.close()


# --- no authentication ----------------------------------------------------------------------------


async def test_login_without_auth_reaches_full_feature_phase() -> None:
    async with running_target() as srv:
        s = await login(*portal(srv), TEST_IQN)
        assert s.answers["MaxRecvDataSegmentLength"].isdigit()
        assert s.answers["ErrorRecoveryLevel"] == "0"
        await works(s)


async def test_initiator_offering_chap_or_none_gets_none_from_an_open_target() -> None:
    async with running_target() as srv:
        resp, s = await first_request(srv, normal_keys(auth="CHAP,None"))
        assert status(resp) == 0 and resp.transit
        assert T.decode(resp.data)["AuthMethod"] == "None"
        await s.close()


# --- CHAP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", [5, 7], ids=["MD5", "SHA-256"])
@pytest.mark.parametrize("mutual", [False, True], ids=["one-way", "mutual"])
async def test_chap_login(alg: int, mutual: bool) -> None:
    async with running_target(spec=server(target_spec(chap=CHAP))) as srv:
        c = chap(alg=alg, mutual=TSECRET if mutual else None)
        s = await login(*portal(srv), TEST_IQN, chap=c)
        assert c.done and c.algorithm is not None and c.algorithm.code == alg
        assert c.target_authenticated == mutual
        await works(s)


@pytest.mark.parametrize("alg", [5, 7], ids=["MD5", "SHA-256"])
async def test_chap_wrong_secret_refused_and_closed(alg: int) -> None:
    async with running_target(spec=server(target_spec(chap=CHAP_ONE_WAY))) as srv:
        e = await refused(srv, chap=chap(secret=b"not-the-right-secret", alg=alg))
        assert e.status == LoginStatus.AUTHENTICATION_FAILURE


async def test_chap_wrong_user_refused() -> None:
    async with running_target(spec=server(target_spec(chap=CHAP_ONE_WAY))) as srv:
        e = await refused(srv, chap=chap(user="somebody-else"))
        assert e.status == LoginStatus.AUTHENTICATION_FAILURE


async def test_mutual_chap_initiator_detects_wrong_target_secret() -> None:
    async with running_target(spec=server(target_spec(chap=CHAP))) as srv:
        with pytest.raises(AuthenticationError):
            await login(*portal(srv), TEST_IQN, chap=chap(mutual=b"what-we-expect-x"))


async def test_mutual_chap_asked_of_a_target_without_mutual_credentials_refused() -> None:
    async with running_target(spec=server(target_spec(chap=CHAP_ONE_WAY))) as srv:
        e = await refused(srv, chap=chap(mutual=TSECRET))
        assert e.status == LoginStatus.AUTHENTICATION_FAILURE


async def test_chap_target_refuses_auth_method_none() -> None:
    async with running_target(spec=server(target_spec(chap=CHAP))) as srv:
        e = await refused(srv)  # rawinit offers AuthMethod=None with T=1 to the operational stage
        assert e.status == LoginStatus.AUTHENTICATION_FAILURE


async def test_chap_target_refuses_a_login_starting_in_the_operational_stage() -> None:
    async with running_target(spec=server(target_spec(chap=CHAP))) as srv:
        keys = normal_keys() | {"MaxRecvDataSegmentLength": "8192"}
        resp, s = await first_request(srv, keys, csg=1, nsg=3)
        assert status(resp) == LoginStatus.AUTHENTICATION_FAILURE
        await assert_closed(s)


async def test_chap_target_refuses_leaving_security_before_chap_finished() -> None:
    async with running_target(spec=server(target_spec(chap=CHAP))) as srv:
        resp, s = await first_request(srv, normal_keys(auth="CHAP"), transit=False)
        assert status(resp) == 0 and T.decode(resp.data)["AuthMethod"] == "CHAP"
        resp = await step(s, {"CHAP_A": "5"}, csg=0, nsg=1)  # asks to transit, but CHAP is under way
        assert status(resp) == 0 and not resp.transit
        assert {"CHAP_A", "CHAP_I", "CHAP_C"} <= T.decode(resp.data).keys()
        resp = await step(s, {"MaxRecvDataSegmentLength": "8192"}, csg=1, nsg=3)  # skip the response
        assert status(resp) == LoginStatus.AUTHENTICATION_FAILURE
        await assert_closed(s)


# --- who may log in to what ----------------------------------------------------------------------


async def test_acl_refuses_unknown_initiator_and_admits_listed_one() -> None:
    other = "iqn.2026-11.org.sanpath.test:allowed"
    async with running_target(spec=server(target_spec(initiators=(other,)))) as srv:
        e = await refused(srv)
        assert e.status == LoginStatus.AUTHORIZATION_FAILURE
        await works(await login(*portal(srv), TEST_IQN, initiator=other))


async def test_unknown_target_name() -> None:
    async with running_target() as srv:
        e = await refused(srv, "iqn.2026-11.org.sanpath.test:nosuch")
        assert e.status == LoginStatus.NOT_FOUND


async def test_missing_initiator_name() -> None:
    async with running_target() as srv:
        keys = normal_keys()
        del keys["InitiatorName"]
        resp, s = await first_request(srv, keys)
        assert status(resp) == LoginStatus.MISSING_PARAMETER
        await assert_closed(s)


async def test_missing_target_name_in_a_normal_session() -> None:
    async with running_target() as srv:
        keys = normal_keys()
        del keys["TargetName"]
        resp, s = await first_request(srv, keys)
        assert status(resp) == LoginStatus.MISSING_PARAMETER
        await assert_closed(s)


async def test_nonzero_tsih_refused() -> None:
    async with running_target() as srv:
        resp, s = await first_request(srv, normal_keys(), tsih=0x1234)
        assert status(resp) == LoginStatus.SESSION_DOES_NOT_EXIST
        await assert_closed(s)


async def test_unsupported_version_refused() -> None:
    async with running_target() as srv:
        resp, s = await first_request(srv, normal_keys(), version=2)
        assert status(resp) == LoginStatus.UNSUPPORTED_VERSION
        assert resp.version_max == 0 and resp.version_active == 0
        await assert_closed(s)


async def test_target_portal_group_tag_in_first_response() -> None:
    spec = server(target_spec(groups=(PortalGroupSpec(7, LOOP),)))
    async with running_target(spec=spec) as srv:
        resp, s = await first_request(srv, normal_keys(), transit=False)
        assert status(resp) == 0
        assert T.decode(resp.data)["TargetPortalGroupTag"] == "7"
        resp = await step(s, {}, csg=0, nsg=1)
        assert status(resp) == 0 and "TargetPortalGroupTag" not in T.decode(resp.data)
        await s.close()


async def test_login_request_continued_over_several_pdus() -> None:
    async with running_target() as srv:
        s = await connect(*portal(srv))
        body = T.encode(normal_keys() | {"X-org.sanpath.padding": "p" * 200})
        pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
        assert len(pieces) >= 3
        for piece in pieces[:-1]:
            resp = await step(s, piece, csg=0, transit=False, cont=True)
            assert status(resp) == 0 and resp.data == b"" and not resp.transit
        resp = await step(s, pieces[-1], csg=0, nsg=1)
        assert status(resp) == 0 and resp.transit
        answers = T.decode(resp.data)
        assert answers["AuthMethod"] == "None" and answers["TargetPortalGroupTag"] == "1"
        assert answers["X-org.sanpath.padding"] == "NotUnderstood"
        ops = {"MaxRecvDataSegmentLength": "262144", "HeaderDigest": "None", "DataDigest": "None"}
        resp = await step(s, ops, csg=1, nsg=3)
        assert status(resp) == 0 and resp.transit and resp.tsih != 0
        s.cmdsn = resp.expcmdsn
        await works(s)


async def test_continued_login_request_with_transit_refused() -> None:
    async with running_target() as srv:
        s = await connect(*portal(srv))
        resp = await step(s, normal_keys(), csg=0, nsg=1, cont=True)  # T=1 with C=1 (§11.12.2)
        assert status(resp) == LoginStatus.INITIATOR_ERROR
        await assert_closed(s)


# --- discovery -----------------------------------------------------------------------------------


async def send_targets(s: RawSession, value: str = "All") -> tuple[list[tuple[str, str]], list[P.TextResponse]]:
    """SendTargets, following C-bit continuation with the target's TTT (RFC 7143 §11.10.4)."""
    itt, ttt, data, body, got = s.next_itt(), RESERVED_TAG, T.encode({"SendTargets": value}), b"", []
    while True:
        await s.send(P.TextRequest(data=data, itt=itt, ttt=ttt, cmdsn=s.cmdsn, expstatsn=s.expstatsn))
        s.cmdsn += 1
        resp = await s.recv()
        assert isinstance(resp, P.TextResponse) and resp.itt == itt, resp
        got.append(resp)
        body += resp.data
        if resp.final:
            assert not resp.cont and resp.ttt == RESERVED_TAG
            return T.decode_pairs(body), got
        assert resp.cont and resp.ttt != RESERVED_TAG
        ttt, data = resp.ttt, b""


async def test_discovery_send_targets_lists_every_portal_filtered_by_acl() -> None:
    other = ("127.0.0.2", 0)
    a = target_spec("iqn.2026-11.org.sanpath.test:a",
                    groups=(PortalGroupSpec(1, LOOP), PortalGroupSpec(2, (other,))))
    b = target_spec("iqn.2026-11.org.sanpath.test:b", groups=(PortalGroupSpec(3, LOOP),))
    hidden = target_spec("iqn.2026-11.org.sanpath.test:hidden", initiators=("iqn.2026-11.org.x:someone",))
    async with running_target(spec=server(a, b, hidden)) as srv:
        ports = {host: port for host, port in srv.portals}
        s = await login("127.0.0.1", ports["127.0.0.1"], None)
        pairs, _ = await send_targets(s)
        assert pairs == [
            ("TargetName", a.iqn),
            ("TargetAddress", f"127.0.0.1:{ports['127.0.0.1']},1"),
            ("TargetAddress", f"127.0.0.2:{ports['127.0.0.2']},2"),
            ("TargetName", b.iqn),
            ("TargetAddress", f"127.0.0.1:{ports['127.0.0.1']},3"),
        ]
        pairs, _ = await send_targets(s, b.iqn)
        assert [v for k, v in pairs if k == "TargetName"] == [b.iqn]
        await s.close()


async def test_discovery_session_refuses_scsi_commands() -> None:
    async with running_target() as srv:
        s = await login(*portal(srv), None)
        await s.send(P.ScsiCommand(itt=9, cmdsn=s.cmdsn, cdb=bytes(16)))
        resp = await s.recv()
        assert isinstance(resp, P.Reject)
        await s.close()


async def test_long_send_targets_answer_is_continued() -> None:
    targets = [target_spec(f"iqn.2026-11.org.sanpath.test:many-targets-with-long-names-{i:03d}") for i in range(40)]
    async with running_target(spec=server(*targets)) as srv:
        s = await login(*portal(srv), None, extra={"MaxRecvDataSegmentLength": "512"})
        pairs, responses = await send_targets(s)
        assert len(responses) > 3
        assert all(len(r.data) <= 512 for r in responses)
        assert [v for k, v in pairs if k == "TargetName"] == [t.iqn for t in targets]
        assert len([v for k, v in pairs if k == "TargetAddress"]) == 40
        await s.close()


# --- negotiation results on the wire -------------------------------------------------------------


def read10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


async def test_data_in_respects_initiator_max_recv_data_segment_length() -> None:
    async with running_target() as srv:
        s = await login(*portal(srv), TEST_IQN, extra={"MaxRecvDataSegmentLength": "4096"})
        st, data, _ = await s.command(read10(0, 128), read=65536)
        assert st == 0 and len(data) == 65536
        data_in = [p for p in s.seen if isinstance(p, P.DataIn)]
        assert len(data_in) == 16 and all(len(p.data) <= 4096 for p in data_in)
        assert [p.datasn for p in data_in] == list(range(16))
        assert [p.offset for p in data_in] == list(range(0, 65536, 4096))
        await s.close()


async def test_small_max_burst_length_gives_r2ts_of_that_size() -> None:
    async with running_target() as srv:
        extra = {"MaxBurstLength": "8192", "FirstBurstLength": "4096", "ImmediateData": "No"}
        s = await login(*portal(srv), TEST_IQN, extra=extra)
        assert s.answers["MaxBurstLength"] == "8192" and s.answers["ImmediateData"] == "No"
        assert s.answers["InitialR2T"] == "Yes" and s.answers["FirstBurstLength"] == "Irrelevant"  # §13.14
        payload = bytes(range(256)) * 128  # 32 KiB
        st, _, _ = await s.command(write10(8, 64), write=payload)
        assert st == 0
        r2ts = [p for p in s.seen if isinstance(p, P.R2T)]
        assert [(r.offset, r.length) for r in r2ts] == [(i, 8192) for i in range(0, 32768, 8192)]
        assert [r.r2tsn for r in r2ts] == [0, 1, 2, 3]
        st, back, _ = await s.command(read10(8, 64), read=32768)
        assert st == 0 and back == payload
        data_in = [p for p in s.seen if isinstance(p, P.DataIn)]
        finals = [p.offset + len(p.data) for p in data_in if p.final]  # F ends each burst (§11.7.1)
        assert finals == [8192, 16384, 24576, 32768]
        await s.close()


async def test_digests_negotiated_and_used() -> None:
    async with running_target() as srv:
        s = await login(*portal(srv), TEST_IQN, digests=True)
        assert s.answers["HeaderDigest"] == "CRC32C" and s.answers["DataDigest"] == "CRC32C"
        payload = b"digest" * 512 + bytes(1024)
        st, _, _ = await s.command(write10(0, 8), write=payload)
        assert st == 0
        st, back, _ = await s.command(read10(0, 8), read=4096)
        assert st == 0 and back == payload
        await s.close()
