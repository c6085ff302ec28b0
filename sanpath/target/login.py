"""Target side of login (RFC 7143 §6): stages, transitions, text continuation, authentication,
operational negotiation, and the checks that decide who may log in to what.

The stage rules are the table both roles share (``sanpath.iscsi.stages``).
Sans-IO: ``TargetLogin.receive(LoginRequest)`` returns the Login Response to send and, once the login
reaches full feature phase, the negotiated result; a refusal raises ``LoginFailed`` carrying the
response with the status class and detail of §11.13.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import AuthenticationError, RemoteProtocolError
from ..iscsi import pdu as P
from ..iscsi import stages
from ..iscsi import text as T
from ..iscsi.auth import ChapCredentials, ChapTarget
from ..iscsi.constants import ISCSI_VERSION, LoginStatus, Stage
from ..iscsi.keys import Negotiation, Phase, Role, SessionParams

if TYPE_CHECKING:
    from .server import Target, TargetServer

MAX_RECV_DATA_SEGMENT = 262144  # what the target declares it can receive in full feature phase
MAX_BURST_LENGTH = (16 << 20) - 1024  # the largest multiple of 1 KiB below the 2**24 limit (§13.13)
FIRST_BURST_LENGTH = 262144  # unsolicited data per command: bounds memory at window x 256 KiB

_PHASE = {Stage.SECURITY: Phase.SECURITY, Stage.OPERATIONAL: Phase.OPERATIONAL}


class LoginFailed(Exception):
    """The login is refused; ``response`` is the Login Response to send before closing."""

    def __init__(self, status: LoginStatus, message: str, response: P.LoginResponse) -> None:
        super().__init__(f"{message} (status 0x{status:04x} {status.name})")
        self.status = status
        self.response = response


class TargetLogin:
    """Drives one connection's login, from the first Login Request to full feature phase."""

    @dataclass(frozen=True, slots=True)
    class Result:
        target: Target | None  # None for a discovery session
        tpgt: int
        initiator_name: str
        isid: bytes
        tsih: int
        params: SessionParams
        expcmdsn: int
        statsn: int

    def __init__(self, server: TargetServer, reachable: list[tuple[Target, int]], peer: str) -> None:
        self.server = server
        self.reachable = reachable
        self.peer = peer
        self.first: P.LoginRequest | None = None
        self.stage = Stage.SECURITY
        self.statsn = 0x1000
        self.reassembler = T.TextReassembler()
        self.outgoing: list[bytes] = []  # rest of a response sent with the C bit
        self.negotiation: Negotiation | None = None
        self.target: Target | None = None
        self.tpgt = 0
        self.initiator_name = ""
        self.chap: ChapTarget | None = None
        self.authenticated = False
        self.declared = False

    # --- helpers ----------------------------------------------------------------------------------

    def _response(self, req: P.LoginRequest, data: bytes = b"", *, transit: bool = False, cont: bool = False,
                  tsih: int = 0, status: LoginStatus = LoginStatus.SUCCESS) -> P.LoginResponse:
        statsn = self.statsn
        self.statsn = (statsn + 1) & 0xFFFFFFFF
        return P.LoginResponse(data=data, transit=transit, cont=cont, csg=req.csg,
                               nsg=req.nsg if transit else 0, version_max=ISCSI_VERSION,
                               version_active=ISCSI_VERSION, isid=req.isid, tsih=tsih, itt=req.itt,
                               statsn=statsn, expcmdsn=req.cmdsn,
                               maxcmdsn=(req.cmdsn + self.server.spec.cmd_window - 1) & 0xFFFFFFFF,
                               status_class=status >> 8, status_detail=status & 0xFF)

    def _fail(self, req: P.LoginRequest, status: LoginStatus, message: str) -> LoginFailed:
        return LoginFailed(status, f"{self.peer}: {message}", self._response(req, status=status))

    # --- the state machine -----------------------------------------------------------------------

    def receive(self, req: P.LoginRequest) -> tuple[P.LoginResponse, TargetLogin.Result | None]:
        try:
            return self._receive(req)
        except AuthenticationError as e:
            raise self._fail(req, LoginStatus.AUTHENTICATION_FAILURE, str(e)) from None
        except RemoteProtocolError as e:
            raise self._fail(req, LoginStatus.INITIATOR_ERROR, str(e)) from None

    def _receive(self, req: P.LoginRequest) -> tuple[P.LoginResponse, TargetLogin.Result | None]:
        if req.cont and req.transit:
            raise self._fail(req, LoginStatus.INITIATOR_ERROR,
                             "a Login Request with the C bit set must have T clear (RFC 7143 11.12.2)")
        if self.first is None:
            self._check_first(req)
        elif (req.isid, req.tsih, req.itt) != (self.first.isid, self.first.tsih, self.first.itt):
            raise self._fail(req, LoginStatus.INITIATOR_ERROR,
                             "ISID, TSIH and ITT must stay the same through a login (RFC 7143 11.12)")
        if req.csg != self.stage and not (self.stage == Stage.SECURITY and req.csg == Stage.OPERATIONAL
                                          and not self._auth_required()):
            if req.csg == Stage.OPERATIONAL and self._auth_required():
                raise self._fail(req, LoginStatus.AUTHENTICATION_FAILURE,
                                 "this target requires CHAP; the initiator skipped the security stage")
            raise self._fail(req, LoginStatus.INITIATOR_ERROR,
                             f"login request in stage {req.csg}, expected {self.stage} (RFC 7143 6.3)")
        if req.csg != self.stage:
            self.stage = Stage(req.csg)
            self._new_phase()
        if self.outgoing:  # the initiator is collecting a long response of ours (§6.1, C bit)
            if req.data:
                raise self._fail(req, LoginStatus.INITIATOR_ERROR,
                                 "login request with data while our response is continued (RFC 7143 6.1)")
            piece = self.outgoing.pop(0)
            return self._response(req, piece, cont=bool(self.outgoing)), None
        text = self.reassembler.feed(req.data, req.cont)
        if text is None:
            return self._response(req), None  # ask for the rest of a continued request
        received = T.decode(text)
        leading = self.first is None
        if leading:
            self._first_keys(req, received)
            self.first = req
        answers = self._negotiate(req, received, leading)
        transit, result = self._transit(req)
        body = T.encode(list(answers.items()))
        pieces = T.split(body, T.MIN_NEGOTIATION_BYTES) if body else [b""]
        if len(pieces) > 1:
            self.outgoing = pieces[1:]
            return self._response(req, pieces[0], cont=True), None
        tsih = result.tsih if result is not None else 0
        return self._response(req, pieces[0], transit=transit, tsih=tsih), result

    def _check_first(self, req: P.LoginRequest) -> None:
        if req.version_min > ISCSI_VERSION or req.version_max < ISCSI_VERSION:
            raise self._fail(req, LoginStatus.UNSUPPORTED_VERSION,
                             f"versions {req.version_min}..{req.version_max} do not include 0 (RFC 7143 11.12.4)")
        if req.tsih != 0:
            raise self._fail(req, LoginStatus.SESSION_DOES_NOT_EXIST,
                             "adding a connection to a session is not supported (MaxConnections=1)")
        try:
            self.stage = stages.first(Role.TARGET, req.csg)
        except stages.StageError as e:
            raise self._fail(req, LoginStatus.INITIATOR_ERROR, str(e)) from None

    def _first_keys(self, req: P.LoginRequest, keys: dict[str, str]) -> None:
        """The leading login's declarations: who is asking for what (RFC 7143 §6.3.1, §13.5, §13.21)."""
        name = keys.get("InitiatorName")
        if not name:
            raise self._fail(req, LoginStatus.MISSING_PARAMETER, "InitiatorName is required (RFC 7143 13.5)")
        self.initiator_name = name
        session_type = keys.get("SessionType", "Normal")
        if session_type not in ("Normal", "Discovery"):
            raise self._fail(req, LoginStatus.SESSION_TYPE_NOT_SUPPORTED, f"SessionType={session_type}")
        if session_type == "Normal":
            wanted = keys.get("TargetName")
            if not wanted:
                raise self._fail(req, LoginStatus.MISSING_PARAMETER,
                                 "TargetName is required for a normal session (RFC 7143 13.4)")
            for target, tpgt in self.reachable:
                if target.iqn == wanted:
                    self.target, self.tpgt = target, tpgt
                    break
            else:
                raise self._fail(req, LoginStatus.NOT_FOUND, f"no target {wanted} on this portal")
            if not self.target.allows(name):
                raise self._fail(req, LoginStatus.AUTHORIZATION_FAILURE,
                                 f"initiator {name} is not in the ACL of {wanted}")
            chap, what = self.target.chap, f"target {wanted}"
        else:
            chap, what = self.server.spec.discovery_chap, "discovery on this array"
        if chap is not None:
            mutual = (ChapCredentials(chap.mutual_user, chap.mutual_secret)
                      if chap.mutual_user is not None and chap.mutual_secret is not None else None)
            self.chap = ChapTarget(ChapCredentials(chap.user, chap.secret), target=mutual)
            if self.stage != Stage.SECURITY:
                raise self._fail(req, LoginStatus.AUTHENTICATION_FAILURE,
                                 f"{what} requires CHAP; the initiator skipped the security stage")
        self._new_phase()

    def _auth_required(self) -> bool:
        return self.chap is not None and not self.authenticated

    def _new_phase(self) -> None:
        local = {
            "AuthMethod": "CHAP" if self.chap is not None else "None",
            "MaxRecvDataSegmentLength": str(MAX_RECV_DATA_SEGMENT),
            "HeaderDigest": "CRC32C,None",
            "DataDigest": "CRC32C,None",
            "MaxConnections": "1",
            "InitialR2T": "No",
            "ImmediateData": "Yes",
            "MaxBurstLength": str(MAX_BURST_LENGTH),
            "FirstBurstLength": str(FIRST_BURST_LENGTH),
            "MaxOutstandingR2T": "16",
            "ErrorRecoveryLevel": "0",
            "DefaultTime2Wait": "0",
            "DefaultTime2Retain": "0",
            "DataPDUInOrder": "Yes",
            "DataSequenceInOrder": "Yes",
        }
        if self.target is not None and self.target.alias:
            local["TargetAlias"] = self.target.alias
        phase = _PHASE.get(self.stage, Phase.OPERATIONAL)
        if self.negotiation is None:
            self.negotiation = Negotiation(Role.TARGET, local, phase=phase)
        else:
            self.negotiation.phase = phase  # results carry over from stage to stage

    def _negotiate(self, req: P.LoginRequest, received: dict[str, str], leading: bool) -> dict[str, str]:
        neg = self.negotiation
        assert neg is not None
        answers: dict[str, str] = {}
        if leading and self.target is not None:
            answers["TargetPortalGroupTag"] = str(self.tpgt)  # §13.9: in the first response
        answers.update(neg.receive(received))
        if self.stage == Stage.SECURITY and self.chap is not None and neg.results.get("AuthMethod") == "CHAP":
            chap_keys = {k: v for k, v in received.items() if k.startswith("CHAP_")}
            if chap_keys or not self.authenticated:
                answers.update(self.chap.receive(chap_keys))
                self.authenticated = self.chap.authenticated
        elif any(k.startswith("CHAP_") for k in received):
            raise RemoteProtocolError("CHAP keys without AuthMethod=CHAP (RFC 7143 12.1.3)")
        if self.stage == Stage.OPERATIONAL and not self.declared:
            answers.update(neg.offer())
            self.declared = True
        return answers

    def _transit(self, req: P.LoginRequest) -> tuple[bool, TargetLogin.Result | None]:
        if not req.transit:
            return False, None
        try:
            nsg = stages.transit(Role.TARGET, req.csg, req.nsg)
        except stages.StageError as e:
            raise self._fail(req, LoginStatus.INITIATOR_ERROR, str(e)) from None
        neg = self.negotiation
        assert neg is not None
        if self.stage == Stage.SECURITY:
            method = neg.results.get("AuthMethod", "None")
            if self.chap is not None and (method != "CHAP" or not self.authenticated):
                if method != "CHAP":
                    raise self._fail(req, LoginStatus.AUTHENTICATION_FAILURE,
                                     f"{f'target {self.target.iqn}' if self.target else 'discovery'} "
                                     "requires CHAP; configure CHAP on the initiator")
                return False, None  # CHAP still under way
        if not neg.complete:
            return False, None
        if nsg != Stage.FULL_FEATURE:
            self.stage = nsg
            self._new_phase()
            return True, None
        tsih = self.server.new_tsih()
        result = TargetLogin.Result(self.target, self.tpgt, self.initiator_name, req.isid, tsih, neg.params(),
                                    req.cmdsn, self.statsn + 1)
        return True, result
