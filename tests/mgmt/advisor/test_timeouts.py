from sanpath.mgmt.advisor.finding import Severity

from .seed import array, clean, only, settings


def test_queueing_with_liveness_no_faster_than_commands_hangs() -> None:
    arr = array()
    [f] = only(clean(settings=settings(arr, nop_interval=20, nop_timeout=15)), "timeouts")
    assert f.severity == Severity.ERROR and "for ever" in f.message
    assert f.evidence["nop_interval"] == 20 and f.evidence["no_path_retry"] == "queue"


def test_the_same_liveness_with_bounded_queueing_is_a_warning() -> None:
    [f] = only(clean(settings=settings(array(), nop_interval=20, nop_timeout=15, no_path_retry=60)), "timeouts")
    assert f.severity == Severity.WARNING


def test_queueing_shorter_than_a_paths_way_back() -> None:
    [f] = only(clean(settings=settings(array(), no_path_retry=1, polling_interval=0.5)), "timeouts")
    assert "no_path_retry 1 queues I/O for 0.5 s" in f.message
