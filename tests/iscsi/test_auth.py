"""CHAP (RFC 7143 §12.1.3, §9.2.1; RFC 1994): arithmetic, encodings, and both roles talking."""

from __future__ import annotations

import base64
import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanpath.errors import AuthenticationError, ConfigError, LocalProtocolError, RemoteProtocolError
from sanpath.iscsi import auth
from sanpath.iscsi.auth import (
    MD5,
    SHA256,
    ChapCredentials,
    ChapInitiator,
    ChapTarget,
    InitiatorChapState,
    TargetChapState,
)

INITIATOR = ChapCredentials(user="iqn.1994-05.com.example:host1", secret=b"initiator-secret-16")
TARGET = ChapCredentials(user="iqn.2003-01.org.example:array", secret=b"target-secret-0016")


def counting_rng(start: int = 1) -> auth.Rng:
    """A deterministic random source: consecutive byte values, so runs are reproducible."""
    counter = itertools.count(start)

    def rng(n: int) -> bytes:
        return bytes(next(counter) % 256 for _ in range(n))

    return rng


def converse(initiator: ChapInitiator, target: ChapTarget) -> list[dict[str, str]]:
    """Run the whole exchange; return every message in order."""
    messages = [initiator.start()]
    messages.append(target.receive(messages[-1]))
    messages.append(initiator.receive(messages[-1]))
    messages.append(target.receive(messages[-1]))
    if messages[-1]:
        messages.append(initiator.receive(messages[-1]))
    return messages


# --- arithmetic and encodings ---------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [auth.MD5, auth.SHA1, auth.SHA256, auth.SHA3_256])
def test_known_answer(algorithm: auth.ChapAlgorithm) -> None:
    identifier, secret, challenge = 0x2A, b"0123456789abcdef", bytes(range(16))
    oracle = hashlib.new(algorithm.hash_name, b"\x2a" + secret + challenge).digest()
    assert auth.chap_response(algorithm, identifier, secret, challenge) == oracle
    assert algorithm.response(identifier, secret, challenge) == oracle
    assert len(oracle) == algorithm.digest_size


def test_md5_fixed_vector() -> None:
    # MD5(0x01 || "secretsecret" || 0x00..0x0f), computed independently of the module.
    expected = hashlib.md5(b"\x01" + b"secretsecret" + bytes(range(16))).hexdigest()
    got = auth.chap_response(MD5, 1, b"secretsecret", bytes(range(16))).hex()
    assert got == expected


def test_algorithm_registry_numbers() -> None:
    assert {code: a.name for code, a in auth.ALGORITHMS.items()} == {
        5: "MD5",
        6: "SHA-1",
        7: "SHA-256",
        8: "SHA3-256",
    }
    assert 5 in auth.DEFAULT_ALGORITHMS and auth.DEFAULT_ALGORITHMS[0] == 7


def test_identifier_must_be_one_octet() -> None:
    with pytest.raises(LocalProtocolError):
        auth.chap_response(MD5, 256, b"s", b"c")
    assert auth.parse_identifier("255") == 255
    assert auth.parse_identifier("0x0a") == 10
    for bad in ("256", "-1", "x", ""):
        with pytest.raises(RemoteProtocolError, match="CHAP_I"):
            auth.parse_identifier(bad)


@given(st.binary(min_size=1, max_size=1024))
def test_binary_round_trip_both_encodings(data: bytes) -> None:
    hex_form = auth.encode_binary(data)
    assert hex_form.startswith("0x")
    assert auth.decode_binary("CHAP_C", hex_form) == data
    assert auth.decode_binary("CHAP_C", "0X" + data.hex().upper()) == data
    assert auth.decode_binary("CHAP_C", "0b" + base64.b64encode(data).decode()) == data
    assert auth.decode_binary("CHAP_C", "0B" + base64.b64encode(data).decode()) == data


def test_odd_hex_digits_get_a_leading_zero() -> None:
    assert auth.decode_binary("CHAP_R", "0xabc") == b"\x0a\xbc"


@pytest.mark.parametrize("text", ["abcd", "1234", "0x", "0xzz", "0b", "0b****", "0bQQ=Q", "0x" + "00" * 1025])
def test_bad_binary_values(text: str) -> None:
    with pytest.raises(RemoteProtocolError, match="CHAP_C"):
        auth.decode_binary("CHAP_C", text)


def test_challenge_generation_policy() -> None:
    assert len(auth.generate_challenge()) == 16
    assert len(auth.generate_challenge(1024)) == 1024
    for length in (15, 1025):
        with pytest.raises(ConfigError, match="challenge"):
            auth.generate_challenge(length)


def test_constant_time_compare() -> None:
    assert auth.responses_match(b"abc", b"abc")
    assert not auth.responses_match(b"abc", b"abd")
    assert not auth.responses_match(b"abc", b"abcd")


def test_short_secrets_refused_unless_allowed() -> None:
    short = ChapCredentials("u", b"elevenbytes")
    with pytest.raises(ConfigError, match=r"11 bytes.*at least 12.*§9\.2\.1"):
        ChapInitiator(short)
    with pytest.raises(ConfigError):
        ChapTarget(short)
    ChapInitiator(short, min_secret_length=1)  # a lab behind IPsec may choose so
    with pytest.raises(ConfigError):
        ChapInitiator(ChapCredentials("u", b""), min_secret_length=0)


def test_secret_not_in_repr() -> None:
    assert "initiator-secret" not in repr(INITIATOR)
    assert ChapCredentials.from_text("u", "sécret-secret").secret == "sécret-secret".encode()


def test_negotiate_algorithm_takes_initiators_order() -> None:
    assert auth.negotiate_algorithm("5,7", (7, 5)) is MD5
    assert auth.negotiate_algorithm("99,x,7", (7, 5)) is SHA256
    assert auth.negotiate_algorithm("6", (7, 5)) is None


# --- one-way CHAP ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [(5,), (7,), (6,), (8,), (7, 5)])
def test_one_way_success(algorithms: tuple[int, ...]) -> None:
    initiator = ChapInitiator(INITIATOR, algorithms=algorithms, rng=counting_rng(100))
    target = ChapTarget(INITIATOR, algorithms=(5, 6, 7, 8), rng=counting_rng(1))
    messages = converse(initiator, target)
    assert messages[0] == {"CHAP_A": ",".join(map(str, algorithms))}
    challenge = messages[1]
    assert challenge["CHAP_A"] == str(algorithms[0])
    algorithm = auth.ALGORITHMS[algorithms[0]]
    assert set(messages[2]) == {"CHAP_N", "CHAP_R"}
    # The oracle: H(I || secret || C) with hashlib, from the values on the wire.
    raw_challenge = bytes.fromhex(challenge["CHAP_C"][2:])
    assert len(raw_challenge) == max(16, algorithm.digest_size)
    oracle = hashlib.new(
        algorithm.hash_name, bytes([int(challenge["CHAP_I"])]) + INITIATOR.secret + raw_challenge
    ).hexdigest()
    assert messages[2] == {"CHAP_N": INITIATOR.user, "CHAP_R": "0x" + oracle}
    assert messages[3] == {}
    assert target.authenticated and target.state is TargetChapState.AUTHENTICATED
    assert initiator.done and not initiator.target_authenticated


def test_target_accepts_base64_response() -> None:
    target = ChapTarget(INITIATOR, rng=counting_rng())
    challenge = target.receive({"CHAP_A": "5"})
    response = MD5.response(
        int(challenge["CHAP_I"]), INITIATOR.secret, bytes.fromhex(challenge["CHAP_C"][2:])
    )
    assert (
        target.receive({"CHAP_N": INITIATOR.user, "CHAP_R": "0b" + base64.b64encode(response).decode()}) == {}
    )
    assert target.authenticated


def test_wrong_secret_message() -> None:
    wrong = ChapCredentials(INITIATOR.user, b"not-the-right-secret")
    initiator = ChapInitiator(wrong, rng=counting_rng(50))
    target = ChapTarget(INITIATOR, rng=counting_rng())
    with pytest.raises(AuthenticationError) as info:
        converse(initiator, target)
    message = str(info.value)
    assert "target refused" in message
    assert INITIATOR.user in message
    assert "secret" in message and "§12.1.3" in message
    assert "not-the-right-secret" not in message and "initiator-secret" not in message
    assert target.state is TargetChapState.FAILED
    with pytest.raises(LocalProtocolError):
        target.receive({"CHAP_A": "5"})


def test_wrong_user_name() -> None:
    initiator = ChapInitiator(ChapCredentials("someone-else", INITIATOR.secret))
    target = ChapTarget(INITIATOR)
    with pytest.raises(AuthenticationError, match=r"expects 'iqn\.1994-05\.com\.example:host1'"):
        converse(initiator, target)


def test_truncated_response_fails() -> None:
    target = ChapTarget(INITIATOR, rng=counting_rng())
    target.receive({"CHAP_A": "7"})
    with pytest.raises(AuthenticationError):
        target.receive({"CHAP_N": INITIATOR.user, "CHAP_R": "0x00"})


def test_no_common_algorithm() -> None:
    target = ChapTarget(INITIATOR, algorithms=(7,))
    with pytest.raises(AuthenticationError, match=r"CHAP_A=5.*allows only 7"):
        target.receive({"CHAP_A": "5"})
    initiator = ChapInitiator(INITIATOR, algorithms=(5,))
    initiator.start()
    with pytest.raises(AuthenticationError, match="none of the algorithms"):
        initiator.receive({"CHAP_A": "Reject"})


def test_target_choosing_unoffered_algorithm_is_protocol_error() -> None:
    initiator = ChapInitiator(INITIATOR, algorithms=(7,))
    initiator.start()
    with pytest.raises(RemoteProtocolError, match="not among the offered"):
        initiator.receive({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + "00" * 16})


def test_unexpected_keys_are_protocol_errors() -> None:
    target = ChapTarget(INITIATOR)
    with pytest.raises(RemoteProtocolError, match=r"CHAP_N, CHAP_R.*await CHAP_A"):
        target.receive({"CHAP_N": "x", "CHAP_R": "0x00"})
    initiator = ChapInitiator(INITIATOR)
    with pytest.raises(LocalProtocolError):
        initiator.receive({"CHAP_A": "5"})  # before start()
    initiator.start()
    with pytest.raises(RemoteProtocolError):
        initiator.receive({"CHAP_N": "x", "CHAP_R": "0x00"})


def test_other_keys_are_ignored() -> None:
    target = ChapTarget(INITIATOR, rng=counting_rng())
    assert target.receive({"AuthMethod": "CHAP"}) == {}
    assert target.state is TargetChapState.AWAIT_ALGORITHMS
    answer = target.receive({"CHAP_A": "7,5", "X-com.example.k": "1"})
    assert set(answer) == {"CHAP_A", "CHAP_I", "CHAP_C"}


def test_challenges_are_random_per_login() -> None:
    first = ChapTarget(INITIATOR).receive({"CHAP_A": "5"})
    second = ChapTarget(INITIATOR).receive({"CHAP_A": "5"})
    assert first["CHAP_C"] != second["CHAP_C"]


# --- mutual CHAP ----------------------------------------------------------------------------


def test_mutual_success() -> None:
    initiator = ChapInitiator(INITIATOR, target=TARGET, rng=counting_rng(200))
    target = ChapTarget(INITIATOR, target=TARGET, rng=counting_rng(1))
    messages = converse(initiator, target)
    assert set(messages[2]) == {"CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"}
    identifier = int(messages[2]["CHAP_I"])
    challenge = bytes.fromhex(messages[2]["CHAP_C"][2:])
    oracle = hashlib.sha256(bytes([identifier]) + TARGET.secret + challenge).hexdigest()
    assert messages[3] == {"CHAP_N": TARGET.user, "CHAP_R": "0x" + oracle}
    assert messages[4] == {}
    assert target.authenticated and target.mutual
    assert initiator.done and initiator.target_authenticated
    assert initiator.state is InitiatorChapState.DONE


def test_mutual_initiator_waits_for_target() -> None:
    initiator = ChapInitiator(INITIATOR, target=TARGET)
    target = ChapTarget(INITIATOR, target=TARGET)
    initiator.receive(target.receive(initiator.start()))
    assert not initiator.done
    assert initiator.state is InitiatorChapState.AWAIT_TARGET_RESPONSE


def test_mutual_without_target_credentials() -> None:
    initiator = ChapInitiator(INITIATOR, target=TARGET)
    target = ChapTarget(INITIATOR)
    with pytest.raises(AuthenticationError, match="no target CHAP user and secret"):
        converse(initiator, target)


def test_target_with_wrong_mutual_secret() -> None:
    initiator = ChapInitiator(INITIATOR, target=TARGET)
    target = ChapTarget(INITIATOR, target=ChapCredentials(TARGET.user, b"another-target-secret"))
    with pytest.raises(AuthenticationError) as info:
        converse(initiator, target)
    assert "initiator refused target user" in str(info.value)
    assert "mutual CHAP secret" in str(info.value)
    assert initiator.state is InitiatorChapState.FAILED


def test_target_with_wrong_mutual_name() -> None:
    initiator = ChapInitiator(INITIATOR, target=TARGET)
    target = ChapTarget(INITIATOR, target=ChapCredentials("impostor", TARGET.secret))
    with pytest.raises(AuthenticationError, match="'impostor'"):
        converse(initiator, target)


def test_same_secret_both_directions_refused_at_configuration() -> None:
    same = ChapCredentials(TARGET.user, INITIATOR.secret)
    with pytest.raises(ConfigError, match=r"own secret.*§9\.2\.1"):
        ChapInitiator(INITIATOR, target=same)
    with pytest.raises(ConfigError, match=r"own secret.*§9\.2\.1"):
        ChapTarget(INITIATOR, target=same)


def test_initiator_answering_with_the_target_secret_fails() -> None:
    """An initiator configured (wrongly) with the target's own mutual secret."""
    target = ChapTarget(ChapCredentials(INITIATOR.user, b"expected-initiator-secret"), target=TARGET)
    challenge = target.receive({"CHAP_A": "7"})
    identifier, raw = int(challenge["CHAP_I"]), bytes.fromhex(challenge["CHAP_C"][2:])
    # The response uses the target's secret: it fails as a wrong secret before anything else leaks.
    with pytest.raises(AuthenticationError, match="does not match"):
        target.receive(
            {
                "CHAP_N": INITIATOR.user,
                "CHAP_R": auth.encode_binary(SHA256.response(identifier, TARGET.secret, raw)),
                "CHAP_I": "1",
                "CHAP_C": "0x" + "11" * 16,
            }
        )


def test_same_secret_detected_on_the_wire_by_initiator() -> None:
    initiator = ChapInitiator(INITIATOR, target=TARGET, rng=counting_rng(7))
    initiator.start()
    reply = initiator.receive({"CHAP_A": "7", "CHAP_I": "3", "CHAP_C": "0x" + "22" * 32})
    identifier, raw = int(reply["CHAP_I"]), bytes.fromhex(reply["CHAP_C"][2:])
    reflected = SHA256.response(identifier, INITIATOR.secret, raw)  # the initiator's own secret
    with pytest.raises(AuthenticationError, match=r"initiator's own secret.*§9\.2\.1"):
        initiator.receive({"CHAP_N": TARGET.user, "CHAP_R": auth.encode_binary(reflected)})


def test_reflected_challenge_refused_by_target() -> None:
    initiator = ChapInitiator(INITIATOR, target=TARGET)
    target = ChapTarget(INITIATOR, target=TARGET)
    challenge = target.receive(initiator.start())
    reply = initiator.receive(challenge)
    reply["CHAP_C"] = challenge["CHAP_C"]  # an attacker reflecting the target's own challenge
    with pytest.raises(AuthenticationError, match=r"reflection.*§9\.2\.1"):
        target.receive(reply)


def test_initiator_never_reflects_the_target_challenge() -> None:
    initiator = ChapInitiator(INITIATOR, target=TARGET, rng=lambda n: b"\x22" * n)
    initiator.start()
    with pytest.raises(LocalProtocolError, match="repeated"):
        initiator.receive({"CHAP_A": "7", "CHAP_I": "3", "CHAP_C": "0x" + "22" * 32})


def test_unknown_algorithm_configuration() -> None:
    with pytest.raises(ConfigError, match="CHAP algorithms"):
        ChapInitiator(INITIATOR, algorithms=(4,))
    with pytest.raises(ConfigError):
        ChapTarget(INITIATOR, algorithms=())
