from sanpath.mgmt.advisor.finding import Severity

from .seed import SCSI_ID, clean, only, pbd, sr


def test_a_pbd_below_its_max() -> None:
    [f] = only(clean(srs=(sr(pbds=(pbd(counts=(3, 4), sessions=3),)),)), "path-count")
    assert f.severity == Severity.WARNING and f.evidence[f"mpath-{SCSI_ID}"] == [3, 4]


def test_no_active_path_is_an_error() -> None:
    [f] = only(clean(srs=(sr(pbds=(pbd(counts=(0, 4), sessions=0),)),)), "path-count")
    assert f.severity == Severity.ERROR


def test_fewer_sessions_than_portals() -> None:
    [f] = only(clean(srs=(sr(pbds=(pbd(counts=(2, 2), sessions=2),)),)), "path-count")
    assert "2 session(s) for 4 portals" in f.message
