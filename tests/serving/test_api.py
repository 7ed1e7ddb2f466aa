"""Every endpoint over HTTP: health, readiness, catalog, status, metrics, errors, correlations."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import redis

from features import layout
from features.durations import iso, now_us
from features.model import Definitions
from pipelines.sinks.dead_letters import write_rejected
from pipelines.stats import StatsWriter
from tests.serving.conftest import PROJECT, Api, write_entity_events

pytestmark = pytest.mark.timeout(60)
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def assert_error(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    """The SPEC error body: exactly `{"error": {"code", "message", "details"}}`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    assert "Traceback" not in response.text
    return body["error"]


def test_health_and_readiness(api: Api) -> None:
    assert api.http.get("/healthz").json() == {"status": "ok"}
    ready = api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["redis"] == "ok"
    assert len(ready.json()["registry"]) >= 8


def test_not_ready_without_registry(serve: Callable[..., Api]) -> None:
    api = serve()
    error = assert_error(api.http.get("/readyz"), 503, "not_ready")
    assert any("registry" in d for d in error["details"])
    online = api.http.post(
        "/v1/features/online", json={"features": ["user_txn:*"], "entities": [{"user_id": "u"}]}
    )
    error = assert_error(online, 503, "not_ready")
    assert "rillet apply" in error["message"]
    assert_error(api.http.get("/v1/feature-views"), 503, "not_ready")
    assert api.http.get("/healthz").status_code == 200


def test_correlation_id_is_echoed_or_generated(api: Api) -> None:
    echoed = api.http.get("/healthz", headers={"X-Correlation-ID": "req-123.abc"})
    assert echoed.headers["x-correlation-id"] == "req-123.abc"
    generated = api.http.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-correlation-id"])
    # An unsafe id (spaces, too long) is replaced rather than reflected.
    unsafe = api.http.get("/healthz", headers={"X-Correlation-ID": "a b" * 100})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-correlation-id"])
    error = api.http.get("/v1/feature-views/nope", headers={"X-Correlation-ID": "err-1"})
    assert error.headers["x-correlation-id"] == "err-1"
    missing = api.http.get("/no/such/path", headers={"X-Correlation-ID": "err-2"})
    assert missing.headers["x-correlation-id"] == "err-2"


def test_error_bodies(api: Api) -> None:
    error = assert_error(api.http.get("/v1/feature-views/user_tx"), 404, "not_found")
    assert "did you mean 'user_txn'" in error["message"]
    assert_error(api.http.get("/no/such/path"), 404, "not_found")
    assert_error(api.http.delete("/v1/status"), 405, "method_not_allowed")
    bad = api.http.post(
        "/v1/features/online", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(bad, 422, "invalid_request")
    error = assert_error(
        api.http.post("/v1/features/online", json={"features": []}), 422, "invalid_request"
    )
    assert {tuple(d["loc"]) for d in error["details"]} >= {
        ("body", "features"),
        ("body", "entities"),
    }
    unknown = api.http.post(
        "/v1/features/online",
        json={"features": ["user_txn:amount_sum"], "entities": [{"user_id": "u"}]},
    )
    assert "amount_sum_24h" in assert_error(unknown, 404, "not_found")["message"]
    malformed_ref = api.http.post(
        "/v1/features/online", json={"features": ["user_txn"], "entities": [{"user_id": "u"}]}
    )
    assert "view:feature" in assert_error(malformed_ref, 404, "not_found")["message"]
    missing_key = api.http.post(
        "/v1/features/online",
        json={
            "features": ["user_item_engagement:*"],
            "entities": [{"user_id": "u"}, {"item_id": "i"}],
        },
    )
    error = assert_error(missing_key, 422, "validation_failed")
    assert [d["index"] for d in error["details"]] == [0, 1]
    assert error["details"][0]["reasons"] == ["missing join key 'item_id'"]
    get_missing = api.http.get("/v1/features/online/user_item_engagement", params={"user_id": "u"})
    assert "item_id" in assert_error(get_missing, 422, "validation_failed")["message"]


def test_catalog(api: Api, applied: Definitions, redis_client: redis.Redis) -> None:
    now = now_us()
    row = {c.name: None for c in applied.sources["transactions"].schema}
    row.update(
        amount=5.0,
        currency="USD",
        merchant_category="fuel",
        country="US",
        channel="pos",
        card_present=True,
        ts=now - 1000,
    )
    for user in ("a", "b", "c"):
        write_entity_events(
            redis_client, applied, "user_txn", [user], [(now - 1000, user, row)], now
        )
    redis_client.hset(
        layout.freshness_key(PROJECT), "user_txn", now - 1000
    )  # the stats sink's write
    listing = api.http.get("/v1/feature-views")
    assert listing.status_code == 200
    body = listing.json()
    assert [v["name"] for v in body["feature_views"]] == sorted(applied.views)
    assert ISO.match(body["registry"]["applied_at"])
    one = api.http.get("/v1/feature-views/user_txn").json()
    assert one == next(v for v in body["feature_views"] if v["name"] == "user_txn")
    assert one["owner"] == "risk-team"
    assert one["tags"] == {"tier": "gold", "domain": "payments"}
    assert one["join_keys"] == ["user_id"]
    assert one["ttl"] == "30d"
    assert one["freshness"] == iso(now - 1000)
    assert one["entity_count"] == 3
    assert one["version"] is not None
    feature = next(f for f in one["features"] if f["name"] == "txn_count_1h")
    assert feature == {
        "name": "txn_count_1h",
        "function": "count",
        "column": None,
        "window": "1h",
        "granularity": "1m",
        "n": None,
    }
    other = api.http.get("/v1/feature-views/item_popularity").json()
    assert other["freshness"] is None and other["entity_count"] == 0


def test_status(api: Api, applied: Definitions, redis_client: redis.Redis) -> None:
    now = now_us()
    writer = StatsWriter(redis_client, PROJECT)
    pipe = redis_client.pipeline(transaction=False)
    writer.queue_parts(
        pipe,
        "transactions",
        {
            ("applied", "s00"): 90,
            ("applied", "s01"): 10,
            ("duplicates", "s00"): 3,
            ("lag_messages", "0"): 7,
            ("lag_seconds", "0"): 1.5,
        },
    )
    pipe.hset(layout.freshness_key(PROJECT), "user_txn", now - 2_000_000)
    pipe.execute()
    write_rejected(
        redis_client, PROJECT, "transactions", [(b'{"x": 1}', ["amount: missing"], "c1")] * 2
    )
    response = api.http.get("/v1/status")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["name"] for s in body["sources"]] == sorted(applied.sources)
    txn = next(s for s in body["sources"] if s["name"] == "transactions")
    assert txn["applied"] == 100 and txn["duplicates"] == 3
    assert txn["invalid"] == 2 and txn["dead_letters"] == 2
    assert txn["lag_messages"] == 7 and txn["lag_seconds"] == 1.5
    assert ISO.match(txn["updated_at"])
    logins = next(s for s in body["sources"] if s["name"] == "logins")
    assert logins["applied"] == 0 and logins["dead_letters"] == 0 and logins["lag_seconds"] is None
    view = next(v for v in body["views"] if v["name"] == "user_txn")
    assert view["freshness"] == iso(now - 2_000_000)
    assert view["age_seconds"] >= 2.0
    assert redis_client.xlen(layout.dead_letter_key(PROJECT, "transactions")) == 2


def test_metrics(api: Api) -> None:
    api.http.get("/v1/feature-views")
    api.http.post(
        "/v1/features/online", json={"features": ["user_txn:*"], "entities": [{"user_id": "x"}]}
    )
    text = api.http.get("/metrics").text
    assert "rillet_http_request_duration_seconds_bucket{" in text
    assert 'route="/v1/features/online"' in text
    assert 'rillet_redis_duration_seconds_count{operation="online_read"}' in text
    assert "rillet_online_entities_bucket" in text
