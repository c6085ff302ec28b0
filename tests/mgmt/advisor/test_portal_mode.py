from sanpath.mgmt.advisor import check
from sanpath.mgmt.advisor.finding import Severity

from .seed import IQN, array, clean, only, replace


def multi() -> object:
    return array(lambda c, k: f"{IQN}-{c.lower()}{k}")


def test_one_iqn_on_every_portal_is_portal_mode() -> None:
    [f] = [f for f in check(clean()) if f.rule == "portal-mode"]
    assert f.severity == Severity.OK and "one IQN" in f.message and len(f.evidence["iqns"][IQN]) == 4


def test_one_iqn_on_one_portal() -> None:
    arr = array()
    arr = replace(arr, portals=arr.portals[:1])
    found = [f for f in check(clean(arrays=(arr,), srs=())) if f.rule == "portal-mode"]
    assert [(f.severity, f.evidence["iqns"]) for f in found] == [(Severity.WARNING, {IQN: ["198.18.1.1:3260"]})]


def test_several_iqns_call_for_every_target_address() -> None:
    arr = multi()
    [f] = only(clean(arrays=(arr,), srs=(), iqn="*"), "portal-mode")
    assert f.severity == Severity.WARNING and f.evidence["missing"] == ["198.18.1.2", "198.18.2.1", "198.18.2.2"]
    listed = replace(arr, targets=tuple(f"{p.address}:3260" for p in arr.portals))
    notes = [f for f in check(clean(arrays=(listed,), srs=(), iqn="*")) if f.rule == "portal-mode"]
    assert [f.severity for f in notes] == [Severity.OK] and "multi-IQN" in notes[0].message
