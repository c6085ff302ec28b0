"""service-time 0: least (bytes in flight + this I/O) / measured throughput; DM's rule before any
measurement (relative throughput 1: fewest bytes in flight)."""

from __future__ import annotations

from collections import Counter

from sanpath.multipath.path import Path
from sanpath.multipath.selectors import SELECTORS, ServiceTime, make_selector

from .plugin_helpers import bare_paths

MiB = 1 << 20


def test_without_measurements_fewest_bytes_in_flight() -> None:
    paths = bare_paths(2)
    paths[0].inflight_bytes, paths[0].inflight = 1 * MiB, 1
    paths[1].inflight_bytes, paths[1].inflight = 64 * 1024, 4  # more I/Os but fewer bytes
    assert ServiceTime().select(paths, 4096) is paths[1]


def test_prefers_the_faster_path() -> None:
    fast, slow = bare_paths(2)
    st = ServiceTime()
    for _ in range(5):
        st.finished(fast, MiB, 0.001)  # ~1 GB/s
        st.finished(slow, MiB, 0.010)  # ~100 MB/s
    rate_fast, rate_slow = st.throughput(fast), st.throughput(slow)
    assert rate_fast is not None and rate_slow is not None and rate_fast > 5 * rate_slow
    assert st.select([slow, fast], MiB) is fast


def simulate(st: ServiceTime, paths: list[Path], seconds_per_mib: dict[Path, float], ios: int) -> Counter[Path]:
    """Issue ``ios`` I/Os of 1 MiB; each path completes its queue at its own speed (a simple
    discrete simulation: a path's backlog drains in proportion to its speed between issues)."""
    chosen: Counter[Path] = Counter()
    for _ in range(ios):
        for p in paths:  # time passes: every path drains one step's worth
            done = min(p.inflight, max(1, round(0.002 / seconds_per_mib[p]))) if p.inflight else 0
            for _ in range(done):
                p.inflight -= 1
                p.inflight_bytes -= MiB
                st.finished(p, MiB, seconds_per_mib[p])
        p = st.select(paths, MiB)
        assert p is not None
        p.inflight += 1
        p.inflight_bytes += MiB
        st.started(p, MiB)
        chosen[p] += 1
    return chosen


def test_load_goes_mostly_to_the_faster_path_but_not_only() -> None:
    fast, slow = bare_paths(2)
    counts = simulate(ServiceTime(), [fast, slow], {fast: 0.001, slow: 0.004}, 400)
    assert counts[fast] > 2 * counts[slow]
    assert counts[slow] > 0


def test_unmeasured_path_is_tried() -> None:
    measured, new = bare_paths(2)
    st = ServiceTime()
    st.finished(measured, MiB, 0.001)
    measured.inflight_bytes = MiB
    assert st.select([measured, new], 4096) is new


def test_zero_byte_completion_ignored_and_registry() -> None:
    (p,) = bare_paths(1)
    st = ServiceTime()
    st.finished(p, 0, 0.5)
    assert st.throughput(p) is None
    assert st.select([], 1) is None
    assert SELECTORS["service-time"] is ServiceTime
    assert isinstance(make_selector("service-time 0"), ServiceTime)
