from sanpath.mgmt.advisor.facts import Route
from sanpath.mgmt.advisor.finding import Severity

from .seed import clean, host, only, pbd, problems, replace, routes, sr


def test_a_portal_reached_through_the_management_nic() -> None:
    bad = (*routes(), Route("198.18.9.1", "", "host-mgmt", "198.18.0.1"))
    [f] = only(clean(hosts=(host(routes=bad),)), "management-interface")
    assert f.severity == Severity.ERROR and "management interface host-mgmt via 198.18.0.1" in f.message
    assert f.evidence["portal"] == "198.18.9.1" and f.evidence["device"] == "host-mgmt"


def test_a_portal_reached_through_a_nic_that_is_not_for_storage() -> None:
    bad = (*routes(), Route("198.18.9.1", "", "eth7"))
    [f] = only(clean(hosts=(host(routes=bad),)), "management-interface")
    assert f.severity == Severity.WARNING and "not a storage NIC" in f.message


def test_another_hosts_routed_paths_come_from_its_report() -> None:
    other = pbd("host2", routed=("198.18.9.1:3260 via routing",))
    facts = clean(hosts=(host(), host("host2", "iqn.2026-12.com.example:host2", routes=())),
                  srs=(sr(pbds=(pbd(), other)),))
    [f] = only(facts, "management-interface")
    assert f.host == "host2" and f.evidence["routed"] == ["198.18.9.1:3260 via routing"]
    # the host looked up here is judged by its routes, not by its report
    facts = replace(facts, srs=(sr(pbds=(pbd(routed=("x",)),)),))
    assert problems(replace(facts, hosts=facts.hosts[:1])) == []
