"""The catalog: `GET /v1/feature-views` and `GET /v1/feature-views/{name}`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from serving import metrics
from serving.compiled import CompiledRegistry
from serving.deps import State
from serving.report import build_catalog, queue_catalog, registry_info
from serving.responses import JsonBytes
from serving.schemas import CatalogResponse, FeatureViewInfo, error_responses

router = APIRouter(prefix="/v1/feature-views", tags=["catalog"])


async def _catalog(state: State, registry: CompiledRegistry, only: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    async with state.redis.pipeline(transaction=False) as pipe:
        queue_catalog(pipe, state.settings.project, registry.definitions)
        replies = await pipe.execute()
    metrics.REDIS_SECONDS.labels("catalog").observe(time.perf_counter() - started)
    info = registry_info(registry.content_hash, registry.applied_at)
    return build_catalog(registry.definitions, registry.versions, info, replies, only)


@router.get(
    "",
    response_model=CatalogResponse,
    responses=error_responses(400, 401, 403, 429, 503),
    summary="Every feature view: definition, version, owner, freshness, entity count",
)
async def list_views(state: State) -> JsonBytes:
    """The whole catalog of the applied registry."""
    return JsonBytes(await _catalog(state, state.registry(), None))


@router.get(
    "/{name}",
    response_model=FeatureViewInfo,
    responses=error_responses(400, 401, 403, 404, 429, 503),
    summary="One feature view: definition, version, owner, freshness, entity count",
)
async def get_view(name: str, state: State) -> JsonBytes:
    """One view of the catalog (404 with a suggestion for unknown names)."""
    registry = state.registry()
    registry.definitions.view(name)
    catalog = await _catalog(state, registry, name)
    return JsonBytes(catalog["feature_views"][0])
