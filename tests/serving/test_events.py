"""`POST /v1/events/{source}`: all-or-nothing validation, then 202 once the broker acked."""

from __future__ import annotations

import orjson
import pytest
import redis

from features import layout
from features.model import Definitions
from tests.serving.conftest import PROJECT, Api
from tests.serving.test_api import assert_error

pytestmark = pytest.mark.timeout(60)
PARTITIONS = 4


def txn(i: int, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "txn_id": f"t{i}",
        "user_id": f"u{i % 3}",
        "amount": 10.5 + i,
        "currency": "EUR",
        "merchant": None,
        "merchant_category": "travel",
        "country": "FR",
        "channel": "online",
        "card_present": False,
        "ts": 1767225600000 + i,
    }
    event.update(changes)
    return event


def stream_entries(client: redis.Redis, topic: str) -> list[dict[str, object]]:
    out = []
    for p in range(PARTITIONS):
        for _, fields in client.xrange(layout.stream_key(PROJECT, topic, p)):
            out.append(orjson.loads(fields[b"d"]))
    return out


def test_valid_array_is_appended(api: Api, redis_client: redis.Redis) -> None:
    events = [txn(i) for i in range(20)]
    response = api.http.post(
        "/v1/events/transactions", json=events, headers={"X-Correlation-ID": "push-1"}
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 20}
    stored = stream_entries(redis_client, "transactions")
    assert sorted(e["txn_id"] for e in stored) == sorted(e["txn_id"] for e in events)
    # Events without their own correlation id carry the request's, for their dead letters.
    assert {e["correlation_id"] for e in stored} == {"push-1"}
    # Routed by the source key: one user's events share a partition.
    for p in range(PARTITIONS):
        for _, fields in redis_client.xrange(layout.stream_key(PROJECT, "transactions", p)):
            assert layout.partition_of([orjson.loads(fields[b"d"])["user_id"]], PARTITIONS) == p


def test_ndjson_is_accepted_and_keeps_own_correlation_ids(
    api: Api, redis_client: redis.Redis
) -> None:
    lines = b"\n".join(orjson.dumps(txn(i, correlation_id=f"c{i}")) for i in range(3)) + b"\n\n"
    response = api.http.post(
        "/v1/events/transactions", content=lines, headers={"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 3}
    assert sorted(e["correlation_id"] for e in stream_entries(redis_client, "transactions")) == [
        "c0",
        "c1",
        "c2",
    ]


def test_any_invalid_event_refuses_all(api: Api, redis_client: redis.Redis) -> None:
    events = [
        txn(0),
        txn(1, amount=-5),
        txn(2),
        txn(3, currency="JPY", user_id=None),
        "oops",
        txn(5),
    ]
    response = api.http.post("/v1/events/transactions", json=events)
    error = assert_error(response, 422, "validation_failed")
    assert "nothing was written" in error["message"]
    by_index = {d["index"]: d["reasons"] for d in error["details"]}
    assert sorted(by_index) == [1, 3, 4]
    assert any("amount" in r for r in by_index[1])
    assert len(by_index[3]) == 2 and any("user_id" in r for r in by_index[3])
    assert any("currency" in r for r in by_index[3])
    assert stream_entries(redis_client, "transactions") == []
    assert redis_client.exists(layout.dead_letter_key(PROJECT, "transactions")) == 0


def test_ndjson_line_that_is_not_json_is_listed(api: Api, redis_client: redis.Redis) -> None:
    body = orjson.dumps(txn(0)) + b"\n{broken\n" + orjson.dumps(txn(2))
    response = api.http.post(
        "/v1/events/transactions", content=body, headers={"content-type": "application/x-ndjson"}
    )
    error = assert_error(response, 422, "validation_failed")
    assert [d["index"] for d in error["details"]] == [1]
    assert stream_entries(redis_client, "transactions") == []


def test_malformed_bodies_and_unknown_sources(api: Api, applied: Definitions) -> None:
    assert_error(api.http.post("/v1/events/transactions", content=b"[{"), 400, "bad_request")
    error = assert_error(
        api.http.post("/v1/events/transactions", json={"txn_id": "t"}), 400, "bad_request"
    )
    assert "JSON array" in error["message"]
    error = assert_error(api.http.post("/v1/events/transaction", json=[txn(0)]), 404, "not_found")
    assert "did you mean 'transactions'" in error["message"]
    assert api.http.post("/v1/events/transactions", json=[]).json() == {"accepted": 0}
