from sanpath.mgmt.advisor.finding import Severity

from .seed import array, clean, only, problems, replace


def test_a_subnet_that_reaches_one_controller_only() -> None:
    arr = array()
    # controller B's subnet-2 NIC is gone: subnet 2 reaches only controller A (port group 1)
    gone = [p for p in arr.portals if p.address == "198.18.2.2"]
    arr = replace(arr, portals=tuple(p for p in arr.portals if p not in gone))
    facts = clean(arrays=(arr,))
    [f] = only(replace(facts, srs=()), "controller-per-subnet")
    assert f.severity == Severity.WARNING
    assert f.evidence["subnet"] == "198.18.2.0/24" and f.evidence["reached"] == ["port group 1"]
    assert f.evidence["controllers"] == ["port group 1", "port group 2"]
    assert f.evidence["basis"] == "target port group (VPD 83h)"


def test_without_vpd_port_groups_the_tpgt_decides() -> None:
    arr = array()
    lun = replace(arr.luns[0], paths=tuple(replace(p, port_group=None) for p in arr.luns[0].paths))
    arr = replace(arr, luns=(lun,), portals=tuple(p for p in arr.portals if p.address != "198.18.1.2"))
    [f] = only(clean(arrays=(arr,), srs=()), "controller-per-subnet")
    assert f.evidence["basis"].startswith("target portal group tag") and f.evidence["reached"] == ["TPGT 1"]


def test_one_controller_leaves_nothing_to_judge() -> None:
    arr = array()
    arr = replace(arr, portals=tuple(p for p in arr.portals if p.tpgt == 1))
    assert problems(clean(arrays=(arr,), srs=())) == []
