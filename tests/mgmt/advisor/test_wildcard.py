from sanpath.mgmt.advisor import check
from sanpath.mgmt.advisor.finding import Severity

from .seed import IQN, array, clean, problems, replace, sr


def multi() -> object:
    arr = array(lambda c, k: f"{IQN}-{c.lower()}{k}")
    return replace(arr, targets=tuple(f"{p.address}:3260" for p in arr.portals))


def test_one_iqn_of_a_multi_iqn_array_reaches_part_of_the_paths() -> None:
    arr = multi()
    one = f"{IQN}-a1"
    facts = clean(arrays=(arr,), srs=(replace(sr(iqn=one, portals=arr.portals[:1]), targets=arr.targets),))
    found = [f for f in problems(facts) if f.rule == "wildcard"]
    assert [(f.severity, f.subject) for f in found] == [(Severity.ERROR, "SR sr1")]
    assert found[0].evidence["reached"] == ["198.18.1.1:3260"] and len(found[0].evidence["portals"]) == 4
    assert "*" in found[0].fix


def test_the_planned_iqn_before_the_sr_exists() -> None:
    arr = multi()
    [f] = [f for f in check(clean(arrays=(arr,), srs=(), iqn=f"{IQN}-b2")) if f.rule == "wildcard"]
    assert f.severity == Severity.ERROR and f.evidence["chosen"] == f"{IQN}-b2"
    assert [f for f in check(clean(arrays=(arr,), srs=(), iqn="*")) if f.rule == "wildcard"] == []


def test_the_wildcard_on_a_single_iqn_array() -> None:
    [f] = [f for f in check(clean(srs=(), iqn="*")) if f.rule == "wildcard"]
    assert f.severity == Severity.WARNING and IQN in f.fix


def test_an_iqn_the_array_does_not_offer() -> None:
    [f] = [f for f in check(clean(srs=(), iqn="iqn.2026-12.org.example:other")) if f.rule == "wildcard"]
    assert f.severity == Severity.ERROR and "not among" in f.message
