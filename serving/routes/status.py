"""`GET /v1/status`: per source lag, counters and dead letters; per view freshness."""

from __future__ import annotations

import time

from fastapi import APIRouter

from features.durations import now_us
from serving import metrics
from serving.deps import State
from serving.report import build_status, queue_status, registry_info
from serving.responses import JsonBytes
from serving.schemas import StatusResponse, error_responses

router = APIRouter(prefix="/v1", tags=["status"])


@router.get(
    "/status",
    response_model=StatusResponse,
    responses=error_responses(400, 401, 403, 429, 503),
    summary="Pipeline lag, dead letters, events applied, duplicates; freshness per view",
)
async def status(state: State) -> JsonBytes:
    """The same report as `rillet status --json`."""
    registry = state.registry()
    started = time.perf_counter()
    async with state.redis.pipeline(transaction=False) as pipe:
        queue_status(pipe, state.settings.project, registry.definitions)
        replies = await pipe.execute()
    metrics.REDIS_SECONDS.labels("status").observe(time.perf_counter() - started)
    info = registry_info(registry.content_hash, registry.applied_at)
    return JsonBytes(build_status(registry.definitions, info, replies, now_us()))
