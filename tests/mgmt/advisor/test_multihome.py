from sanpath.mgmt.advisor.finding import Severity

from .seed import clean, only, pbd, sr


def test_a_pbd_not_multihomed_under_multipathing() -> None:
    [f] = only(clean(srs=(sr(pbds=(pbd(multihomed=False, counts=(1, 1), sessions=1),)),)), "multihome")
    assert f.severity == Severity.WARNING and f.evidence["sessions"] == 1 and len(f.evidence["portals"]) == 4
    assert "maintenance" in f.fix
