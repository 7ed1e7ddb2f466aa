"""The one place where errors become HTTP answers: `{"error": {"code", "message", "details"}}`.

Every `RilletError` family, FastAPI's request validation, HTTP errors raised by routing and
Redis failures map to a status and a stable `code`; clients never see a stack trace.
Unexpected exceptions are logged with their traceback and answered 500 `internal`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from features.errors import (
    AuthError,
    DefinitionError,
    DurationError,
    RegistryError,
    RilletError,
    StorageError,
    UnknownNameError,
    ValidationError,
)

log = logging.getLogger("rillet.serving")


class BadRequestError(RilletError):
    """A request is malformed in a way the schema could not express (400)."""


class LimitError(RilletError):
    """A request exceeds a configured limit (413 for bodies, 422 for item counts)."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class NotReadyError(RilletError):
    """The server cannot answer yet: no registry applied, or Redis unreachable (503)."""

    def __init__(self, message: str, details: list[Any] | None = None) -> None:
        self.details = details or []
        super().__init__(message)


class OverloadedError(RilletError):
    """Too many requests in flight on this worker (429)."""


class TimeoutExceededError(RilletError):
    """The request took longer than `RILLET_REQUEST_TIMEOUT_S` (503)."""


class BrokerError(StorageError):
    """The event broker did not acknowledge an append (503)."""


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def error_body(code: str, message: str, details: list[Any] | None = None) -> bytes:
    """The JSON bytes of an error answer."""
    return orjson.dumps(
        {"error": {"code": code, "message": message, "details": details or []}},
        default=str,
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error answer with SPEC's JSON body."""
    return Response(
        error_body(code, message, details),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def classify(exc: BaseException) -> tuple[int, str, str, list[Any], dict[str, str]]:
    """Status, code, message, details and headers for an exception (500 if unknown)."""
    if isinstance(exc, AuthError):
        if exc.forbidden:
            return 403, "forbidden", str(exc), [], {}
        return 401, "unauthorized", str(exc), [], {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, ValidationError):
        return 422, "validation_failed", str(exc), list(exc.details), {}
    if isinstance(exc, LimitError):
        return exc.status, exc.code, str(exc), [], {}
    if isinstance(exc, UnknownNameError):
        return 404, "not_found", str(exc), [], {}
    if isinstance(exc, NotReadyError):
        return 503, "not_ready", str(exc), list(exc.details), {"Retry-After": "1"}
    if isinstance(exc, RegistryError):
        return 503, "registry_unavailable", str(exc), [], {"Retry-After": "1"}
    if isinstance(exc, OverloadedError):
        return 429, "too_many_requests", str(exc), [], {"Retry-After": "1"}
    if isinstance(exc, TimeoutExceededError):
        return 503, "timeout", str(exc), [], {}
    if isinstance(exc, BrokerError):
        return 503, "broker_unavailable", str(exc), [], {"Retry-After": "1"}
    if isinstance(exc, StorageError | RedisConnectionError | RedisTimeoutError):
        msg = f"the online store is unreachable: {exc}"
        return 503, "redis_unavailable", msg, [], {"Retry-After": "1"}
    if isinstance(exc, RedisError):
        return 503, "storage_error", f"the online store answered an error: {exc}", [], {}
    if isinstance(exc, DefinitionError):
        return 400, "invalid_definitions", str(exc), [str(p) for p in exc.problems], {}
    if isinstance(exc, BadRequestError | DurationError | RilletError):
        return 400, "bad_request", str(exc), [], {}
    return 500, "internal", "internal error; see the server log for this correlation id", [], {}


def response_for(exc: BaseException) -> Response:
    """The HTTP answer for an exception; unexpected ones are logged with a traceback."""
    status, code, message, details, headers = classify(exc)
    if status >= 500 and code == "internal":
        log.error("unhandled error", exc_info=exc)
    elif status >= 500:
        log.warning("%s: %s", code, message)
    return error_response(status, code, message, details, headers)


async def _rillet_handler(request: Request, exc: Exception) -> Response:
    return response_for(exc)


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    return error_response(exc.status_code, code, str(exc.detail), [], headers)


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]
    where = "; ".join(f"{'.'.join(d['loc'])}: {d['message']}" for d in details[:5])
    return error_response(422, "invalid_request", f"invalid request: {where}", details)


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on an app (unexpected errors are caught by the middleware)."""
    app.add_exception_handler(RilletError, _rillet_handler)
    app.add_exception_handler(RedisError, _rillet_handler)
    app.add_exception_handler(HTTPException, _http_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
