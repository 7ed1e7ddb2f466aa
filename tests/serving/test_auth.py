"""API keys and scopes: 401 without or with an unknown key, 403 with the wrong scope."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from features.model import Definitions
from tests.serving.conftest import Api
from tests.serving.test_api import assert_error

pytestmark = pytest.mark.timeout(60)
ONLINE = {"features": ["user_txn:txn_count_1h"], "entities": [{"user_id": "u1"}]}
EVENT = [
    {
        "txn_id": "t1",
        "user_id": "u1",
        "amount": 1.0,
        "currency": "USD",
        "merchant": None,
        "merchant_category": "fuel",
        "country": "US",
        "channel": "pos",
        "card_present": True,
        "ts": "2026-01-01T00:00:00Z",
    }
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def secured(applied: Definitions, serve: Callable[..., Api]) -> Api:
    return serve(api_keys="r-key:read,w-key:write,a-key:admin")


def test_missing_and_unknown_keys_are_401(secured: Api) -> None:
    response = secured.http.post("/v1/features/online", json=ONLINE)
    error = assert_error(response, 401, "unauthorized")
    assert "Bearer" in error["message"]
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(
        secured.http.post("/v1/features/online", json=ONLINE, headers=bearer("nope")),
        401,
        "unauthorized",
    )
    assert_error(
        secured.http.get("/v1/status", headers={"Authorization": "Basic cjprZXk="}),
        401,
        "unauthorized",
    )
    body = secured.http.get("/v1/feature-views", headers=bearer("nope")).text
    assert "nope" not in body and "r-key" not in body


def test_scopes(secured: Api) -> None:
    def post(path: str, body: object, key: str) -> httpx.Response:
        return secured.http.post(path, json=body, headers=bearer(key))

    for path in (
        "/v1/feature-views",
        "/v1/feature-views/user_txn",
        "/v1/status",
        "/v1/features/online/user_txn?user_id=u1",
    ):
        assert secured.http.get(path, headers=bearer("r-key")).status_code == 200, path
        assert secured.http.get(path, headers=bearer("a-key")).status_code == 200, path
        assert_error(secured.http.get(path, headers=bearer("w-key")), 403, "forbidden")
    assert post("/v1/features/online", ONLINE, "r-key").status_code == 200
    assert_error(post("/v1/features/online", ONLINE, "w-key"), 403, "forbidden")
    historical = {
        "features": ["user_txn:txn_count_1h"],
        "rows": [{"user_id": "u1", "timestamp": 0}],
    }
    assert post("/v1/features/historical", historical, "r-key").status_code == 200
    assert_error(post("/v1/features/historical", historical, "w-key"), 403, "forbidden")
    error = assert_error(post("/v1/events/transactions", EVENT, "r-key"), 403, "forbidden")
    assert "'write'" in error["message"]
    assert post("/v1/events/transactions", EVENT, "w-key").status_code == 202
    assert post("/v1/events/transactions", EVENT, "a-key").status_code == 202


def test_health_and_metrics_stay_open(secured: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert secured.http.get(path).status_code == 200, path


def test_openapi_declares_bearer_auth(secured: Api) -> None:
    schema = secured.http.get("/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert schema["paths"]["/v1/features/online"]["post"]["security"] == [{"HTTPBearer": []}]
