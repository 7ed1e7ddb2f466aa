"""Per-process server state and the FastAPI dependencies that hand it to routes.

`ServerState` is built by the lifespan: the Redis pools, the registry watcher and the
registry compiled for serving (rebuilt only when the applied content hash changes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from serving.compiled import CompiledRegistry
from serving.errors import NotReadyError
from serving.settings import Settings


@dataclass
class ServerState:
    """What every request may use; one per worker process."""

    settings: Settings
    redis: Redis
    sync_redis: SyncRedis
    watcher: Any
    producer: Any = None
    compiled: CompiledRegistry | None = field(default=None)

    def registry(self) -> CompiledRegistry:
        """The compiled registry currently applied; 503 `not_ready` when there is none."""
        current = self.watcher.current()
        if current is None:
            msg = (
                f"no feature registry is applied to project {self.settings.project!r} "
                "(or Redis is unreachable): run `rillet apply`"
            )
            raise NotReadyError(msg)
        compiled = self.compiled
        if compiled is None or compiled.content_hash != current.content_hash:
            compiled = CompiledRegistry(
                current.definitions, current.content_hash, current.versions, current.applied_at
            )
            self.compiled = compiled
        return compiled


def server_state(request: Request) -> ServerState:
    """The state the lifespan stored on the app."""
    state: ServerState = request.app.state.rillet
    return state


def current_registry(request: Request) -> CompiledRegistry:
    """The compiled registry being served (503 when none is applied)."""
    state: ServerState = request.app.state.rillet
    return state.registry()


State = Annotated[ServerState, Depends(server_state)]
Registry = Annotated[CompiledRegistry, Depends(current_registry)]
