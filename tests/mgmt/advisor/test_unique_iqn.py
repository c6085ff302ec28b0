from sanpath.mgmt.advisor.finding import Severity

from .seed import HOST_IQN, IQN, clean, host, only, pbd, sr


def test_two_hosts_whose_iqns_differ_only_in_case() -> None:
    facts = clean(hosts=(host(), host("host2", HOST_IQN.upper())),
                  srs=(sr(pbds=(pbd(), pbd("host2"))),))
    [f] = only(facts, "unique-iqn")
    assert f.severity == Severity.ERROR and f.evidence == {"iqn": HOST_IQN, "hosts": {"host1": HOST_IQN,
                                                                                       "host2": HOST_IQN.upper()}}


def test_a_pbd_logging_in_with_another_hosts_iqn() -> None:
    facts = clean(hosts=(host(), host("host2", "iqn.2026-12.com.example:host2")),
                  srs=(sr(pbds=(pbd(), pbd("host2", initiator=HOST_IQN))),))
    [f] = only(facts, "unique-iqn")
    assert set(f.evidence["hosts"]) == {"host1", "host2"}


def test_a_host_named_like_the_target() -> None:
    [f] = only(clean(hosts=(host(iqn=IQN),)), "unique-iqn")
    assert f.evidence == {"iqn": IQN, "target": IQN} and f.host == "host1"
