"""Prometheus metrics of the feature server: request latency, Redis timing, online load.

Labels use route templates (`/v1/features/online/{view}`), never raw paths, so the
series count stays bounded. With several uvicorn workers `rillet serve` points
`PROMETHEUS_MULTIPROC_DIR` at a shared directory and `/metrics` aggregates all workers.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

REQUEST_SECONDS = Histogram(
    "rillet_http_request_duration_seconds",
    "Time from request start to the end of the response, by route template and status.",
    ("method", "route", "status"),
    buckets=LATENCY_BUCKETS,
)
REDIS_SECONDS = Histogram(
    "rillet_redis_duration_seconds",
    "Time of one Redis round trip, by operation.",
    ("operation",),
    buckets=LATENCY_BUCKETS,
)
ONLINE_ENTITIES = Histogram(
    "rillet_online_entities",
    "Entities per online feature request.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
EVENTS_ACCEPTED = Counter(
    "rillet_events_accepted",
    "Events appended to the broker by the push API, by source.",
    ("source",),
)
EVENTS_REJECTED = Counter(
    "rillet_events_rejected",
    "Events refused by the push API's validation, by source.",
    ("source",),
)


_REQUEST_CHILDREN: dict[tuple[str, str, int], Any] = {}


def request_seconds(method: str, route: str, status: int) -> Any:
    """The latency histogram of one (method, route template, status), looked up once."""
    key = (method, route, status)
    child = _REQUEST_CHILDREN.get(key)
    if child is None:
        child = _REQUEST_CHILDREN[key] = REQUEST_SECONDS.labels(method, route, str(status))
    return child


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
