"""Redis going away answers 503 (never 500); a newly applied registry is served without restart."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from features.logs import JsonFormatter
from features.model import Definitions, FeatureView
from features.registry import apply_registry
from serving.settings import Settings
from tests.conftest import start_redis
from tests.serving.conftest import PROJECT, Api, running
from tests.serving.test_api import assert_error

pytestmark = pytest.mark.timeout(90)
ONLINE = {"features": ["user_txn:*"], "entities": [{"user_id": "u1"}]}


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.05)


def test_redis_down_is_503(
    tmp_path: Path, defs: Definitions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.setFormatter(JsonFormatter())  # formats at emit time, inside the request
    caplog.set_level(logging.WARNING, logger="rillet.serving")
    server = start_redis(tmp_path / "redis-down")
    try:
        client = server.client()
        apply_registry(client, PROJECT, defs)
        client.close()
        settings = Settings(
            redis_url=server.url,
            project=PROJECT,
            registry_poll_s=0.1,
            redis_timeout_s=0.5,
            log_level="WARNING",
        )
        with running(settings) as api:
            assert api.http.post("/v1/features/online", json=ONLINE).status_code == 200
            server.stop()
            calls = [
                ("POST", "/v1/features/online", ONLINE),
                ("GET", "/v1/features/online/user_txn?user_id=u1", None),
                ("GET", "/v1/feature-views", None),
                ("GET", "/v1/feature-views/user_txn", None),
                ("GET", "/v1/status", None),
                (
                    "POST",
                    "/v1/events/transactions",
                    [
                        {
                            "txn_id": "t",
                            "user_id": "u",
                            "amount": 1.0,
                            "currency": "USD",
                            "merchant": None,
                            "merchant_category": "fuel",
                            "country": "US",
                            "channel": "pos",
                            "card_present": True,
                            "ts": 0,
                        }
                    ],
                ),
            ]
            for number, (method, path, body) in enumerate(calls):
                cid = f"down-{number}"
                response = api.http.request(
                    method, path, json=body, headers={"X-Correlation-ID": cid}
                )
                error = assert_error(response, 503, response.json()["error"]["code"])
                assert error["code"] in ("redis_unavailable", "not_ready"), (path, error)
                assert response.headers["x-correlation-id"] == cid
            # The warning about each failed request carries its correlation id.
            lines = [orjson.loads(line) for line in caplog.text.splitlines() if line[:1] == "{"]
            logged = {line["correlation_id"] for line in lines if line["level"] == "warning"}
            assert {f"down-{n}" for n in range(len(calls))} <= logged
            ready = api.http.get("/readyz")
            error = assert_error(ready, 503, "not_ready")
            assert any(d.startswith("redis:") for d in error["details"])
            assert api.http.get("/healthz").status_code == 200
    finally:
        server.stop()


def test_registry_applied_later_is_picked_up(
    redis_client: redis.Redis, defs: Definitions, serve: Callable[..., Api]
) -> None:
    api = serve()
    assert_error(api.http.get("/readyz"), 503, "not_ready")
    apply_registry(redis_client, PROJECT, defs)
    wait_for(lambda: api.http.get("/readyz").status_code == 200)
    assert api.http.post("/v1/features/online", json=ONLINE).status_code == 200
    # A new view appears without a restart.
    base = defs.views["user_txn"]
    extra = FeatureView(
        name="user_txn_small",
        entity=base.entity,
        source=base.source,
        ttl=base.ttl,
        features=base.features[:2],
        owner="me",
    )
    grown = Definitions(defs.entities, defs.sources, {**defs.views, extra.name: extra})
    apply_registry(redis_client, PROJECT, grown)

    def served() -> bool:
        response = api.http.get("/v1/features/online/user_txn_small", params={"user_id": "u1"})
        return response.status_code == 200

    wait_for(served)
    body = httpx.get(f"{api.url}/v1/feature-views/user_txn_small").json()
    assert body["owner"] == "me" and len(body["features"]) == 2
