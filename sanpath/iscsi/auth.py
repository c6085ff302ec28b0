"""CHAP authentication for the iSCSI login security stage (RFC 7143 §12.1.3, §9.2.1; RFC 1994).

This module owns the CHAP arithmetic as pure functions (response = H(identifier || secret ||
challenge), binary value encodings, challenge generation, constant-time checks) and one small
table-driven state machine per role. The machines consume the keys received in one Login PDU and
return the keys to send; they do no I/O and know nothing of PDUs. AuthMethod itself is negotiated
by ``keys.py``; the login state machine starts CHAP once AuthMethod=CHAP was agreed.

The exchange (§12.1.3)::

    initiator                               target
    CHAP_A=<A1,A2,...>                 ->
                                       <-   CHAP_A=<A> CHAP_I=<I> CHAP_C=<C>
    CHAP_N=<N> CHAP_R=<R>
      [CHAP_I=<I'> CHAP_C=<C'>]        ->   (verifies R; with I'/C' the initiator asks for mutual CHAP)
                                       <-   [CHAP_N=<N'> CHAP_R=<R'>]   (initiator verifies R')

Algorithm numbers are those of the IANA "PPP Authentication Algorithms" registry: 5 MD5 (which
every initiator must offer, §12.1.3), 6 SHA-1, 7 SHA-256, 8 SHA3-256. Security rules applied:
challenges are random, at least 16 bytes and at most 1024 (§12.1.3); a challenge that reflects
the one this side sent is refused; the same secret may not serve both directions, and a response
equal to the one this side would compute with its own secret is refused (§9.2.1); secrets shorter
than 12 bytes (96 bits, §9.2.1) are refused unless the caller lowers the limit on purpose.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sanpath.errors import AuthenticationError, ConfigError, LocalProtocolError, RemoteProtocolError
from sanpath.iscsi.keys import parse_number
from sanpath.iscsi.text import MAX_LARGE_BINARY_BYTES

# ---------------------------------------------------------------------------------------------
# Algorithms


@dataclass(frozen=True, slots=True)
class ChapAlgorithm:
    """One CHAP_A value: its registry number and the hashlib name of its hash."""

    code: int
    name: str
    hash_name: str

    @property
    def digest_size(self) -> int:
        """Length of a response, in bytes."""
        return hashlib.new(self.hash_name).digest_size

    def response(self, identifier: int, secret: bytes, challenge: bytes) -> bytes:
        """H(identifier || secret || challenge), RFC 1994 §4.1."""
        return chap_response(self, identifier, secret, challenge)


MD5 = ChapAlgorithm(5, "MD5", "md5")
SHA1 = ChapAlgorithm(6, "SHA-1", "sha1")
SHA256 = ChapAlgorithm(7, "SHA-256", "sha256")
SHA3_256 = ChapAlgorithm(8, "SHA3-256", "sha3_256")

ALGORITHMS: dict[int, ChapAlgorithm] = {a.code: a for a in (MD5, SHA1, SHA256, SHA3_256)}
"""Known CHAP_A values; adding one is a single line here."""

DEFAULT_ALGORITHMS: tuple[int, ...] = (SHA256.code, MD5.code)
"""Offered in this order by default: SHA-256 first, MD5 because §12.1.3 requires offering it."""

MIN_SECRET_LENGTH = 12
"""§9.2.1: a secret of fewer than 96 random bits needs IPsec protection; refuse such by default."""

MIN_CHALLENGE_LENGTH = 16
MAX_CHALLENGE_LENGTH = MAX_LARGE_BINARY_BYTES  # §12.1.3: C and R are at most 1024 bytes

Rng = Callable[[int], bytes]

# ---------------------------------------------------------------------------------------------
# Pure functions


def chap_response(algorithm: ChapAlgorithm, identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """The CHAP response: the hash of the identifier octet, the secret and the challenge (RFC 1994)."""
    if not 0 <= identifier <= 255:
        raise LocalProtocolError(f"CHAP identifier {identifier} is not one octet (RFC 1994 §4.1)")
    digest = hashlib.new(algorithm.hash_name)
    digest.update(bytes((identifier,)))
    digest.update(secret)
    digest.update(challenge)
    return digest.digest()


def encode_binary(data: bytes) -> str:
    """Encode a binary value as a hex-constant, ``0x`` and lower-case digits (RFC 7143 §6.1)."""
    return "0x" + data.hex()


_HEX_RE = re.compile(r"0[xX]([0-9a-fA-F]+)\Z")
_BASE64_RE = re.compile(r"0[bB]([A-Za-z0-9+/]+={0,2})\Z")


def decode_binary(key: str, text: str, *, max_length: int = MAX_CHALLENGE_LENGTH) -> bytes:
    """Decode a large-binary-value given as ``0x`` hex or ``0b`` base64 (RFC 7143 §6.1).

    An odd number of hex digits is read with a leading zero nibble. Raises RemoteProtocolError
    naming ``key`` for other forms, an empty value, or more than ``max_length`` bytes.
    """
    if match := _HEX_RE.match(text):
        digits = match.group(1)
        data = bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)
    elif match := _BASE64_RE.match(text):
        try:
            data = base64.b64decode(match.group(1), validate=True)
        except (binascii.Error, ValueError):
            raise RemoteProtocolError(f"{key}={text[:40]} is not valid base64 (RFC 7143 §6.1)") from None
    else:
        raise RemoteProtocolError(
            f"{key}={text[:40]} is not a binary value: expected 0x<hex> or 0b<base64> "
            "(RFC 7143 §6.1, §12.1.3)"
        )
    if not data or len(data) > max_length:
        raise RemoteProtocolError(
            f"{key} is {len(data)} bytes long; it must be 1 to {max_length} bytes (RFC 7143 §12.1.3)"
        )
    return data


def parse_identifier(text: str) -> int:
    """Parse CHAP_I: a number from 0 to 255 (RFC 7143 §12.1.3, RFC 1994 §4.1)."""
    number = parse_number(text)
    if number is None or number > 255:
        raise RemoteProtocolError(f"CHAP_I={text[:40]} is not a number from 0 to 255 (RFC 7143 §12.1.3)")
    return number


def generate_challenge(length: int = MIN_CHALLENGE_LENGTH, rng: Rng = secrets.token_bytes) -> bytes:
    """A random challenge of ``length`` bytes (16 to 1024)."""
    if not MIN_CHALLENGE_LENGTH <= length <= MAX_CHALLENGE_LENGTH:
        raise ConfigError(
            "CHAP challenge length",
            f"{length} bytes; use {MIN_CHALLENGE_LENGTH} to {MAX_CHALLENGE_LENGTH} (RFC 7143 §12.1.3)",
        )
    challenge = rng(length)
    if len(challenge) != length:
        raise LocalProtocolError(f"the random source returned {len(challenge)} bytes, not {length}")
    return challenge


def responses_match(expected: bytes, received: bytes) -> bool:
    """Compare two responses in constant time."""
    return hmac.compare_digest(expected, received)


def check_secret(secret: bytes, *, what: str, min_length: int = MIN_SECRET_LENGTH) -> None:
    """Refuse a secret shorter than ``min_length`` bytes (RFC 7143 §9.2.1; RFC 1994 requires ≥ 1)."""
    if len(secret) < max(1, min_length):
        raise ConfigError(
            what,
            f"the CHAP secret is {len(secret)} bytes; use at least {max(1, min_length)} random bytes "
            "(RFC 7143 §9.2.1 requires IPsec below 96 bits)",
        )



def _check_pair(initiator: ChapCredentials, target: ChapCredentials | None, min_length: int) -> None:
    """Both secrets long enough, and different: each direction needs its own (RFC 7143 §9.2.1)."""
    check_secret(initiator.secret, what=f"CHAP secret of initiator user {initiator.user!r}", min_length=min_length)
    if target is None:
        return
    check_secret(target.secret, what=f"mutual CHAP secret of target user {target.user!r}", min_length=min_length)
    if hmac.compare_digest(target.secret, initiator.secret):
        raise ConfigError(
            "mutual CHAP",
            f"the secret of target user {target.user!r} equals the secret of initiator user "
            f"{initiator.user!r}; each direction needs its own secret (RFC 7143 §9.2.1)",
        )

def negotiate_algorithm(offered: str, allowed: tuple[int, ...]) -> ChapAlgorithm | None:
    """The first of the initiator's CHAP_A values that the target allows (list rule, RFC 7143 §6.2.1)."""
    for item in offered.split(","):
        number = parse_number(item)
        if number is not None and number in allowed and number in ALGORITHMS:
            return ALGORITHMS[number]
    return None


def _check_algorithms(algorithms: tuple[int, ...]) -> tuple[int, ...]:
    unknown = [code for code in algorithms if code not in ALGORITHMS]
    if not algorithms or unknown:
        known = ", ".join(f"{a.code} ({a.name})" for a in ALGORITHMS.values())
        raise ConfigError("CHAP algorithms", f"{list(algorithms)} is not a non-empty list from {known}")
    return tuple(algorithms)


@dataclass(frozen=True, slots=True)
class ChapCredentials:
    """A CHAP name and secret. The secret never appears in the repr."""

    user: str
    secret: bytes = field(repr=False)

    @classmethod
    def from_text(cls, user: str, secret: str) -> ChapCredentials:
        """Credentials from a configured text secret (UTF-8)."""
        return cls(user, secret.encode("utf-8"))


def _chap_keys(received: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in received.items() if k.startswith("CHAP_")}


# ---------------------------------------------------------------------------------------------
# The target side



class _ChapParty:
    """What both ends of a CHAP exchange hold: the secrets (checked), the algorithms allowed, and the
    identifier and challenge this side sent."""

    def __init__(self, own: ChapCredentials, target: ChapCredentials | None, *,
                 algorithms: tuple[int, ...] = DEFAULT_ALGORITHMS, challenge_length: int | None = None,
                 min_secret_length: int = MIN_SECRET_LENGTH, rng: Rng = secrets.token_bytes) -> None:
        _check_pair(own, target, min_secret_length)
        self.target = target
        self.algorithms = _check_algorithms(algorithms)
        self.challenge_length = challenge_length
        self.algorithm: ChapAlgorithm | None = None
        self._rng = rng
        self._identifier = 0
        self._challenge = b""

class TargetChapState(StrEnum):
    """Where the target's CHAP exchange stands."""

    AWAIT_ALGORITHMS = "await CHAP_A"
    CHALLENGED = "challenge sent, await CHAP_N/CHAP_R"
    AUTHENTICATED = "initiator authenticated"
    FAILED = "failed"


_A = frozenset({"CHAP_A"})
_NR = frozenset({"CHAP_N", "CHAP_R"})
_NRIC = frozenset({"CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"})
_AIC = frozenset({"CHAP_A", "CHAP_I", "CHAP_C"})


class ChapTarget(_ChapParty):
    """The target (authenticator) side of CHAP, driven by the keys of each Login Request.

    ``initiator`` holds the name and secret the initiator must prove (from the ACL); ``target``, if
    given, is the target's own name and secret for mutual CHAP. :meth:`receive` returns the keys to
    put in the Login Response and raises :class:`AuthenticationError` (answer with status 0x0201)
    or :class:`RemoteProtocolError` (status 0x0200) when the exchange fails.
    """

    def __init__(self, initiator: ChapCredentials, *, target: ChapCredentials | None = None,
                 **options: Any) -> None:
        super().__init__(initiator, target, **options)
        self.initiator = initiator
        self.state = TargetChapState.AWAIT_ALGORITHMS
        self.mutual = False

    @property
    def authenticated(self) -> bool:
        """True once the initiator proved its secret (and, if asked, the target answered)."""
        return self.state is TargetChapState.AUTHENTICATED

    def receive(self, received: Mapping[str, str]) -> dict[str, str]:
        """Consume the CHAP_* keys of one Login Request; return the CHAP_* keys to answer with."""
        chap = _chap_keys(received)
        if not chap:
            return {}
        if self.state is TargetChapState.FAILED:
            raise LocalProtocolError(f"the CHAP exchange has failed; got {sorted(chap)}")
        entry = _TARGET_TABLE.get((self.state, frozenset(chap)))
        if entry is None:
            state, self.state = self.state, TargetChapState.FAILED
            raise RemoteProtocolError(
                f"CHAP: the initiator sent {', '.join(sorted(chap))} while the target was in state "
                f"'{state}'; see the exchange in RFC 7143 §12.1.3"
            )
        handler, next_state = entry
        try:
            answer = handler(self, chap)
        except Exception:
            self.state = TargetChapState.FAILED
            raise
        self.state = next_state
        return answer

    def _on_algorithms(self, chap: dict[str, str]) -> dict[str, str]:
        algorithm = negotiate_algorithm(chap["CHAP_A"], self.algorithms)
        if algorithm is None:
            allowed = ",".join(str(a) for a in self.algorithms)
            raise AuthenticationError(
                f"CHAP: the target refused the login of user {self.initiator.user!r}: the initiator offered "
                f"CHAP_A={chap['CHAP_A']} and this target allows only {allowed} (RFC 7143 §12.1.3); enable "
                "a common algorithm on one side (MD5 is 5, SHA-256 is 7)"
            )
        self.algorithm = algorithm
        self._identifier = self._rng(1)[0]
        length = self.challenge_length or max(MIN_CHALLENGE_LENGTH, algorithm.digest_size)
        self._challenge = generate_challenge(length, self._rng)
        return {
            "CHAP_A": str(algorithm.code),
            "CHAP_I": str(self._identifier),
            "CHAP_C": encode_binary(self._challenge),
        }

    def _on_response(self, chap: dict[str, str]) -> dict[str, str]:
        algorithm = self.algorithm
        assert algorithm is not None
        user = chap["CHAP_N"]
        if user != self.initiator.user:
            raise AuthenticationError(
                f"CHAP: the target refused the login: the initiator authenticated as user {user!r}, but this "
                f"target expects {self.initiator.user!r} (RFC 7143 §12.1.3); set the initiator's CHAP user "
                "name to the one in the target's ACL"
            )
        received = decode_binary("CHAP_R", chap["CHAP_R"])
        expected = algorithm.response(self._identifier, self.initiator.secret, self._challenge)
        if len(received) != len(expected) or not responses_match(expected, received):
            raise AuthenticationError(
                f"CHAP: the target refused the login of user {user!r}: CHAP_R does not match the secret "
                f"configured for that user ({algorithm.name}, RFC 7143 §12.1.3); make the initiator's "
                "CHAP secret equal to the one in the target's ACL"
            )
        if "CHAP_C" not in chap:
            return {}
        return self._answer_mutual(chap)

    def _answer_mutual(self, chap: dict[str, str]) -> dict[str, str]:
        algorithm = self.algorithm
        assert algorithm is not None
        self.mutual = True
        if self.target is None:
            raise AuthenticationError(
                f"CHAP: the initiator (user {self.initiator.user!r}) asked the target to authenticate "
                "itself (mutual CHAP), but no target CHAP user and secret are configured; configure "
                "them on the target, or turn off mutual CHAP on the initiator (RFC 7143 §12.1.3)"
            )
        identifier = parse_identifier(chap["CHAP_I"])
        challenge = decode_binary("CHAP_C", chap["CHAP_C"])
        if responses_match(challenge, self._challenge):
            raise AuthenticationError(
                f"CHAP: the target refused the login of user {self.initiator.user!r}: the initiator's "
                "CHAP_C repeats the challenge the target sent, a reflection attack (RFC 7143 §9.2.1)"
            )
        # The initiator's response already matched its own secret, and the constructor refused a
        # target secret equal to it, so the same secret cannot be serving both directions (§9.2.1).
        return {
            "CHAP_N": self.target.user,
            "CHAP_R": encode_binary(algorithm.response(identifier, self.target.secret, challenge)),
        }


_TargetHandler = Callable[[ChapTarget, dict[str, str]], dict[str, str]]
_TARGET_TABLE: dict[tuple[TargetChapState, frozenset[str]], tuple[_TargetHandler, TargetChapState]] = {
    (TargetChapState.AWAIT_ALGORITHMS, _A): (ChapTarget._on_algorithms, TargetChapState.CHALLENGED),
    (TargetChapState.CHALLENGED, _NR): (ChapTarget._on_response, TargetChapState.AUTHENTICATED),
    (TargetChapState.CHALLENGED, _NRIC): (ChapTarget._on_response, TargetChapState.AUTHENTICATED),
}
"""(state, CHAP keys received) -> (handler, next state). A missing entry is a protocol error."""


# ---------------------------------------------------------------------------------------------
# The initiator side


class InitiatorChapState(StrEnum):
    """Where the initiator's CHAP exchange stands."""

    START = "start"
    AWAIT_CHALLENGE = "CHAP_A sent, await CHAP_A/CHAP_I/CHAP_C"
    AWAIT_TARGET_RESPONSE = "response and challenge sent, await CHAP_N/CHAP_R"
    DONE = "done"
    FAILED = "failed"


class ChapInitiator(_ChapParty):
    """The initiator side of CHAP, driven by the keys of each Login Response.

    ``credentials`` are the initiator's CHAP name and secret. ``target``, if given, turns on mutual
    CHAP: the name and secret the target must prove. Call :meth:`start` for the first keys, then
    :meth:`receive` with each response. :attr:`done` tells when nothing more is expected; with
    mutual CHAP the login must not leave the security stage before it is True.
    """

    def __init__(self, credentials: ChapCredentials, *, target: ChapCredentials | None = None,
                 **options: Any) -> None:
        super().__init__(credentials, target, **options)
        self.credentials = credentials
        self.state = InitiatorChapState.START
        self.target_authenticated = False

    @property
    def done(self) -> bool:
        """True when this side expects nothing more (the target may still refuse the login)."""
        return self.state is InitiatorChapState.DONE

    def start(self) -> dict[str, str]:
        """The first CHAP keys: the algorithms this initiator offers, in order of preference."""
        if self.state is not InitiatorChapState.START:
            raise LocalProtocolError(f"CHAP already started (state '{self.state}')")
        self.state = InitiatorChapState.AWAIT_CHALLENGE
        return {"CHAP_A": ",".join(str(code) for code in self.algorithms)}

    def receive(self, received: Mapping[str, str]) -> dict[str, str]:
        """Consume the CHAP_* keys of one Login Response; return the CHAP_* keys to send next."""
        chap = _chap_keys(received)
        if not chap:
            return {}
        handler = _INITIATOR_TABLE.get((self.state, frozenset(chap)))
        if handler is None:
            if self.state in (InitiatorChapState.START, InitiatorChapState.FAILED):
                raise LocalProtocolError(f"CHAP cannot take keys in state '{self.state}'; got {sorted(chap)}")
            state, self.state = self.state, InitiatorChapState.FAILED
            raise RemoteProtocolError(
                f"CHAP: the target sent {', '.join(sorted(chap))} while the initiator was in state "
                f"'{state}'; see the exchange in RFC 7143 §12.1.3"
            )
        try:
            next_state, answer = handler(self, chap)
        except Exception:
            self.state = InitiatorChapState.FAILED
            raise
        self.state = next_state
        return answer

    def _on_rejected(self, chap: dict[str, str]) -> tuple[InitiatorChapState, dict[str, str]]:
        offered = ",".join(str(code) for code in self.algorithms)
        if chap["CHAP_A"] == "Reject":
            raise AuthenticationError(
                f"CHAP: the target supports none of the algorithms CHAP_A={offered} offered for user "
                f"{self.credentials.user!r} (RFC 7143 §12.1.3); enable a common one (MD5 is 5, SHA-256 is 7)"
            )
        raise RemoteProtocolError(
            f"CHAP: the target answered CHAP_A={chap['CHAP_A']} without CHAP_I and CHAP_C (RFC 7143 §12.1.3)"
        )

    def _on_challenge(self, chap: dict[str, str]) -> tuple[InitiatorChapState, dict[str, str]]:
        chosen = parse_number(chap["CHAP_A"])
        if chosen is None or chosen not in self.algorithms:
            offered = ",".join(str(code) for code in self.algorithms)
            raise RemoteProtocolError(
                f"CHAP: the target chose CHAP_A={chap['CHAP_A']}, which is not among the offered {offered} "
                "(RFC 7143 §6.2.1, §12.1.3)"
            )
        algorithm = self.algorithm = ALGORITHMS[chosen]
        identifier = parse_identifier(chap["CHAP_I"])
        challenge = decode_binary("CHAP_C", chap["CHAP_C"])
        answer = {
            "CHAP_N": self.credentials.user,
            "CHAP_R": encode_binary(algorithm.response(identifier, self.credentials.secret, challenge)),
        }
        if self.target is None:
            return InitiatorChapState.DONE, answer
        self._identifier = self._rng(1)[0]
        length = self.challenge_length or max(MIN_CHALLENGE_LENGTH, algorithm.digest_size)
        self._challenge = generate_challenge(length, self._rng)
        if responses_match(self._challenge, challenge):
            raise LocalProtocolError("the random source repeated the target's challenge (RFC 7143 §9.2.1)")
        answer["CHAP_I"] = str(self._identifier)
        answer["CHAP_C"] = encode_binary(self._challenge)
        return InitiatorChapState.AWAIT_TARGET_RESPONSE, answer

    def _on_target_response(self, chap: dict[str, str]) -> tuple[InitiatorChapState, dict[str, str]]:
        algorithm, target = self.algorithm, self.target
        assert algorithm is not None and target is not None
        if chap["CHAP_N"] != target.user:
            raise AuthenticationError(
                f"CHAP: the initiator refused the target: it answered mutual CHAP as user "
                f"{chap['CHAP_N']!r}, but {target.user!r} was expected (RFC 7143 §12.1.3); check the "
                "target CHAP user name configured on the initiator"
            )
        received = decode_binary("CHAP_R", chap["CHAP_R"])
        if responses_match(
            algorithm.response(self._identifier, self.credentials.secret, self._challenge), received
        ):
            raise AuthenticationError(
                f"CHAP: the initiator refused target user {target.user!r}: it answered with the initiator's "
                "own secret; each direction needs its own secret (RFC 7143 §9.2.1)"
            )
        expected = algorithm.response(self._identifier, target.secret, self._challenge)
        if len(received) != len(expected) or not responses_match(expected, received):
            raise AuthenticationError(
                f"CHAP: the initiator refused target user {target.user!r}: CHAP_R does not match the "
                f"mutual CHAP secret configured on the initiator ({algorithm.name}, RFC 7143 §12.1.3); make "
                "it equal to the target's own CHAP secret"
            )
        self.target_authenticated = True
        return InitiatorChapState.DONE, {}


_InitiatorHandler = Callable[[ChapInitiator, dict[str, str]], tuple[InitiatorChapState, dict[str, str]]]
_INITIATOR_TABLE: dict[tuple[InitiatorChapState, frozenset[str]], _InitiatorHandler] = {
    (InitiatorChapState.AWAIT_CHALLENGE, _AIC): ChapInitiator._on_challenge,
    (InitiatorChapState.AWAIT_CHALLENGE, _A): ChapInitiator._on_rejected,
    (InitiatorChapState.AWAIT_TARGET_RESPONSE, _NR): ChapInitiator._on_target_response,
}
"""(state, CHAP keys received) -> handler, which returns the next state and the keys to send."""


__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "MD5",
    "MIN_SECRET_LENGTH",
    "SHA1",
    "SHA3_256",
    "SHA256",
    "ChapAlgorithm",
    "ChapCredentials",
    "ChapInitiator",
    "ChapTarget",
    "InitiatorChapState",
    "TargetChapState",
    "chap_response",
    "check_secret",
    "decode_binary",
    "encode_binary",
    "generate_challenge",
    "negotiate_algorithm",
    "parse_identifier",
    "responses_match",
]
