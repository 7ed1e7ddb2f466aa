"""Prometheus metrics of the pipeline process, fed with the absolute values written to Redis.

The sinks record the totals Redis returns (counters kept in recovery state or guarded by
replay marks), so the exported counters never double after a crash. One `METRICS` per
process is shared by its worker threads; `serve_metrics` exposes it over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

COUNTERS = ("applied", "duplicates", "late", "invalid")
HELP = {
    "applied": "Events accepted and applied to tiles.",
    "duplicates": "Events dropped as repeated event ids.",
    "late": "Events dead-lettered as late.",
    "invalid": "Events dead-lettered by schema validation.",
}


class PipelineMetrics(Collector):
    """Latest absolute counters, lag and freshness, rendered at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, str], int] = {}
        self.lag: dict[str, tuple[int, float]] = {}
        self.freshness: dict[str, int] = {}

    def set_counter(self, source: str, name: str, value: int) -> None:
        """Record the total of one counter of a source."""
        with self._lock:
            self.counters[(source, name)] = value

    def set_lag(self, source: str, messages: int, seconds: float) -> None:
        """Record a source's total lag behind its broker head."""
        with self._lock:
            self.lag[source] = (messages, seconds)

    def set_freshness(self, view: str, ts_us: int) -> None:
        """Record the newest event time applied to a view (keeps the maximum)."""
        with self._lock:
            if ts_us > self.freshness.get(view, ts_us - 1):
                self.freshness[view] = ts_us

    def collect(self) -> Iterator[Any]:
        with self._lock:
            counters = dict(self.counters)
            lag = dict(self.lag)
            fresh = dict(self.freshness)
        for name in COUNTERS:
            family = CounterMetricFamily(f"rillet_pipeline_{name}", HELP[name], labels=["source"])
            for (source, counter), value in sorted(counters.items()):
                if counter == name:
                    family.add_metric([source], value)
            yield family
        msgs = GaugeMetricFamily(
            "rillet_pipeline_lag_messages", "Entries behind the broker head.", labels=["source"]
        )
        secs = GaugeMetricFamily(
            "rillet_pipeline_lag_seconds",
            "Age of the oldest unprocessed entry when behind.",
            labels=["source"],
        )
        for source, (m, s) in sorted(lag.items()):
            msgs.add_metric([source], m)
            secs.add_metric([source], s)
        yield msgs
        yield secs
        views = GaugeMetricFamily(
            "rillet_view_freshness_seconds",
            "Newest event time applied to a view (Unix seconds).",
            labels=["view"],
        )
        for view, ts in sorted(fresh.items()):
            views.add_metric([view], ts / 1e6)
        yield views


METRICS = PipelineMetrics()
_registered = False
_register_lock = threading.Lock()


def register_metrics() -> None:
    """Add `METRICS` to the default Prometheus registry once per process."""
    global _registered
    with _register_lock:
        if not _registered:
            REGISTRY.register(METRICS)
            _registered = True


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Serve `/metrics` (with the process and Bytewax Kafka metrics) on `port`."""
    register_metrics()
    start_http_server(port, addr=addr)
