"""Schemathesis over `/openapi.json`: no 5xx, and every response matches its documented schema.

Runs against the real server with the example registry applied and two entities with
tiles, so generated requests reach 200 answers as well as the error paths. Each
operation gets a bounded number of positive and negative (schema-violating) examples.
(Driven through `as_strategy` + hypothesis: schemathesis' pytest fixture loader does
not work with pytest 9.)
"""

from __future__ import annotations

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from features.durations import now_us
from features.model import Definitions
from tests.serving.conftest import Api, write_entity_events

pytestmark = pytest.mark.timeout(120)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}


def test_openapi_conformance(api: Api, applied: Definitions, redis_client: redis.Redis) -> None:
    now = now_us()
    row = {c.name: None for c in applied.sources["transactions"].schema}
    row.update(amount=3.0, merchant="m", country="US", channel="pos", ts=now - 5_000_000)
    for user in ("u1", "u2"):
        write_entity_events(
            redis_client, applied, "user_txn", [user], [(now - 5_000_000, user, row)], now
        )
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {
        "POST /v1/features/online",
        "GET /v1/features/online/{view}",
        "POST /v1/features/historical",
        "POST /v1/events/{source}",
        "GET /v1/feature-views",
        "GET /v1/feature-views/{name}",
        "GET /v1/status",
        "GET /healthz",
        "GET /readyz",
    } <= labels
    # Known-good requests first: the 2xx answers must match their schemas too.
    by_label = {f"{op.method.upper()} {op.path}": op for op in operations}
    good = [
        (
            "POST /v1/features/online",
            {
                "body": {
                    "features": ["user_txn:*", "user_logins:*"],
                    "entities": [{"user_id": "u1"}, {"user_id": "zz"}],
                }
            },
        ),
        (
            "GET /v1/features/online/{view}",
            {"path_parameters": {"view": "user_txn"}, "query": {"user_id": "u2"}},
        ),
        (
            "POST /v1/events/{source}",
            {
                "path_parameters": {"source": "logins"},
                "body": [
                    {
                        "login_id": 1,
                        "user_id": "u1",
                        "success": True,
                        "failure_reason": None,
                        "device": "web",
                        "country": "US",
                        "ip": "10.0.0.1",
                        "latency_ms": 12,
                        "ts": "2026-01-01T00:00:00Z",
                    }
                ],
            },
        ),
        (
            "POST /v1/features/historical",
            {
                "body": {
                    "features": ["user_txn:txn_count_1h"],
                    "rows": [{"user_id": "u1", "timestamp": "2026-01-01T00:00:00Z"}],
                }
            },
        ),
        ("GET /v1/feature-views", {}),
        ("GET /v1/feature-views/{name}", {"path_parameters": {"name": "user_txn"}}),
        ("GET /v1/status", {}),
        ("GET /readyz", {}),
    ]
    for label, parts in good:
        response = by_label[label].Case(**parts).call_and_validate(base_url=api.url, checks=CHECKS)
        assert response.status_code in (200, 202), (label, response.text)
    calls = 0
    for operation in operations:
        for mode, examples in EXAMPLES.items():

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(base_url=api.url, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                # No parameters and no body: nothing can violate the schema.
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert calls >= 2 * len(operations)
