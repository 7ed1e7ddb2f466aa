"""Online feature vectors: `POST /v1/features/online` and `GET /v1/features/online/{view}`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError as PydanticValidationError

from features.durations import now_us
from features.errors import ValidationError
from serving.deps import ServerState
from serving.errors import LimitError
from serving.online import read_online
from serving.responses import JsonBytes
from serving.schemas import V1_ERRORS, OnlineRequest, OnlineResponse, error_responses

router = APIRouter(prefix="/v1/features", tags=["features"])


# The hot path parses its body with pydantic-core's JSON parser in one step instead of
# FastAPI's body machinery (json.loads, content-type parsing, dependency solving): a tenth
# of a one-entity request. The schema is still published as the request body.
ONLINE_BODY = {
    "required": True,
    "content": {"application/json": {"schema": OnlineRequest.model_json_schema()}},
}


def parse_online(raw: bytes) -> OnlineRequest:
    """The request body as `OnlineRequest`; 422 `invalid_request` like any FastAPI body."""
    try:
        return OnlineRequest.model_validate_json(raw)
    except PydanticValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


@router.post(
    "/online",
    response_model=OnlineResponse,
    responses=error_responses(*V1_ERRORS),
    openapi_extra={"requestBody": ONLINE_BODY},
    summary="Feature vectors of entities, as of now",
)
async def online(request: Request) -> JsonBytes:
    """Values of the requested features for every entity (unknown entities: empty windows)."""
    body = parse_online(await request.body())
    state: ServerState = request.app.state.rillet
    limit = state.settings.max_entities
    if len(body.entities) > limit:
        msg = f"{len(body.entities)} entities requested; the limit is {limit} (RILLET_MAX_ENTITIES)"
        raise LimitError(msg, status=422, code="too_many_entities")
    plan = state.registry().plan(body.features)
    answer = await read_online(state.online, plan, state.settings.project, body.entities, now_us())
    return JsonBytes(answer)


@router.get(
    "/online/{view}",
    response_model=OnlineResponse,
    responses=error_responses(*V1_ERRORS),
    summary="All features of one view for one entity given by its join keys",
)
async def online_view(view: str, request: Request) -> JsonBytes:
    """`GET /v1/features/online/user_txn?user_id=u1`: the entity's join keys as query params."""
    state: ServerState = request.app.state.rillet
    registry = state.registry()
    plan = registry.plan([f"{view}:*"])  # raises 404 with a suggestion for unknown views
    served = registry.views[view]
    params = request.query_params
    missing = [k for k in served.join_keys if k not in params]
    if missing:
        msg = f"view {view!r} needs the query parameter(s) {', '.join(missing)}"
        reasons = [f"missing join key {k!r}" for k in missing]
        details = [{"index": 0, "view": view, "reasons": reasons}]
        raise ValidationError(msg, details=details)
    entity = {k: params[k] for k in served.join_keys}
    answer = await read_online(state.online, plan, state.settings.project, [entity], now_us())
    return JsonBytes(answer)
