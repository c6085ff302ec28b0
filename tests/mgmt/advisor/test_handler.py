from sanpath.mgmt.advisor.finding import Severity
from sanpath.mgmt.advisor.handler import lsi_family

from .seed import array, clean, host, only, problems, settings


def test_an_lsi_array_under_dmp() -> None:
    arr = array(vendor="LSI", product="INF-01-00", tpgs=0)
    [f] = only(clean(arrays=(arr,), settings=settings(arr)), "handler")
    assert f.severity == Severity.WARNING and f.evidence["vendor"] == "LSI" and f.evidence["hosts"] == ["host1"]
    assert "--handler rdac" in f.fix and f.section.title == "Enabling MPP RDAC Handler Support for LSI Arrays"
    assert problems(clean(arrays=(arr,), hosts=(host(handler="rdac"),), settings=settings(arr))) == []


def test_dell_md3_and_ibm_ds4_are_lsi_family() -> None:
    assert lsi_family("DELL", "MD32xxi") and lsi_family("IBM", "1814      FAStT") and lsi_family("NETAPP", "INF-01-00")
    assert not lsi_family("NETAPP", "LUN C-Mode") and not lsi_family("SANPATH", "sanpath-lun")


def test_alua_without_the_alua_prioritizer() -> None:
    arr = array()
    [f] = only(clean(arrays=(arr,), settings=settings(arr, prio="const", path_grouping_policy="multibus")),
               "handler")
    assert f.evidence["prio"] == "const" and f.evidence["origins"]["prio"] == "command line"


def test_equallogic_calls_for_a_bond() -> None:
    arr = array(vendor="EQLOGIC", product="100E-00", tpgs=0)
    [f] = only(clean(arrays=(arr,), settings=settings(arr)), "handler")
    assert "Bond" in f.fix and f.section.chapter == 1
