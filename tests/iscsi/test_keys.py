"""Key table and negotiation rules (RFC 7143 §6.2, §13): pure rules, properties, and paired negotiations."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanpath.errors import LocalProtocolError, RemoteProtocolError
from sanpath.iscsi import keys
from sanpath.iscsi.keys import KEYS, KeyType, Negotiation, Phase, Role, SessionParams, check_answer, respond

NUMERIC = [name for name, spec in KEYS.items() if spec.type in (KeyType.NUMERICAL_MIN, KeyType.NUMERICAL_MAX)]
BOOLEAN = [name for name, spec in KEYS.items() if spec.type in (KeyType.BOOLEAN_AND, KeyType.BOOLEAN_OR)]
LISTS = [name for name, spec in KEYS.items() if spec.type is KeyType.LIST]


@st.composite
def numeric_case(draw: st.DrawFn) -> tuple[str, int, int]:
    key = draw(st.sampled_from(NUMERIC))
    spec = KEYS[key]
    assert spec.minimum is not None and spec.maximum is not None
    values = st.integers(spec.minimum, spec.maximum)
    return key, draw(values), draw(values)


@st.composite
def list_case(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    key = draw(st.sampled_from(LISTS))
    values = list(KEYS[key].values)
    offered = draw(st.lists(st.sampled_from(values), min_size=1, unique=True))
    local = draw(st.lists(st.sampled_from(values), min_size=1, unique=True))
    return key, offered, local


# --- the table ------------------------------------------------------------------------------


def test_table_covers_rfc7143_keys() -> None:
    expected = {
        "HeaderDigest", "DataDigest", "MaxConnections", "SendTargets", "TargetName", "InitiatorName",
        "TargetAlias", "InitiatorAlias", "TargetAddress", "TargetPortalGroupTag", "InitialR2T",
        "ImmediateData", "MaxRecvDataSegmentLength", "MaxBurstLength", "FirstBurstLength",
        "DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T", "DataPDUInOrder",
        "DataSequenceInOrder", "ErrorRecoveryLevel", "SessionType", "AuthMethod", "CHAP_A", "CHAP_I",
        "CHAP_C", "CHAP_N", "CHAP_R", "TaskReporting", "iSCSIProtocolLevel",
    }  # fmt: skip
    assert expected <= set(KEYS)


def test_every_negotiated_default_is_valid() -> None:
    for spec in KEYS.values():
        if spec.negotiated or (spec.type is KeyType.NUMERICAL_DECLARATIVE and spec.default is not None):
            assert spec.default is not None, spec.name
            assert keys.validate_value(spec, spec.default) == spec.default, spec.name


def test_session_params_defaults_match_rfc() -> None:
    p = SessionParams()
    assert (p.header_digest, p.data_digest, p.max_connections) == (False, False, 1)
    assert (p.initial_r2t, p.immediate_data) == (True, True)
    assert (p.max_recv_data_segment_length, p.max_send_data_segment_length) == (8192, 8192)
    assert (p.max_burst_length, p.first_burst_length) == (262144, 65536)
    assert (p.default_time2wait, p.default_time2retain, p.max_outstanding_r2t) == (2, 20, 1)
    assert (p.data_pdu_in_order, p.data_sequence_in_order, p.error_recovery_level) == (True, True, 0)
    assert Negotiation(Role.INITIATOR).params() == p
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_connections = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "number"),
    [("0", 0), ("8192", 8192), ("0x2000", 8192), ("0X2000", 8192), ("0bIAA=", 8192), ("007", 7)],
)
def test_parse_number(text: str, number: int) -> None:
    assert keys.parse_number(text) == number


@pytest.mark.parametrize("text", ["", "-1", "+1", " 1", "1_000", "0x", "0xg", "1.5", str(1 << 64), "0b!!"])
def test_parse_number_rejects(text: str) -> None:
    assert keys.parse_number(text) is None


# --- respond: the responder's rules ---------------------------------------------------------


@given(numeric_case())
def test_numerical_result_and_agreement(case: tuple[str, int, int]) -> None:
    key, offered, local = case
    spec = KEYS[key]
    answer, value = respond(key, str(offered), str(local))
    assert answer == value
    assert answer is not None and value is not None
    result = int(value)
    if spec.type is KeyType.NUMERICAL_MIN:
        assert result == min(offered, local) and result <= offered and result <= local
    else:
        assert result == max(offered, local) and result >= offered and result >= local
    assert spec.minimum is not None and spec.maximum is not None
    assert spec.minimum <= result <= spec.maximum
    assert check_answer(key, str(offered), answer) == value


@given(st.sampled_from(BOOLEAN), st.booleans(), st.booleans())
def test_boolean_truth_tables(key: str, offered: bool, local: bool) -> None:
    yn = {True: "Yes", False: "No"}
    answer, value = respond(key, yn[offered], yn[local])
    expected = (offered and local) if KEYS[key].type is KeyType.BOOLEAN_AND else (offered or local)
    assert value == yn[expected] == answer
    assert answer is not None
    assert check_answer(key, yn[offered], yn[expected]) == yn[expected]
    if not keys.answer_required(key, yn[offered]):
        assert keys.optional_result(key, yn[offered]) == yn[expected]


@given(list_case())
def test_list_selects_offerers_earliest_supported(case: tuple[str, list[str], list[str]]) -> None:
    key, offered, local = case
    answer, value = respond(key, ",".join(offered), ",".join(local), phase=Phase.SECURITY)
    common = [v for v in offered if v in local]
    if common:
        assert value == answer == common[0]
        assert value in offered and value in local
        assert check_answer(key, ",".join(offered), value) == value
    else:
        assert (answer, value) == ("Reject", None)
        assert check_answer(key, ",".join(offered), "Reject") is None


def test_list_ignores_unknown_values_and_none_only_if_offered() -> None:
    assert tuple(respond("HeaderDigest", "MD5,CRC32C", "CRC32C,None")) == ("CRC32C", "CRC32C")
    assert tuple(respond("HeaderDigest", "CRC32C", "None")) == ("Reject", None)


def test_out_of_range_and_malformed_offers_are_rejected() -> None:
    assert tuple(respond("MaxBurstLength", "511", None)) == ("Reject", None)
    assert tuple(respond("MaxBurstLength", str(1 << 24), None)) == ("Reject", None)
    assert tuple(respond("ErrorRecoveryLevel", "3", "2")) == ("Reject", None)
    assert tuple(respond("MaxConnections", "many", None)) == ("Reject", None)
    assert tuple(respond("InitialR2T", "yes", None)) == ("Reject", None)


def test_hex_offers_are_numbers() -> None:
    assert tuple(respond("MaxBurstLength", "0x10000", "262144")) == ("65536", "65536")


@pytest.mark.parametrize("reserved", ["Reject", "Irrelevant", "NotUnderstood", "CRC32C,Reject"])
def test_reserved_constants_cannot_be_offered(reserved: str) -> None:
    with pytest.raises(RemoteProtocolError, match=r"reserved.*§6\.2"):
        respond("HeaderDigest", reserved, None)


def test_unknown_and_extension_keys_not_understood() -> None:
    assert tuple(respond("FrobnicationLevel", "3", None)) == ("NotUnderstood", None)
    assert tuple(respond("X-com.example.fast", "Yes", None)) == ("NotUnderstood", None)


def test_wrong_sender_is_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match=r"TargetAlias.*only the target.*§13\.6"):
        respond("TargetAlias", "disk", None, sender=Role.INITIATOR)
    with pytest.raises(RemoteProtocolError, match="InitiatorName"):
        respond("InitiatorName", "iqn.x", None, sender=Role.TARGET)


def test_phase_rules() -> None:
    # LO keys are rejected on a non-leading connection and in Full Feature Phase.
    assert tuple(respond("MaxBurstLength", "512", None, leading=False)) == ("Reject", None)
    assert tuple(respond("MaxBurstLength", "512", None, phase=Phase.FULL_FEATURE)) == ("Reject", None)
    # IO keys are fine on any connection during login, but not in Full Feature Phase.
    assert tuple(respond("HeaderDigest", "None", None, leading=False)) == ("None", "None")
    assert tuple(respond("HeaderDigest", "None", None, phase=Phase.FULL_FEATURE)) == ("Reject", None)
    # Security keys only in the security stage.
    assert tuple(respond("AuthMethod", "CHAP,None", "CHAP", phase=Phase.SECURITY)) == ("CHAP", "CHAP")
    assert tuple(respond("AuthMethod", "CHAP,None", "CHAP", phase=Phase.OPERATIONAL)) == ("Reject", None)
    # ALL keys anywhere.
    assert respond("MaxRecvDataSegmentLength", "4096", None, phase=Phase.FULL_FEATURE).value == "4096"


def test_declarations_are_not_answered() -> None:
    assert tuple(respond("MaxRecvDataSegmentLength", "0x10000", None)) == (None, "65536")
    assert tuple(respond("InitiatorName", "iqn.1994-05.com.example:h1", None)) == (
        None,
        "iqn.1994-05.com.example:h1",
    )
    with pytest.raises(RemoteProtocolError, match="MaxRecvDataSegmentLength"):
        respond("MaxRecvDataSegmentLength", "100", None)
    with pytest.raises(RemoteProtocolError, match="Discovery or Normal"):
        respond("SessionType", "Bogus", None)


def test_irrelevant_answers() -> None:
    assert tuple(respond("MaxBurstLength", "512", None, discovery=True)) == ("Irrelevant", None)
    assert respond("HeaderDigest", "None", None, discovery=True).answer == "None"
    assert tuple(respond("FirstBurstLength", "512", None, irrelevant=True)) == ("Irrelevant", None)


def test_obsolete_markers_rejected_not_notunderstood() -> None:
    for key in ("IFMarker", "OFMarker", "IFMarkInt", "OFMarkInt"):
        assert tuple(respond(key, "No", None)) == ("Reject", None)


def test_deferred_keys_are_not_negotiated_here() -> None:
    assert keys.is_deferred("CHAP_A") and keys.is_deferred("SendTargets")
    with pytest.raises(LocalProtocolError):
        respond("CHAP_A", "5", None)


# --- check_answer: the originator's rules ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "offered", "answer", "match"),
    [
        ("MaxBurstLength", "65536", "131072", "larger than the offer"),
        ("DefaultTime2Wait", "5", "2", "smaller than the offer"),
        ("MaxBurstLength", "65536", "100", "not a number in 512"),
        ("HeaderDigest", "CRC32C", "None", "not offered"),
        ("TaskReporting", "RFC3720", "FastAbort", "not offered"),
        ("ImmediateData", "No", "Yes", "contradicts the AND result No"),
        ("InitialR2T", "Yes", "No", "contradicts the OR result Yes"),
        ("DataPDUInOrder", "No", "Maybe", "not Yes or No"),
        ("MaxConnections", "1", "NotUnderstood", "must support"),
    ],
)
def test_bad_answers(key: str, offered: str, answer: str, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        check_answer(key, offered, answer)


def test_answers_that_leave_the_value_unchanged() -> None:
    assert check_answer("MaxBurstLength", "65536", "Reject") is None
    assert check_answer("MaxBurstLength", "65536", "Irrelevant") is None
    assert check_answer("TaskReporting", "FastAbort", "NotUnderstood") is None  # an RFC 3720 peer
    assert check_answer("X-com.example.k", "1", "NotUnderstood") is None
    assert check_answer("X-com.example.k", "1", "2") == "2"


# --- Negotiation: paired conversations ------------------------------------------------------


def _login(initiator: Negotiation, target: Negotiation) -> None:
    """One operational-stage round trip: the initiator offers, the target answers and declares."""
    offers = initiator.offer()
    answers = target.receive(offers)
    declarations = target.offer()
    assert not set(answers) & set(declarations)
    assert initiator.receive({**answers, **declarations}) == {}


def _swap(p: SessionParams) -> SessionParams:
    return dataclasses.replace(
        p,
        max_recv_data_segment_length=p.max_send_data_segment_length,
        max_send_data_segment_length=p.max_recv_data_segment_length,
    )


def _local_values() -> st.SearchStrategy[dict[str, str]]:
    fields: dict[str, st.SearchStrategy[str]] = {}
    for name in [*NUMERIC, "MaxRecvDataSegmentLength"]:
        spec = KEYS[name]
        assert spec.minimum is not None and spec.maximum is not None
        fields[name] = st.integers(spec.minimum, spec.maximum).map(str)
    for name in BOOLEAN:
        fields[name] = st.sampled_from(["Yes", "No"])
    for name in ("HeaderDigest", "DataDigest", "TaskReporting"):
        fields[name] = st.lists(st.sampled_from(KEYS[name].values), min_size=1, unique=True).map(",".join)
    return st.fixed_dictionaries({}, optional=fields).filter(
        lambda d: int(d.get("FirstBurstLength", "65536")) <= int(d.get("MaxBurstLength", "262144"))
    )


@given(_local_values(), _local_values())
def test_initiator_and_target_agree(local_i: dict[str, str], local_t: dict[str, str]) -> None:
    initiator = Negotiation(Role.INITIATOR, local_i, phase=Phase.OPERATIONAL)
    target = Negotiation(Role.TARGET, local_t, phase=Phase.OPERATIONAL)
    _login(initiator, target)
    assert initiator.complete and not initiator.pending
    ip, tp = initiator.params(), target.params()
    assert ip == _swap(tp)
    assert ip.max_recv_data_segment_length == int(local_i.get("MaxRecvDataSegmentLength", "8192"))
    assert ip.max_send_data_segment_length == int(local_t.get("MaxRecvDataSegmentLength", "8192"))
    if not (ip.initial_r2t and not ip.immediate_data):
        assert ip.first_burst_length <= ip.max_burst_length


def test_typical_login() -> None:
    initiator = Negotiation(
        Role.INITIATOR,
        {
            "InitiatorName": "iqn.1994-05.com.example:host1",
            "TargetName": "iqn.2003-01.org.example:disk1",
            "SessionType": "Normal",
            "AuthMethod": "None",
            "HeaderDigest": "CRC32C,None",
            "DataDigest": "CRC32C,None",
            "InitialR2T": "No",
            "ImmediateData": "Yes",
            "MaxBurstLength": "16776192",
            "FirstBurstLength": "262144",
            "MaxRecvDataSegmentLength": "262144",
        },
    )
    target = Negotiation(
        Role.TARGET,
        {"HeaderDigest": "None", "DataDigest": "CRC32C,None", "AuthMethod": "None",
         "TargetPortalGroupTag": "1", "MaxRecvDataSegmentLength": "65536", "MaxBurstLength": "1048576",
         "InitialR2T": "No", "FirstBurstLength": "262144"},
    )  # fmt: skip
    security = initiator.offer()
    assert set(security) == {"InitiatorName", "TargetName", "SessionType", "AuthMethod"}
    answers = target.receive(security)
    assert answers == {"AuthMethod": "None"}
    assert target.offer(["TargetPortalGroupTag"]) == {"TargetPortalGroupTag": "1"}
    initiator.receive({**answers, "TargetPortalGroupTag": "1"})
    initiator.phase = target.phase = Phase.OPERATIONAL
    _login(initiator, target)
    p = initiator.params()
    assert (p.header_digest, p.data_digest) == (False, True)
    assert (p.initial_r2t, p.immediate_data) == (False, True)
    assert (p.max_burst_length, p.first_burst_length) == (1048576, 262144)
    assert (p.max_recv_data_segment_length, p.max_send_data_segment_length) == (262144, 65536)
    assert (p.target_portal_group_tag, p.initiator_name) == (1, "iqn.1994-05.com.example:host1")
    t = target.params()
    assert t.initiator_name == "iqn.1994-05.com.example:host1"
    assert t.max_send_data_segment_length == 262144


def test_optional_answers_are_not_pending() -> None:
    initiator = Negotiation(
        Role.INITIATOR, {"ImmediateData": "No", "InitialR2T": "Yes"}, phase=Phase.OPERATIONAL
    )
    offers = initiator.offer()
    assert offers == {"ImmediateData": "No", "InitialR2T": "Yes"}
    assert initiator.complete
    assert initiator.params().immediate_data is False
    # The optional answer may still arrive, once.
    initiator.receive({"ImmediateData": "No"})
    with pytest.raises(RemoteProtocolError, match="already negotiated"):
        initiator.receive({"ImmediateData": "No"})


def test_pending_until_answered() -> None:
    initiator = Negotiation(Role.INITIATOR, {"MaxBurstLength": "65536"}, phase=Phase.OPERATIONAL)
    initiator.offer()
    assert initiator.pending == {"MaxBurstLength"}
    assert not initiator.complete
    initiator.receive({"MaxBurstLength": "4096"})
    assert initiator.complete
    assert initiator.params().max_burst_length == 4096


def test_peer_offering_twice_is_protocol_error() -> None:
    target = Negotiation(Role.TARGET, phase=Phase.OPERATIONAL)
    target.receive({"MaxBurstLength": "65536"})
    with pytest.raises(RemoteProtocolError, match=r"MaxBurstLength.*already negotiated.*§6\.2"):
        target.receive({"MaxBurstLength": "4096"})


def test_offering_twice_or_after_peer_is_local_error() -> None:
    initiator = Negotiation(Role.INITIATOR, {"MaxBurstLength": "65536"}, phase=Phase.OPERATIONAL)
    initiator.offer(["MaxBurstLength"])
    with pytest.raises(LocalProtocolError, match="already sent"):
        initiator.offer(["MaxBurstLength"])
    target = Negotiation(Role.TARGET, {"MaxBurstLength": "65536"}, phase=Phase.OPERATIONAL)
    target.receive({"MaxBurstLength": "65536"})
    with pytest.raises(LocalProtocolError, match="answer instead"):
        target.offer(["MaxBurstLength"])
    with pytest.raises(LocalProtocolError, match="only the initiator"):
        target.offer(["InitiatorName"])


def test_discovery_session_gets_irrelevant() -> None:
    target = Negotiation(Role.TARGET, phase=Phase.OPERATIONAL)
    answers = target.receive({"MaxBurstLength": "65536", "SessionType": "Discovery", "HeaderDigest": "None"})
    assert answers == {"MaxBurstLength": "Irrelevant", "HeaderDigest": "None"}
    assert target.params().session_type == "Discovery"
    quiet = Negotiation(Role.TARGET, phase=Phase.OPERATIONAL, use_irrelevant=False)
    assert quiet.receive({"SessionType": "Discovery", "MaxBurstLength": "512"}) == {"MaxBurstLength": "512"}


def test_first_burst_irrelevant_after_initial_r2t_and_no_immediate_data() -> None:
    target = Negotiation(Role.TARGET, {"ImmediateData": "No"}, phase=Phase.OPERATIONAL)
    # FirstBurstLength comes first on the wire but is decided after InitialR2T and ImmediateData.
    answers = target.receive({"FirstBurstLength": "4096", "InitialR2T": "Yes", "ImmediateData": "Yes"})
    assert list(answers) == ["FirstBurstLength", "InitialR2T", "ImmediateData"]
    assert answers["FirstBurstLength"] == "Irrelevant"
    assert answers["ImmediateData"] == "No"


def test_first_burst_clamped_to_max_burst() -> None:
    target = Negotiation(Role.TARGET, {"MaxBurstLength": "8192", "FirstBurstLength": "8192"})
    target.phase = Phase.OPERATIONAL
    answers = target.receive({"MaxBurstLength": "4096", "FirstBurstLength": "65536", "InitialR2T": "No"})
    assert answers["FirstBurstLength"] == "4096"


def test_peer_first_burst_above_max_burst_detected() -> None:
    initiator = Negotiation(
        Role.INITIATOR, {"MaxBurstLength": "262144", "FirstBurstLength": "65536"}, phase=Phase.OPERATIONAL
    )
    initiator.offer()
    # Each answer alone is a valid minimum, but together they break FirstBurstLength <= MaxBurstLength.
    initiator.receive({"MaxBurstLength": "512", "FirstBurstLength": "65536"})
    with pytest.raises(RemoteProtocolError, match=r"§13\.14"):
        initiator.params()


def test_first_burst_default_follows_small_max_burst() -> None:
    initiator = Negotiation(Role.INITIATOR, {"MaxBurstLength": "65536"}, phase=Phase.OPERATIONAL)
    initiator.offer()
    initiator.receive({"MaxBurstLength": "4096"})
    assert initiator.params().first_burst_length == 4096


def test_local_configuration_is_validated() -> None:
    with pytest.raises(LocalProtocolError, match="MaxBurstLength"):
        Negotiation(Role.INITIATOR, {"MaxBurstLength": "100"})
    with pytest.raises(LocalProtocolError, match="FirstBurstLength must not exceed"):
        Negotiation(Role.INITIATOR, {"FirstBurstLength": "262144", "MaxBurstLength": "65536"})


def test_extension_keys() -> None:
    initiator = Negotiation(Role.INITIATOR, {"X-com.example.turbo": "Yes"}, phase=Phase.OPERATIONAL)
    offers = initiator.offer()
    assert offers == {"X-com.example.turbo": "Yes"}
    target = Negotiation(Role.TARGET, phase=Phase.OPERATIONAL)
    answers = target.receive(offers)
    assert answers == {"X-com.example.turbo": "NotUnderstood"}
    initiator.receive(answers)
    assert initiator.complete
    assert initiator.params().extensions == ()


def test_deferred_keys_pass_through() -> None:
    target = Negotiation(Role.TARGET, {"AuthMethod": "CHAP"})
    assert target.receive({"AuthMethod": "CHAP,None", "CHAP_A": "7,5"}) == {"AuthMethod": "CHAP"}
    assert target.params().auth_method == "CHAP"


def test_full_feature_renegotiation_of_all_keys() -> None:
    target = Negotiation(Role.TARGET, phase=Phase.OPERATIONAL)
    target.receive({"MaxRecvDataSegmentLength": "65536"})
    target.phase = Phase.FULL_FEATURE
    target.new_exchange()
    assert target.receive({"MaxRecvDataSegmentLength": "16384", "MaxBurstLength": "512"}) == {
        "MaxBurstLength": "Reject"
    }
    assert target.params().max_send_data_segment_length == 16384
