"""The iSCSI key table and the negotiation rules, as data and pure functions (RFC 7143 §6.2, §12, §13).

This module owns what each text key means: its result function, valid range, default, who may send
it, when, and with what scope; the responder rule (:func:`respond`), the originator's check of an
answer (:func:`check_answer`), and :class:`Negotiation`, the no-I/O bookkeeping that the login and
text state machines drive. It knows nothing of PDUs or bytes (``text.py`` does).

Vocabulary (RFC 7143 §6.2): the *originator* offers ``key=value``; the *responder* answers with the
same key. List keys select the first value of the originator's list that the responder supports;
numerical keys take the minimum or maximum; Boolean keys take AND or OR; declarative keys are not
answered. The reserved answers are ``Reject``, ``Irrelevant`` and ``NotUnderstood``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from sanpath.errors import LocalProtocolError, RemoteProtocolError


class Role(StrEnum):
    """Which end of the connection a party is."""

    INITIATOR = "initiator"
    TARGET = "target"


class Phase(StrEnum):
    """Where a negotiation happens: the two login stages (§6.3) or the Full Feature Phase (§6.4)."""

    SECURITY = "security"
    OPERATIONAL = "operational"
    FULL_FEATURE = "full-feature"


class KeyType(Enum):
    """The result function of a key (RFC 7143 §6.2.1, §6.2.2)."""

    LIST = "list"  # first value in the originator's list the responder supports
    NUMERICAL_MIN = "numerical-min"
    NUMERICAL_MAX = "numerical-max"
    BOOLEAN_AND = "boolean-and"
    BOOLEAN_OR = "boolean-or"
    DECLARATIVE = "declarative"  # a statement, never answered
    NUMERICAL_DECLARATIVE = "numerical-declarative"
    QUERY = "query"  # SendTargets (§13.3): answered by the discovery code, not negotiated
    AUTH = "auth"  # CHAP_*, SRP_*, KRB_* items: exchanged by auth.py, not negotiated
    OBSOLETE = "obsolete"  # §13.25: RFC 3720 markers, answered Reject


class Use(Enum):
    """When a key may be sent (the "Use:" line of RFC 7143 §13)."""

    LO = "leading connection login only"
    IO = "login only"
    ALL = "login and full feature phase"
    FFPO = "full feature phase only"
    IALL = "login, then in SendTargets responses"
    SECURITY = "security negotiation stage only"


class Scope(Enum):
    """Whether a negotiated value applies to the whole session or to one connection."""

    SESSION = "SW"
    CONNECTION = "CO"


BOTH = frozenset({Role.INITIATOR, Role.TARGET})
INITIATOR_ONLY = frozenset({Role.INITIATOR})
TARGET_ONLY = frozenset({Role.TARGET})

REJECT = "Reject"
IRRELEVANT = "Irrelevant"
NOT_UNDERSTOOD = "NotUnderstood"
RESERVED_ANSWERS = frozenset({REJECT, IRRELEVANT, NOT_UNDERSTOOD})
"""§6.2: reserved constants; offering one of them as a value is a protocol error."""

MAX_DATA_SEGMENT = (1 << 24) - 1


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One row of the key table."""

    name: str
    type: KeyType
    use: Use
    scope: Scope
    senders: frozenset[Role]
    section: str
    default: str | None = None
    values: tuple[str, ...] = ()  # admissible values of list and enumerated declarative keys
    minimum: int | None = None
    maximum: int | None = None
    irrelevant_in_discovery: bool = False
    since_rfc3720: bool = True  # keys RFC 3720 already defined must never be answered NotUnderstood

    @property
    def negotiated(self) -> bool:
        """True for keys that are offered and answered (list, numerical, Boolean)."""
        return self.type in _NEGOTIATED


_NEGOTIATED = frozenset(
    {KeyType.LIST, KeyType.NUMERICAL_MIN, KeyType.NUMERICAL_MAX, KeyType.BOOLEAN_AND, KeyType.BOOLEAN_OR}
)
_NUMERICAL = frozenset({KeyType.NUMERICAL_MIN, KeyType.NUMERICAL_MAX, KeyType.NUMERICAL_DECLARATIVE})
_BOOLEAN = frozenset({KeyType.BOOLEAN_AND, KeyType.BOOLEAN_OR})


_L, _S, _C = KeyType, Scope.SESSION, Scope.CONNECTION
_AUTH_METHODS = ("KRB5", "SRP", "SPKM1", "SPKM2", "CHAP", "None")
_DIGESTS = ("CRC32C", "None")

# fmt: off
KEYS: dict[str, KeySpec] = {
    spec.name: spec
    for spec in (
        # §12: security negotiation
        KeySpec("AuthMethod", _L.LIST, Use.SECURITY, _C, BOTH, "§12.1", default="None", values=_AUTH_METHODS),
        *(
            KeySpec(name, _L.AUTH, Use.SECURITY, _C, BOTH, "§12.1.3")
            for name in ("CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R")
        ),
        *(
            KeySpec(name, _L.AUTH, Use.SECURITY, _C, BOTH, "§12.1.2")
            for name in ("SRP_U", "SRP_GROUP", "SRP_N", "SRP_g", "SRP_s", "SRP_A", "SRP_B", "SRP_M", "SRP_HM")
        ),
        *(KeySpec(name, _L.AUTH, Use.SECURITY, _C, BOTH, "§12.1.1") for name in ("KRB_AP_REQ", "KRB_AP_REP")),
        # §13: operational keys
        KeySpec("HeaderDigest", _L.LIST, Use.IO, _C, BOTH, "§13.1", default="None", values=_DIGESTS),
        KeySpec("DataDigest", _L.LIST, Use.IO, _C, BOTH, "§13.1", default="None", values=_DIGESTS),
        KeySpec("MaxConnections", _L.NUMERICAL_MIN, Use.LO, _S, BOTH, "§13.2", default="1", minimum=1,
                maximum=65535, irrelevant_in_discovery=True),
        KeySpec("SendTargets", _L.QUERY, Use.FFPO, _S, INITIATOR_ONLY, "§13.3"),
        KeySpec("TargetName", _L.DECLARATIVE, Use.IALL, _S, BOTH, "§13.4"),
        KeySpec("InitiatorName", _L.DECLARATIVE, Use.IO, _S, INITIATOR_ONLY, "§13.5"),
        KeySpec("TargetAlias", _L.DECLARATIVE, Use.ALL, _S, TARGET_ONLY, "§13.6"),
        KeySpec("InitiatorAlias", _L.DECLARATIVE, Use.ALL, _S, INITIATOR_ONLY, "§13.7"),
        KeySpec("TargetAddress", _L.DECLARATIVE, Use.ALL, _S, TARGET_ONLY, "§13.8"),
        KeySpec("TargetPortalGroupTag", _L.NUMERICAL_DECLARATIVE, Use.IO, _S, TARGET_ONLY, "§13.9", minimum=0,
                maximum=65535),
        KeySpec("InitialR2T", _L.BOOLEAN_OR, Use.LO, _S, BOTH, "§13.10", default="Yes",
                irrelevant_in_discovery=True),
        KeySpec("ImmediateData", _L.BOOLEAN_AND, Use.LO, _S, BOTH, "§13.11", default="Yes",
                irrelevant_in_discovery=True),
        KeySpec("MaxRecvDataSegmentLength", _L.NUMERICAL_DECLARATIVE, Use.ALL, _C, BOTH, "§13.12",
                default="8192", minimum=512, maximum=MAX_DATA_SEGMENT),
        KeySpec("MaxBurstLength", _L.NUMERICAL_MIN, Use.LO, _S, BOTH, "§13.13", default="262144", minimum=512,
                maximum=MAX_DATA_SEGMENT, irrelevant_in_discovery=True),
        KeySpec("FirstBurstLength", _L.NUMERICAL_MIN, Use.LO, _S, BOTH, "§13.14", default="65536",
                minimum=512, maximum=MAX_DATA_SEGMENT, irrelevant_in_discovery=True),
        KeySpec("DefaultTime2Wait", _L.NUMERICAL_MAX, Use.LO, _S, BOTH, "§13.15", default="2", minimum=0,
                maximum=3600),
        KeySpec("DefaultTime2Retain", _L.NUMERICAL_MIN, Use.LO, _S, BOTH, "§13.16", default="20", minimum=0,
                maximum=3600),
        KeySpec("MaxOutstandingR2T", _L.NUMERICAL_MIN, Use.LO, _S, BOTH, "§13.17", default="1", minimum=1,
                maximum=65535, irrelevant_in_discovery=True),
        KeySpec("DataPDUInOrder", _L.BOOLEAN_OR, Use.LO, _S, BOTH, "§13.18", default="Yes",
                irrelevant_in_discovery=True),
        KeySpec("DataSequenceInOrder", _L.BOOLEAN_OR, Use.LO, _S, BOTH, "§13.19", default="Yes",
                irrelevant_in_discovery=True),
        KeySpec("ErrorRecoveryLevel", _L.NUMERICAL_MIN, Use.LO, _S, BOTH, "§13.20", default="0", minimum=0,
                maximum=2),
        KeySpec("SessionType", _L.DECLARATIVE, Use.LO, _S, INITIATOR_ONLY, "§13.21", default="Normal",
                values=("Discovery", "Normal")),
        KeySpec("TaskReporting", _L.LIST, Use.LO, _S, BOTH, "§13.23", default="RFC3720",
                values=("RFC3720", "ResponseFence", "FastAbort"), irrelevant_in_discovery=True,
                since_rfc3720=False),
        KeySpec("iSCSIProtocolLevel", _L.NUMERICAL_MIN, Use.LO, _S, BOTH, "§13.24 and RFC 7144 §2.1",
                default="1", minimum=0, maximum=31, irrelevant_in_discovery=True, since_rfc3720=False),
        KeySpec("X#NodeArchitecture", _L.DECLARATIVE, Use.LO, _S, BOTH, "§13.26", since_rfc3720=False),
        *(
            KeySpec(name, _L.OBSOLETE, Use.ALL, _S, BOTH, "§13.25")
            for name in ("IFMarker", "OFMarker", "IFMarkInt", "OFMarkInt")
        ),
    )
}
# fmt: on
"""Every key RFC 7143 defines (plus iSCSIProtocolLevel from RFC 7144). X- keys are not listed."""


def spec_for(key: str) -> KeySpec | None:
    """The table row for ``key``, or None for unknown and X-/X# extension keys (§13.22)."""
    return KEYS.get(key)


def is_deferred(key: str) -> bool:
    """True for keys this module leaves to others: authentication items and SendTargets."""
    spec = KEYS.get(key)
    return spec is not None and spec.type in (KeyType.AUTH, KeyType.QUERY)


# ---------------------------------------------------------------------------------------------
# Values (RFC 7143 §6.1)

_DECIMAL_RE = re.compile(r"[0-9]+\Z")
_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]+\Z")
_BASE64_RE = re.compile(r"0[bB][A-Za-z0-9+/]+={0,2}\Z")


def parse_number(text: str) -> int | None:
    """Parse a regular numerical-value: decimal, ``0x`` hex or ``0b`` base64, below 2**64 (§6.1).

    Returns None when ``text`` is not a numerical value.
    """
    if _DECIMAL_RE.match(text):
        number = int(text)
    elif _HEX_RE.match(text):
        number = int(text[2:], 16)
    elif _BASE64_RE.match(text):
        try:
            number = int.from_bytes(base64.b64decode(text[2:], validate=True), "big")
        except (binascii.Error, ValueError):
            return None
    else:
        return None
    return number if number < 1 << 64 else None


def parse_list(text: str) -> list[str]:
    """Split a list-of-values on commas (§6.1)."""
    return text.split(",")


def _in_range(spec: KeySpec, number: int) -> bool:
    low = spec.minimum if spec.minimum is not None else 0
    high = spec.maximum if spec.maximum is not None else (1 << 64) - 1
    return low <= number <= high


def _range_text(spec: KeySpec) -> str:
    return f"{spec.minimum}..{spec.maximum}"


def validate_value(spec: KeySpec, value: str) -> str | None:
    """Return the canonical form of ``value`` for ``spec`` (numbers in decimal), or None if invalid."""
    if spec.type in _NUMERICAL:
        number = parse_number(value)
        return str(number) if number is not None and _in_range(spec, number) else None
    if spec.type in _BOOLEAN:
        return value if value in ("Yes", "No") else None
    if spec.type is KeyType.LIST:
        items = parse_list(value)
        return value if items and all(item in spec.values for item in items) else None
    if spec.values:
        return value if value in spec.values else None
    return value


# ---------------------------------------------------------------------------------------------
# The rules


@dataclass(frozen=True, slots=True)
class Answer:
    """What a responder sends back for one key, and what the key's value becomes.

    ``answer`` is None when nothing is sent (a declaration). ``value`` is None when the key keeps its
    current value (after Reject, Irrelevant or NotUnderstood). Unpacks as ``answer, value``.
    """

    answer: str | None
    value: str | None

    def __iter__(self) -> Iterator[str | None]:
        return iter((self.answer, self.value))


def phase_allows(spec: KeySpec, phase: Phase, *, leading: bool = True, sender: Role = Role.INITIATOR) -> bool:
    """True if ``spec`` may be sent by ``sender`` in ``phase`` (the "Use:" line of §12 / §13)."""
    login = phase is not Phase.FULL_FEATURE
    if spec.use is Use.SECURITY:
        return phase is Phase.SECURITY
    if spec.use is Use.LO:
        return login and leading
    if spec.use is Use.IO:
        return login
    if spec.use is Use.FFPO:
        return not login
    if spec.use is Use.IALL:
        return login or sender is Role.TARGET
    return True


def _reject_reserved(key: str, offered: str) -> None:
    bad = [item for item in parse_list(offered) if item in RESERVED_ANSWERS]
    if bad:
        raise RemoteProtocolError(
            f"{key}={offered}: {bad[0]} is a reserved answer and must not be offered as a value "
            "(RFC 7143 §6.2)"
        )


def respond(
    key: str,
    offered: str,
    local: str | None = None,
    *,
    sender: Role = Role.INITIATOR,
    phase: Phase = Phase.OPERATIONAL,
    leading: bool = True,
    discovery: bool = False,
    irrelevant: bool = False,
) -> Answer:
    """Answer one offered key as the responder (RFC 7143 §6.2).

    ``local`` is the responder's own value: for a list key the values it supports in any order
    (comma-separated), for a numerical key its limit, for a Boolean key its Yes/No. None means the
    key's default. ``sender`` is the role of the party that sent ``key``; ``discovery`` says the
    session is a discovery session, where several keys are Irrelevant; ``irrelevant`` forces an
    Irrelevant answer (the caller knows a dependency, e.g. FirstBurstLength when InitialR2T=Yes and
    ImmediateData=No, §13.14).

    * unknown keys and X- / X# extension keys: NotUnderstood (§6.2, §13.22);
    * a key the sender may never send (e.g. TargetAlias from an initiator): RemoteProtocolError;
    * a key not allowed in this phase or on a non-leading connection: Reject;
    * list: the first offered value the responder supports, else Reject (§6.2.1);
    * numerical: min or max of the two; an offer out of range or malformed: Reject (§6.2.2);
    * Boolean: AND / OR; a value other than Yes or No: Reject (§6.2.2);
    * declarative keys: no answer; the declared value is the result (a malformed declaration is a
      RemoteProtocolError, since there is nothing to answer it with);
    * obsolete marker keys: Reject (§13.25).
    """
    _reject_reserved(key, offered)
    spec = KEYS.get(key)
    if spec is None:
        return Answer(NOT_UNDERSTOOD, None)
    if sender not in spec.senders:
        allowed = " or ".join(sorted(spec.senders))
        raise RemoteProtocolError(
            f"{key} was sent by the {sender}, but only the {allowed} may send it (RFC 7143 {spec.section})"
        )
    if spec.type in (KeyType.AUTH, KeyType.QUERY):
        raise LocalProtocolError(f"{key} is not negotiated: pass it to the authentication or discovery code")
    if spec.type is KeyType.OBSOLETE:
        return Answer(REJECT, None)
    if not phase_allows(spec, phase, leading=leading, sender=sender):
        return Answer(REJECT, None)
    if not spec.negotiated:
        value = validate_value(spec, offered)
        if value is None:
            expected = _range_text(spec) if spec.type in _NUMERICAL else " or ".join(spec.values)
            raise RemoteProtocolError(
                f"{key}={offered} is not a valid declaration; expected {expected} (RFC 7143 {spec.section})"
            )
        return Answer(None, value)
    if irrelevant or (discovery and spec.irrelevant_in_discovery):
        return Answer(IRRELEVANT, None)
    mine = local if local is not None else spec.default
    assert mine is not None, f"negotiated key {key} has no default"
    if spec.type is KeyType.LIST:
        supported = set(parse_list(mine))
        for candidate in parse_list(offered):
            if candidate in supported and candidate in spec.values:
                return Answer(candidate, candidate)
        return Answer(REJECT, None)
    if spec.type in _BOOLEAN:
        if offered not in ("Yes", "No"):
            return Answer(REJECT, None)
        if spec.type is KeyType.BOOLEAN_AND:
            result = "Yes" if offered == "Yes" and mine == "Yes" else "No"
        else:
            result = "Yes" if offered == "Yes" or mine == "Yes" else "No"
        return Answer(result, result)
    theirs = parse_number(offered)
    if theirs is None or not _in_range(spec, theirs):
        return Answer(REJECT, None)
    own = parse_number(mine)
    assert own is not None, f"local {key}={mine} is not a number"
    number = min(theirs, own) if spec.type is KeyType.NUMERICAL_MIN else max(theirs, own)
    return Answer(str(number), str(number))


def answer_required(key: str, offered: str) -> bool:
    """False where the RFC makes the answer optional (§6.2.2) or there is none (declarations)."""
    spec = KEYS.get(key)
    if spec is None:
        return True
    if not spec.negotiated:
        return False
    if spec.type is KeyType.BOOLEAN_AND and offered == "No":
        return False
    return not (spec.type is KeyType.BOOLEAN_OR and offered == "Yes")


def optional_result(key: str, offered: str) -> str | None:
    """The result already fixed by the offer alone (AND offered No, OR offered Yes), else None."""
    spec = KEYS.get(key)
    if spec is not None and spec.type in _BOOLEAN and not answer_required(key, offered):
        return offered
    return None


def _bad_answer(key: str, offered: str, answer: str, rule: str, section: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"offered {key}={offered}, the answer {key}={answer} {rule} (RFC 7143 {section})"
    )


def check_answer(key: str, offered: str, answer: str) -> str | None:
    """Validate the responder's ``answer`` to our offer; return the resulting value (§6.2).

    None means the key keeps its current value: after Reject or Irrelevant, and after NotUnderstood
    for extension keys and for keys newer than RFC 3720 (an RFC 3720 peer cannot know them).
    Raises :class:`RemoteProtocolError` for answers the rules forbid: a list value that was not
    offered, a minimum above the offer, a maximum below it, a Boolean that contradicts a result the
    offer had already fixed, or NotUnderstood for a key every implementation must know.
    """
    spec = KEYS.get(key)
    if answer in (REJECT, IRRELEVANT):
        return None
    if answer == NOT_UNDERSTOOD:
        if spec is None or not spec.since_rfc3720:
            return None
        raise _bad_answer(
            key, offered, answer, "is not allowed: every implementation must support this key", "§6.2"
        )
    if spec is None:
        return answer
    if not spec.negotiated:
        raise LocalProtocolError(f"{key} is {spec.type.value}; declarations are not answered")
    if spec.type is KeyType.LIST:
        if answer not in parse_list(offered) or answer not in spec.values:
            raise _bad_answer(key, offered, answer, "selects a value that was not offered", "§6.2.1")
        return answer
    if spec.type in _BOOLEAN:
        if answer not in ("Yes", "No"):
            raise _bad_answer(key, offered, answer, "is not Yes or No", "§6.2.2")
        fixed = optional_result(key, offered)
        if fixed is not None and answer != fixed:
            function = "AND" if spec.type is KeyType.BOOLEAN_AND else "OR"
            raise _bad_answer(key, offered, answer, f"contradicts the {function} result {fixed}", "§6.2.2")
        return answer
    number = parse_number(answer)
    mine = parse_number(offered)
    if number is None or not _in_range(spec, number):
        raise _bad_answer(key, offered, answer, f"is not a number in {_range_text(spec)}", spec.section)
    assert mine is not None
    if spec.type is KeyType.NUMERICAL_MIN and number > mine:
        raise _bad_answer(
            key, offered, answer, "is larger than the offer, but the result is the minimum", "§6.2.2"
        )
    if spec.type is KeyType.NUMERICAL_MAX and number < mine:
        raise _bad_answer(
            key, offered, answer, "is smaller than the offer, but the result is the maximum", "§6.2.2"
        )
    return str(number)


# ---------------------------------------------------------------------------------------------
# The negotiated result


@dataclass(frozen=True, slots=True)
class SessionParams:
    """Negotiated session and connection parameters, with RFC 7143 §13 defaults.

    ``max_recv_data_segment_length`` is what this side declared it can receive;
    ``max_send_data_segment_length`` is what the peer declared, i.e. the most we may send (§13.12).
    The digests are Booleans because CRC32C is the only digest RFC 7143 defines (§13.1).
    """

    header_digest: bool = False  # True when CRC32C was negotiated (§13.1)
    data_digest: bool = False
    max_connections: int = 1
    initial_r2t: bool = True
    immediate_data: bool = True
    max_recv_data_segment_length: int = 8192
    max_send_data_segment_length: int = 8192
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    default_time2wait: int = 2
    default_time2retain: int = 20
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    session_type: str = "Normal"
    auth_method: str = "None"
    task_reporting: str = "RFC3720"
    iscsi_protocol_level: int = 1
    initiator_name: str | None = None
    target_name: str | None = None
    initiator_alias: str | None = None
    target_alias: str | None = None
    target_portal_group_tag: int | None = None
    extensions: tuple[tuple[str, str], ...] = field(default=())


_FIELDS: dict[str, str] = {
    "HeaderDigest": "header_digest",
    "DataDigest": "data_digest",
    "MaxConnections": "max_connections",
    "InitialR2T": "initial_r2t",
    "ImmediateData": "immediate_data",
    "MaxBurstLength": "max_burst_length",
    "FirstBurstLength": "first_burst_length",
    "DefaultTime2Wait": "default_time2wait",
    "DefaultTime2Retain": "default_time2retain",
    "MaxOutstandingR2T": "max_outstanding_r2t",
    "DataPDUInOrder": "data_pdu_in_order",
    "DataSequenceInOrder": "data_sequence_in_order",
    "ErrorRecoveryLevel": "error_recovery_level",
    "SessionType": "session_type",
    "AuthMethod": "auth_method",
    "TaskReporting": "task_reporting",
    "iSCSIProtocolLevel": "iscsi_protocol_level",
    "InitiatorName": "initiator_name",
    "TargetName": "target_name",
    "InitiatorAlias": "initiator_alias",
    "TargetAlias": "target_alias",
    "TargetPortalGroupTag": "target_portal_group_tag",
}


def _convert(spec: KeySpec, value: str) -> object:
    if spec.name in ("HeaderDigest", "DataDigest"):
        return value == "CRC32C"
    if spec.type in _NUMERICAL:
        number = parse_number(value)
        assert number is not None
        return number
    if spec.type in _BOOLEAN:
        return value == "Yes"
    return value


# What Negotiation.offer() volunteers in the security stage; the rest waits for the operational stage.
_SECURITY_STAGE_KEYS = frozenset(
    {"InitiatorName", "TargetName", "SessionType", "InitiatorAlias", "TargetAlias", "TargetPortalGroupTag",
     "AuthMethod"}
)  # fmt: skip

# Keys whose result other answers depend on are handled first within one batch.
_FIRST = {"SessionType": 0, "InitialR2T": 1, "ImmediateData": 1, "MaxBurstLength": 2}


class Negotiation:
    """The key bookkeeping of one login (or one Text negotiation), for either role, with no I/O.

    ``local`` holds this side's values: what it offers as originator and its limits as responder.
    :meth:`offer` produces keys to originate; :meth:`receive` consumes the peer's keys, checking the
    answers to our offers and returning our answers to theirs; :attr:`pending` lists offers still
    waiting for an answer; :meth:`params` builds the :class:`SessionParams`. A key offered or
    declared twice by the peer is a protocol error (RFC 7143 §6.2, §6.3): the target answers it
    with a Login reject (initiator error), the initiator drops the connection.
    Authentication items (CHAP_*) and SendTargets are skipped here; see :func:`is_deferred`.
    """

    def __init__(
        self,
        role: Role,
        local: Mapping[str, str] | None = None,
        *,
        leading: bool = True,
        phase: Phase = Phase.SECURITY,
        use_irrelevant: bool = True,
    ) -> None:
        self.role = role
        self.leading = leading
        self.phase = phase
        self.use_irrelevant = use_irrelevant
        self._local: dict[str, str] = {}
        for key, value in (local or {}).items():
            spec = KEYS.get(key)
            if spec is None:
                self._local[key] = value  # an extension key, offered as is
                continue
            canonical = validate_value(spec, value)
            if canonical is None:
                raise LocalProtocolError(f"local value {key}={value} is not valid (RFC 7143 {spec.section})")
            self._local[key] = canonical
        first = int(self._local.get("FirstBurstLength", "65536"))
        if first > int(self._local.get("MaxBurstLength", "262144")):
            raise LocalProtocolError("FirstBurstLength must not exceed MaxBurstLength (RFC 7143 §13.14)")
        self._results: dict[str, str] = {}  # negotiated keys and declarations, by key
        self._ours: dict[str, str] = {}  # our declarations
        self._theirs: dict[str, str] = {}  # the peer's declarations
        self._outstanding: dict[str, str] = {}  # our offers waiting for a required answer
        self._optional: dict[str, str] = {}  # our offers whose answer is optional (§6.2.2)
        self._sent: set[str] = set()  # keys we offered or declared in this exchange
        self._seen: set[str] = set()  # keys the peer offered, declared or answered in this exchange

    @property
    def peer(self) -> Role:
        """The role of the other side."""
        return Role.TARGET if self.role is Role.INITIATOR else Role.INITIATOR

    @property
    def pending(self) -> frozenset[str]:
        """Keys we offered whose answer has not arrived and is required."""
        return frozenset(self._outstanding)

    @property
    def complete(self) -> bool:
        """True once every offer we made that needs an answer has been answered."""
        return not self._outstanding

    @property
    def results(self) -> Mapping[str, str]:
        """The negotiated and declared values so far (peer and own declarations merged)."""
        return dict(self._results)

    def local_value(self, key: str) -> str | None:
        """This side's configured value for ``key``, or the key's default."""
        if key in self._local:
            return self._local[key]
        spec = KEYS.get(key)
        return spec.default if spec is not None else None

    def _current(self, key: str) -> str | None:
        """The value ``key`` has now: negotiated or declared, else the RFC default."""
        spec = KEYS.get(key)
        return self._results.get(key, spec.default if spec is not None else None)

    def new_exchange(self) -> None:
        """Start a new Text negotiation in Full Feature Phase: keep results, forget who sent what."""
        if self._outstanding:
            raise LocalProtocolError(f"offers still unanswered: {', '.join(sorted(self._outstanding))}")
        self._sent.clear()
        self._seen.clear()
        self._optional.clear()

    def offer(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """Return the keys to originate now, with our values, and remember them as offered.

        With ``keys`` None, volunteer every configured key not yet sent or received that this role
        may send in this phase, except that in the security stage only declarations and AuthMethod
        go out, and a target only volunteers declarations (it answers the rest). Naming a key that
        cannot be offered now (sent already, offered by the peer, wrong role or phase) raises
        :class:`LocalProtocolError`.
        """
        explicit = keys is not None
        names = list(keys) if keys is not None else list(self._local)
        out: dict[str, str] = {}
        for key in names:
            spec = KEYS.get(key)
            problem = self._offer_problem(key, spec)
            if problem is None and not explicit and spec is not None:
                problem = self._not_volunteered(spec)
            if problem is not None:
                if explicit:
                    raise LocalProtocolError(f"cannot offer {key}: {problem}")
                continue
            value = self.local_value(key)
            if value is None:
                raise LocalProtocolError(f"cannot offer {key}: no value is configured and it has no default")
            out[key] = value
            self._sent.add(key)
            if spec is not None and not spec.negotiated:
                self._ours[key] = value
                self._results[key] = value
            elif (fixed := optional_result(key, value)) is not None:
                self._optional[key] = value
                self._results[key] = fixed
            else:
                self._outstanding[key] = value
        return out

    def _offer_problem(self, key: str, spec: KeySpec | None) -> str | None:
        if spec is not None and spec.type in (KeyType.AUTH, KeyType.QUERY, KeyType.OBSOLETE):
            return f"{spec.type.value} keys are not negotiated here"
        if key in self._sent:
            return "it was already sent in this negotiation (RFC 7143 §6.2)"
        if (spec is None or spec.negotiated) and key in self._seen:
            return "the peer already offered it; answer instead (RFC 7143 §6.2)"
        if spec is None:
            return None
        if self.role not in spec.senders:
            return f"only the {' or '.join(sorted(spec.senders))} may send it (RFC 7143 {spec.section})"
        if not phase_allows(spec, self.phase, leading=self.leading, sender=self.role):
            return f"not allowed in the {self.phase} phase ({spec.use.value}, RFC 7143 {spec.section})"
        return None

    def _not_volunteered(self, spec: KeySpec) -> str | None:
        if self.role is Role.TARGET and spec.negotiated:
            return "a target answers this key rather than offering it"
        if self.phase is Phase.SECURITY and spec.name not in _SECURITY_STAGE_KEYS:
            return "operational keys wait for the operational stage"
        return None

    def receive(self, received: Mapping[str, str]) -> dict[str, str]:
        """Process the peer's keys from one LTDS; return our answers, in the order received.

        Answers to our offers are checked with :func:`check_answer`; the peer's offers are answered
        with :func:`respond`; declarations are recorded. SessionType, InitialR2T, ImmediateData and
        MaxBurstLength are handled before the rest of the batch, because other answers depend on them.
        """
        order = sorted(enumerate(received), key=lambda item: (_FIRST.get(item[1], 3), item[0]))
        answers: dict[int, tuple[str, str]] = {}
        for index, key in order:
            value = received[key]
            if is_deferred(key):
                continue
            spec = KEYS.get(key)
            if key in self._outstanding:
                self._seen.add(key)
                result = check_answer(key, self._outstanding.pop(key), value)
                if result is not None:
                    self._results[key] = result
                continue
            if key in self._optional and key not in self._seen:
                self._seen.add(key)
                check_answer(key, self._optional[key], value)
                continue
            if key in self._seen or (key in self._sent and (spec is None or spec.negotiated)):
                raise RemoteProtocolError(
                    f"{key}={value} was already negotiated in this exchange; renegotiating or redeclaring "
                    "a key is not allowed (RFC 7143 §6.2, §6.3)"
                )
            self._seen.add(key)
            answer = self._respond(key, value)
            if answer.value is not None:
                self._results[key] = answer.value
                if spec is not None and not spec.negotiated:
                    self._theirs[key] = answer.value
            if answer.answer is not None:
                answers[index] = (key, answer.answer)
        return dict(answers[i] for i in sorted(answers))

    def _respond(self, key: str, value: str) -> Answer:
        discovery = self.use_irrelevant and self._current("SessionType") == "Discovery"
        local = self._local.get(key)
        irrelevant = False
        if key == "FirstBurstLength":
            irrelevant = self.use_irrelevant and (
                self._current("InitialR2T") == "Yes" and self._current("ImmediateData") == "No"
            )
            ceiling = int(self._current("MaxBurstLength") or "262144")
            local = str(min(int(local or "65536"), ceiling))
        return respond(
            key,
            value,
            local,
            sender=self.peer,
            phase=self.phase,
            leading=self.leading,
            discovery=discovery,
            irrelevant=irrelevant,
        )

    def params(self) -> SessionParams:
        """The negotiated parameters, defaults filled in from RFC 7143 §13."""
        values: dict[str, object] = {}
        for key, name in _FIELDS.items():
            value = self._results.get(key)
            if value is not None:
                values[name] = _convert(KEYS[key], value)
        # Undeclared means the default 8192 in that direction (§13.12), whatever is configured locally.
        values["max_recv_data_segment_length"] = int(self._ours.get("MaxRecvDataSegmentLength", "8192"))
        values["max_send_data_segment_length"] = int(self._theirs.get("MaxRecvDataSegmentLength", "8192"))
        values["extensions"] = tuple((k, v) for k, v in self._results.items() if k not in KEYS)
        max_burst = values.get("max_burst_length")
        if "FirstBurstLength" not in self._results and isinstance(max_burst, int):
            # Never negotiated: the default must still respect the negotiated MaxBurstLength (§13.14).
            values["first_burst_length"] = min(int(KEYS["FirstBurstLength"].default or 0), max_burst)
        params = SessionParams(**values)  # type: ignore[arg-type]
        first_matters = not (params.initial_r2t and not params.immediate_data)
        if first_matters and params.first_burst_length > params.max_burst_length:
            raise RemoteProtocolError(
                f"negotiated FirstBurstLength={params.first_burst_length} exceeds MaxBurstLength="
                f"{params.max_burst_length}; FirstBurstLength must not exceed MaxBurstLength "
                "(RFC 7143 §13.14)"
            )
        return params


__all__ = [
    "KEYS",
    "Answer",
    "KeySpec",
    "KeyType",
    "Negotiation",
    "Phase",
    "Role",
    "Scope",
    "SessionParams",
    "Use",
    "answer_required",
    "check_answer",
    "is_deferred",
    "optional_result",
    "parse_number",
    "respond",
    "spec_for",
]
