"""Prometheus metrics of one host, built at each scrape from its data-path processes' status answers:
paths active and max per PBD, the state of each path, per-path I/O and errors, failovers and
reconnects (re-logins after a path came back), and the exports' NBD clients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PATH_STATES = ("active", "ready", "ghost", "marginal", "faulty")


class _Snapshot(Collector):
    def __init__(self, host: str, statuses: dict[str, dict[str, Any]]) -> None:
        self.host = host
        self.statuses = statuses  # PBD uuid -> the data-path process's status

    def collect(self) -> Iterable[Metric]:
        pbd_labels = ["host", "pbd", "scsi_id"]
        path_labels = [*pbd_labels, "path"]
        active = GaugeMetricFamily("sanpath_pbd_paths_active", "Paths carrying or ready for I/O", labels=pbd_labels)
        maximum = GaugeMetricFamily("sanpath_pbd_paths_max", "Paths the PBD should have (XenServer's max)",
                                    labels=pbd_labels)
        clients = GaugeMetricFamily("sanpath_pbd_nbd_clients", "NBD clients of the export", labels=pbd_labels)
        state = GaugeMetricFamily("sanpath_path_state", "1 for the path's current state", labels=[*path_labels,
                                                                                                 "state"])
        ios = CounterMetricFamily("sanpath_path_ios", "SCSI commands completed on the path", labels=path_labels)
        nbytes = CounterMetricFamily("sanpath_path_bytes", "Bytes moved on the path", labels=path_labels)
        errors = CounterMetricFamily("sanpath_path_errors", "Commands that failed on the path", labels=path_labels)
        failovers = CounterMetricFamily("sanpath_path_failovers", "Times the path failed and I/O moved off it",
                                        labels=path_labels)
        reconnects = CounterMetricFamily("sanpath_path_reconnects", "Times the path came back", labels=path_labels)
        for pbd, st in sorted(self.statuses.items()):
            base = [self.host, pbd, str(st.get("wwid", ""))]
            current, most = st.get("mpath_counts", [0, 0])
            active.add_metric(base, current)
            maximum.add_metric(base, most)
            clients.add_metric(base, st.get("nbd_clients", 0))
            counters = st.get("path_counters", {})
            for group in st.get("groups", []):
                for p in group.get("paths", []):
                    labels = [*base, str(p["name"])]
                    for s in PATH_STATES:
                        state.add_metric([*labels, s], 1.0 if p.get("state") == s else 0.0)
                    ios.add_metric(labels, p.get("ios", 0))
                    nbytes.add_metric(labels, p.get("bytes", 0))
                    errors.add_metric(labels, p.get("errors", 0))
                    failovers.add_metric(labels, counters.get(p["name"], {}).get("failed", 0))
                    reconnects.add_metric(labels, counters.get(p["name"], {}).get("reinstated", 0))
        yield from (active, maximum, clients, state, ios, nbytes, errors, failovers, reconnects)


def exposition(host: str, statuses: dict[str, dict[str, Any]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(host, statuses))
    return generate_latest(registry)
