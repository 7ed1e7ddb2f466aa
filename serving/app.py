"""The FastAPI app factory and its lifespan (`uvicorn --factory serving.app:create_app`).

The lifespan opens the Redis pools (asyncio with hiredis for reads, a sync one for the
registry watcher and the event producer), starts the registry watcher, and closes all of
it on shutdown. Settings are passed in (tests) or read once from `RILLET_*`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import redis
from fastapi import Depends, FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from features.logs import configure_logging
from features.registry import RegistryWatcher
from serving.auth import require
from serving.deps import ServerState, follow_registry
from serving.errors import install_error_handlers
from serving.middleware import RequestContextMiddleware
from serving.responses import JsonBytes
from serving.routes import catalog, events, features, health, historical, status
from serving.settings import Settings, get_settings

log = logging.getLogger("rillet.serving")


SYNC_POOL_SIZE = 64  # the producer's threads (anyio's pool: 40) and the registry watcher


def _redis_options(settings: Settings) -> dict[str, Any]:
    """Short timeouts and one quick retry: a dead Redis must become a 503, not a hang."""
    return {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "retry": AsyncRetry(ExponentialBackoff(cap=0.05, base=0.005), 1),
    }


def make_producer(settings: Settings, client: redis.Redis) -> Any:
    """The broker producer of `POST /v1/events` (`RILLET_BROKER`)."""
    from pipelines.producer import KafkaEventProducer, RedisStreamProducer

    if settings.broker == "kafka":
        return KafkaEventProducer(settings.kafka_bootstrap)
    return RedisStreamProducer(client, settings.project, settings.stream_partitions)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open pools and start watching the registry; close everything on the way out."""
    settings: Settings = app.state.settings
    # The read pool is a plain pool sized past the in-flight limit: a request holds at most
    # one connection, so it never runs out, and it costs a third less per command than a
    # blocking pool. The sync pool (producer threads, watcher) blocks when exhausted.
    options = _redis_options(settings)
    reader = Redis.from_url(
        settings.redis_url, max_connections=settings.max_in_flight + 8, **options
    )
    options["retry"] = Retry(ExponentialBackoff(cap=0.05, base=0.005), 1)
    sync = redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=SYNC_POOL_SIZE,
            timeout=settings.redis_timeout_s,
            **options,
        )
    )
    # The follower task sets the pace; the watcher itself checks on every call.
    watcher = RegistryWatcher(sync, settings.project, 0.0)
    state = ServerState(
        settings=settings,
        redis=reader,
        sync_redis=sync,
        watcher=watcher,
        producer=make_producer(settings, sync),
    )
    app.state.rillet = state
    await state.refresh_registry()
    follower = asyncio.create_task(follow_registry(state), name="registry-follower")
    # Everything loaded so far lives as long as the process: keep it out of the cyclic GC,
    # whose full collections otherwise walk ~80,000 objects (~40 ms) in the middle of requests.
    gc.collect()
    gc.freeze()
    log.info(
        "serving project %r from %s",
        settings.project,
        settings.redis_url.rpartition("@")[2],
        extra={"registry": state.compiled.content_hash if state.compiled else None},
    )
    try:
        yield
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        watcher.close()
        await state.online.close()
        await reader.aclose()
        sync.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app: routers, error mapping, request middleware; pools open on startup."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    try:
        release = version("rillet")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        release = "0"
    app = FastAPI(
        title="Rillet feature server",
        version=release,
        description="Online feature vectors, event push, catalog and status (SPEC §6).",
        lifespan=lifespan,
        default_response_class=JsonBytes,
        # No OpenTelemetry here (Prometheus is): skip FastAPI's per-request provider checks.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.api_keys = settings.keys
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        timeout_s=settings.request_timeout_s,
        max_in_flight=settings.max_in_flight,
        access_log=settings.access_log,
    )
    routers: list[tuple[Any, str | None]] = [  # the hot path first: routes match in order
        (features.router, "read"),
        (health.router, None),
        (historical.router, "read"),
        (events.router, "write"),
        (catalog.router, "read"),
        (status.router, "read"),
    ]
    for router, scope in routers:
        # Auth costs two dependencies per request: attach them only when keys are configured
        # (the OpenAPI document then shows the bearer scheme exactly when it is required).
        if scope is not None and settings.keys:
            app.include_router(router, dependencies=[Depends(require(scope))])
        else:
            app.include_router(router)
    return app
