"""Initiator side of login (RFC 7143 §6), sans-IO: produce Login Requests, consume Login Responses.

``InitiatorLogin.start()`` gives the first request; ``receive(response)`` gives the next one, or None
when the login reached full feature phase (then ``result`` holds the negotiated parameters). Refusals
raise ``LoginError`` (with the status of §11.13.5, and a message that says what to do), CHAP failures
``AuthenticationError``, redirections ``LoginRedirect`` carrying the new address.

Stages: security (AuthMethod, CHAP when configured) -> operational (every operational key we want) ->
full feature phase. Without CHAP the security stage is one exchange that transits at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LoginError, RemoteProtocolError
from ..iscsi import pdu as P
from ..iscsi import stages
from ..iscsi import text as T
from ..iscsi.auth import ChapInitiator
from ..iscsi.constants import ISCSI_VERSION, LoginStatus, Stage
from ..iscsi.keys import Negotiation, Phase, Role, SessionParams

# What each login status means for the person reading the error (RFC 7143 §11.13.5).
_ADVICE = {
    LoginStatus.AUTHENTICATION_FAILURE: "check the CHAP user and secret on both sides",
    LoginStatus.AUTHORIZATION_FAILURE: "add this initiator's IQN to the target's ACL",
    LoginStatus.NOT_FOUND: "check the target IQN (run discovery on the portal)",
    LoginStatus.TARGET_REMOVED: "the target no longer exists on this portal",
    LoginStatus.UNSUPPORTED_VERSION: "the target does not speak iSCSI version 0",
    LoginStatus.TOO_MANY_CONNECTIONS: "the target refuses more connections",
    LoginStatus.MISSING_PARAMETER: "a required key was missing",
    LoginStatus.SESSION_DOES_NOT_EXIST: "the session to add a connection to does not exist",
    LoginStatus.SERVICE_UNAVAILABLE: "the target is temporarily unavailable; retry later",
    LoginStatus.OUT_OF_RESOURCES: "the target is out of resources; retry later",
}


class LoginRedirect(Exception):
    """The target moved (status class 1): log in at ``address`` instead (§11.13.5, TargetAddress)."""

    def __init__(self, address: str, permanent: bool) -> None:
        super().__init__(f"target moved {'permanently' if permanent else 'temporarily'} to {address}")
        self.address = address
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class LoginResult:
    params: SessionParams
    tsih: int
    expstatsn: int
    expcmdsn: int
    maxcmdsn: int
    tpgt: int | None


def default_keys(*, max_recv_data_segment_length: int = 262144, max_burst_length: int = 16776192,
                 first_burst_length: int = 262144, immediate_data: bool = True, initial_r2t: bool = False,
                 header_digest: bool = False, data_digest: bool = False,
                 max_outstanding_r2t: int = 16) -> dict[str, str]:
    """The operational keys sanpath offers (each negotiable per session)."""
    def yn(b: bool) -> str:
        return "Yes" if b else "No"

    return {
        "HeaderDigest": "CRC32C" if header_digest else "None",
        "DataDigest": "CRC32C" if data_digest else "None",
        "MaxConnections": "1",
        "InitialR2T": yn(initial_r2t),
        "ImmediateData": yn(immediate_data),
        "MaxRecvDataSegmentLength": str(max_recv_data_segment_length),
        "MaxBurstLength": str(max_burst_length),
        "FirstBurstLength": str(first_burst_length),
        "DefaultTime2Wait": "0",
        "DefaultTime2Retain": "0",
        "MaxOutstandingR2T": str(max_outstanding_r2t),
        "DataPDUInOrder": "Yes",
        "DataSequenceInOrder": "Yes",
        "ErrorRecoveryLevel": "0",
    }


class InitiatorLogin:
    def __init__(self, *, initiator_name: str, target_name: str | None, isid: bytes, portal: str,
                 keys: dict[str, str] | None = None, chap: ChapInitiator | None = None, tsih: int = 0,
                 cmdsn: int = 0, initiator_alias: str = "") -> None:
        self.initiator_name = initiator_name
        self.target_name = target_name
        self.isid = isid
        self.portal = portal
        self.chap = chap
        self.tsih = tsih
        self.cmdsn = cmdsn
        self.expstatsn = 0
        self.stage = Stage.SECURITY
        self.discovery = target_name is None
        ops = dict(keys or default_keys())
        if self.discovery:
            ops = {k: v for k, v in ops.items() if k in ("HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength")}
        self._ops = ops
        # With CHAP configured, a normal session insists on it (no silent downgrade); a discovery session
        # also accepts a target that does not authenticate discovery (many arrays do not).
        auth = "None"
        if chap is not None:
            auth = "CHAP,None" if self.discovery else "CHAP"
        local = {"AuthMethod": auth, **ops}
        self.negotiation = Negotiation(Role.INITIATOR, local, phase=Phase.SECURITY, use_irrelevant=False)
        self.reassembler = T.TextReassembler()
        self.result: LoginResult | None = None
        self._chap_started = False
        self._tpgt: int | None = None
        self._alias = initiator_alias

    def _request(self, keys: dict[str, str], *, transit: bool, nsg: int = 0, cont: bool = False) -> P.LoginRequest:
        return P.LoginRequest(data=T.encode(list(keys.items())) if keys else b"", transit=transit, cont=cont,
                              csg=self.stage, nsg=nsg if transit else 0, version_max=ISCSI_VERSION,
                              version_min=ISCSI_VERSION, isid=self.isid, tsih=self.tsih, itt=0,
                              cid=0, cmdsn=self.cmdsn, expstatsn=self.expstatsn)

    def start(self) -> P.LoginRequest:
        keys = {"InitiatorName": self.initiator_name,
                "SessionType": "Discovery" if self.discovery else "Normal"}
        if self.target_name is not None:
            keys["TargetName"] = self.target_name
        if self._alias:
            keys["InitiatorAlias"] = self._alias
        keys.update(self.negotiation.offer(["AuthMethod"]))
        # Without CHAP, ask to move on right away; with it, stay until CHAP is done.
        return self._request(keys, transit=self.chap is None, nsg=Stage.OPERATIONAL)

    def receive(self, resp: P.LoginResponse) -> P.LoginRequest | None:
        """The next request to send, or None when full feature phase is reached."""
        self.expstatsn = (resp.statsn + 1) & 0xFFFFFFFF
        status = resp.status_class << 8 | resp.status_detail
        received = self._keys(resp) if status == 0 or resp.status_class == 1 else {}
        if resp.status_class == 1:
            address = received.get("TargetAddress", "")
            if not address:
                raise LoginError("redirected without a TargetAddress", portal=self.portal, status=status)
            raise LoginRedirect(address, status == LoginStatus.TARGET_MOVED_PERMANENTLY)
        if status != 0:
            try:
                name = LoginStatus(status).name.lower().replace("_", " ")
            except ValueError:
                name = "unknown status"
            advice = _ADVICE.get(status, "see the target's log")  # type: ignore[call-overload]
            target = f" to {self.target_name}" if self.target_name else ""
            raise LoginError(f"login{target} refused: {name} (0x{status:04x}); {advice}",
                             portal=self.portal, status=status)
        if resp.cont:  # the target continues its answer: ask for the rest (§6.1)
            return self._request({}, transit=False)
        if resp.csg != self.stage:
            raise RemoteProtocolError(f"login response in stage {resp.csg}, we are in {self.stage} (RFC 7143 6.3)")
        if "TargetPortalGroupTag" in received:
            self._tpgt = int(received["TargetPortalGroupTag"])
        answers = self.negotiation.receive({k: v for k, v in received.items() if k != "TargetPortalGroupTag"})
        if self.stage == Stage.SECURITY:
            return self._security(resp, received, answers)
        return self._operational(resp, answers)

    def _keys(self, resp: P.LoginResponse) -> dict[str, str]:
        text = self.reassembler.feed(resp.data, resp.cont)
        return T.decode(text) if text else {}

    def _security(self, resp: P.LoginResponse, received: dict[str, str],
                  answers: dict[str, str]) -> P.LoginRequest | None:
        method = self.negotiation.results.get("AuthMethod")
        if self.chap is not None and not (self.discovery and method == "None"):
            if method != "CHAP":
                raise LoginError(f"CHAP is configured but the target answered AuthMethod={method}; "
                                 "configure CHAP on the target too, or remove it here", portal=self.portal)
            if not self._chap_started:
                self._chap_started = True
                return self._request({**answers, **self.chap.start()}, transit=False)
            chap_keys = {k: v for k, v in received.items() if k.startswith("CHAP_")}
            reply = self.chap.receive(chap_keys)
            if reply:
                return self._request({**answers, **reply}, transit=True, nsg=Stage.OPERATIONAL)
            if not self.chap.done:
                raise RemoteProtocolError("CHAP exchange stalled (RFC 7143 12.1.3)")
        elif method not in (None, "None"):
            raise LoginError(f"the target requires authentication (AuthMethod={method}); configure CHAP",
                             portal=self.portal)
        if not resp.transit:
            return self._request(answers, transit=True, nsg=Stage.OPERATIONAL)
        if self._transit(resp) == Stage.FULL_FEATURE:
            self._finish(resp)
            return None
        self.negotiation.phase = Phase.OPERATIONAL
        return self._request({**answers, **self.negotiation.offer()}, transit=True, nsg=Stage.FULL_FEATURE)

    def _transit(self, resp: P.LoginResponse) -> Stage:
        """The target granted a transit: the stage moves as the shared table allows (RFC 7143 6.3)."""
        try:
            self.stage = stages.transit(Role.INITIATOR, resp.csg, resp.nsg)
        except stages.StageError as e:
            raise RemoteProtocolError(f"login response: {e}") from None
        return self.stage

    def _operational(self, resp: P.LoginResponse, answers: dict[str, str]) -> P.LoginRequest | None:
        if resp.transit and self._transit(resp) == Stage.FULL_FEATURE:
            if not self.negotiation.complete:
                raise RemoteProtocolError(f"target moved to full feature phase without answering "
                                          f"{', '.join(sorted(self.negotiation.pending))} (RFC 7143 6.2)")
            self._finish(resp)
            return None
        return self._request(answers, transit=True, nsg=Stage.FULL_FEATURE)

    def _finish(self, resp: P.LoginResponse) -> None:
        self.result = LoginResult(self.negotiation.params(), resp.tsih, self.expstatsn, resp.expcmdsn,
                                  resp.maxcmdsn, self._tpgt)
