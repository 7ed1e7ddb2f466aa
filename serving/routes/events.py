"""Event push: `POST /v1/events/{source}` — validate all, then append all, or nothing.

The body is a JSON array of events or NDJSON (`Content-Type: application/x-ndjson`).
Every event is checked against the source schema first; one invalid event refuses the
whole request with 422 listing each invalid index and its reasons. Accepted requests
are answered 202 once the broker acknowledged every append.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from features.errors import ValidationError
from features.logs import correlation_id
from serving import metrics
from serving.deps import State
from serving.errors import BadRequestError, LimitError
from serving.responses import JsonBytes
from serving.schemas import V1_ERRORS, EventsAccepted, error_responses

router = APIRouter(prefix="/v1/events", tags=["events"])
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "A JSON array of events, or NDJSON with Content-Type application/x-ndjson.",
    "content": {
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    },
}


def parse_events(body: bytes, content_type: str) -> list[Any]:
    """The events of a request body: a JSON array, or one JSON value per NDJSON line."""
    if content_type.split(";")[0].strip().lower() in NDJSON_TYPES:
        # A line that is not JSON stays raw bytes: the validator rejects it by its index.
        items: list[Any] = []
        for line in body.splitlines():
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    items.append(line)
        return items
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        msg = f"the request body is not valid JSON: {exc}"
        raise BadRequestError(msg) from None
    if not isinstance(data, list):
        msg = (
            f"expected a JSON array of events, got a JSON {type(data).__name__}; "
            "send [event, ...] or NDJSON with Content-Type application/x-ndjson"
        )
        raise BadRequestError(msg)
    return data


@router.post(
    "/{source}",
    status_code=202,
    response_model=EventsAccepted,
    responses=error_responses(*V1_ERRORS),
    openapi_extra={"requestBody": REQUEST_BODY},
    summary="Validate events of a source and append them to the broker (all or nothing)",
)
async def push_events(source: str, request: Request, state: State) -> JsonBytes:
    """202 with the count once the broker acknowledged; 422 with every invalid event."""
    registry = state.registry()
    src = registry.definitions.source(source)
    payloads = parse_events(await request.body(), request.headers.get("content-type", ""))
    limit = state.settings.max_events
    if len(payloads) > limit:
        msg = f"{len(payloads)} events in one request; the limit is {limit} (RILLET_MAX_EVENTS)"
        raise LimitError(msg, status=422, code="too_many_events")
    problems: list[dict[str, Any]] = []
    if payloads:
        _, rejected = await run_in_threadpool(registry.validator(source).validate, payloads)
        problems = [{"index": r.index, "reasons": list(r.reasons)} for r in rejected]
    if problems:
        metrics.EVENTS_REJECTED.labels(source).inc(len(problems))
        first = problems[0]
        msg = (
            f"{len(problems)} of {len(payloads)} event(s) of source {source!r} are invalid; "
            f"nothing was written. First: event {first['index']}: {'; '.join(first['reasons'])}"
        )
        raise ValidationError(msg, details=problems)
    request_id = correlation_id.get()
    for payload in payloads:
        payload.setdefault("correlation_id", request_id)
    sent = await run_in_threadpool(state.producer.send, src, payloads) if payloads else 0
    metrics.EVENTS_ACCEPTED.labels(source).inc(sent)
    return JsonBytes({"accepted": sent}, status_code=202)
