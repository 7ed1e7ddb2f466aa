"""Open endpoints for orchestrators: `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from redis.exceptions import RedisError
from starlette.responses import Response

from serving import metrics
from serving.deps import State
from serving.errors import NotReadyError
from serving.responses import JsonBytes
from serving.schemas import Health, Readiness, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> JsonBytes:
    """Liveness: answers as long as the event loop runs."""
    return JsonBytes({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=error_responses(503),
    summary="Redis answers PING and a registry is loaded",
)
async def readyz(state: State) -> JsonBytes:
    """Readiness: 503 `not_ready` naming every unmet condition."""
    problems = []
    try:
        async with asyncio.timeout(state.settings.redis_timeout_s):
            await state.redis.ping()
        redis_state = "ok"
    except (RedisError, OSError, TimeoutError) as exc:
        redis_state = "unreachable"
        problems.append(f"redis: {exc or 'timeout'}")
    current = state.compiled
    if current is None:
        problems.append(f"registry: nothing applied to project {state.settings.project!r}")
    if problems or current is None:
        msg = "not ready: " + "; ".join(problems)
        raise NotReadyError(msg, details=problems)
    return JsonBytes({"status": "ready", "redis": redis_state, "registry": current.content_hash})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus() -> Response:
    """Request latency histograms, Redis timings and push counters."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
