"""Limits: body size (413), entities and events per request (422), in-flight (429), timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from features.model import Definitions
from tests.serving.conftest import Api
from tests.serving.test_api import assert_error

pytestmark = pytest.mark.timeout(60)


def slow_body(chunks: int, pause: float) -> Iterator[bytes]:
    """A chunked upload that takes `chunks * pause` seconds."""
    yield b'{"features": ["user_txn:*"], "entities": ['
    for _ in range(chunks):
        time.sleep(pause)
        yield b" "
    yield b'{"user_id": "u1"}]}'


def test_body_too_large_is_413(applied: Definitions, serve: Callable[..., Api]) -> None:
    api = serve(max_body_bytes=4096)
    big = {"features": ["user_txn:*"], "entities": [{"user_id": "u" * 100}] * 100}
    error = assert_error(api.http.post("/v1/features/online", json=big), 413, "payload_too_large")
    assert "4096" in error["message"]
    events = orjson.dumps([{"txn_id": "x" * 5000}])
    assert_error(api.http.post("/v1/events/transactions", content=events), 413, "payload_too_large")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        payload = orjson.dumps(big)
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    response = api.http.post(
        "/v1/features/online", content=chunked(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


def test_too_many_entities_and_events_are_422(
    applied: Definitions, serve: Callable[..., Api]
) -> None:
    api = serve(max_entities=5, max_events=3)
    ok = {
        "features": ["user_txn:txn_count_1h"],
        "entities": [{"user_id": f"u{i}"} for i in range(5)],
    }
    assert api.http.post("/v1/features/online", json=ok).status_code == 200
    ok["entities"].append({"user_id": "one-too-many"})
    error = assert_error(api.http.post("/v1/features/online", json=ok), 422, "too_many_entities")
    assert "6 entities" in error["message"] and "RILLET_MAX_ENTITIES" in error["message"]
    error = assert_error(
        api.http.post("/v1/events/transactions", json=[{}] * 4), 422, "too_many_events"
    )
    assert "RILLET_MAX_EVENTS" in error["message"]


def test_request_timeout_is_503(applied: Definitions, serve: Callable[..., Api]) -> None:
    api = serve(request_timeout_s=0.3)
    response = api.http.post(
        "/v1/features/online",
        content=slow_body(6, 0.15),
        headers={"content-type": "application/json"},
    )
    error = assert_error(response, 503, "timeout")
    assert "0.3 s" in error["message"]
    assert response.headers["x-correlation-id"]
    assert api.http.get("/healthz").status_code == 200


def test_too_many_in_flight_is_429(applied: Definitions, serve: Callable[..., Api]) -> None:
    api = serve(max_in_flight=1)
    results: list[int] = []

    def slow() -> None:
        with httpx.Client(base_url=api.url, timeout=10) as http:
            response = http.post(
                "/v1/features/online",
                content=slow_body(8, 0.1),
                headers={"content-type": "application/json"},
            )
            results.append(response.status_code)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    response = api.http.get("/v1/status")
    thread.join()
    assert_error(response, 429, "too_many_requests")
    assert response.headers["retry-after"] == "1"
    assert results == [200]
