"""Request hygiene as one pure ASGI middleware: correlation id, limits, timeout, metrics, log.

Pure ASGI (not `BaseHTTPMiddleware`) because it wraps the hot path: it adds a few
microseconds per request. It sets `features.logs.correlation_id` for the request, so every
log line about it carries the id, and echoes it in `X-Correlation-ID`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.logs import correlation_id
from serving import metrics
from serving.errors import error_body, response_for

HEADER = b"x-correlation-id"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")
access_log = logging.getLogger("rillet.access")


def request_correlation_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's `X-Correlation-ID` if it is sane (≤128 safe characters), else a new one."""
    for name, value in headers:
        if name == HEADER and _VALID_ID.match(value):
            return value.decode()
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Correlation id, body size limit (413), in-flight limit (429), timeout, metrics, log."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        timeout_s: float,
        max_in_flight: int,
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.access_log = access_log
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        cid = request_correlation_id(scope["headers"])
        token = correlation_id.set(cid)
        cid_header = (HEADER, cid.encode())
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message["headers"] = [*message.get("headers", ()), cid_header]
            await send(message)

        self.in_flight += 1
        try:
            await self._guarded(scope, receive, send_with_id, state)
        finally:
            self.in_flight -= 1
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            metrics.request_seconds(method, template, state["status"]).observe(elapsed)
            if self.access_log:
                access_log.info(
                    "%s %s %s",
                    method,
                    scope["path"],
                    state["status"],
                    extra={"status": state["status"], "duration_ms": round(elapsed * 1000, 3)},
                )
            correlation_id.reset(token)

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, state: dict[str, Any]
    ) -> None:
        """Run the app under the limits; answer errors that escaped it, if nothing was sent."""
        if self.in_flight > self.max_in_flight:
            await _send_error(send, 429, "too_many_requests", "too many requests in flight")
            return
        length = _content_length(scope["headers"])
        if length is not None and length > self.max_body_bytes:
            msg = f"request body of {length} bytes exceeds the limit of {self.max_body_bytes}"
            await _send_error(send, 413, "payload_too_large", msg)
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, self._limited(receive), send)
        except TimeoutError:
            if state["started"]:
                raise
            msg = f"request took longer than the {self.timeout_s:g} s limit"
            await _send_error(send, 503, "timeout", msg)
        except Exception as exc:
            if state["started"]:
                raise
            response = response_for(exc)
            await response({"type": "http"}, receive, send)

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that refuses bodies growing past the limit (chunked uploads)."""
        limit = self.max_body_bytes
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException: FastAPI re-raises it from body parsing (other errors
                    # would become a generic 400), and the error handlers answer 413.
                    msg = f"request body exceeds the limit of {limit} bytes"
                    raise HTTPException(413, msg)
            return message

        return limited


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = error_body(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status in (429, 503):
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
