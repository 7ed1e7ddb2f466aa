"""Per-process server state, the registry follower, and the dependencies that hand them out.

`ServerState` is built by the lifespan: the Redis pools, the producer, and the registry
compiled for serving. `follow_registry` keeps it current from a background task — the
watcher's blocking Redis reads run in a thread, never on the request path — so a request
only reads an attribute.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from features.errors import RilletError
from features.registry import RegistryWatcher
from serving.compiled import CompiledRegistry
from serving.errors import NotReadyError
from serving.redis_read import OnlineReader
from serving.settings import Settings

log = logging.getLogger("rillet.serving")


@dataclass
class ServerState:
    """What every request may use; one per worker process."""

    settings: Settings
    redis: Redis
    sync_redis: SyncRedis
    watcher: RegistryWatcher
    producer: Any = None
    compiled: CompiledRegistry | None = None
    online: OnlineReader = field(init=False)

    def __post_init__(self) -> None:
        self.online = OnlineReader(self.redis)

    def registry(self) -> CompiledRegistry:
        """The compiled registry being served; 503 `not_ready` when none is applied."""
        compiled = self.compiled
        if compiled is None:
            msg = (
                f"no feature registry is applied to project {self.settings.project!r} "
                "(or Redis was unreachable since start): run `rillet apply`"
            )
            raise NotReadyError(msg)
        return compiled

    async def refresh_registry(self) -> None:
        """Read the applied registry (in a thread) and recompile it if its hash changed."""
        try:
            current = await asyncio.to_thread(self.watcher.current)
        except (RilletError, RedisError, OSError) as exc:
            log.warning("cannot read the applied registry: %s", exc)
            return
        if current is None:
            self.compiled = None
        elif self.compiled is None or self.compiled.content_hash != current.content_hash:
            self.compiled = CompiledRegistry(
                current.definitions, current.content_hash, current.versions, current.applied_at
            )
            log.info("serving registry %s", current.content_hash[:12])


async def follow_registry(state: ServerState) -> None:
    """Refresh the registry every `RILLET_REGISTRY_POLL_S` until cancelled."""
    while True:
        await asyncio.sleep(state.settings.registry_poll_s)
        await state.refresh_registry()


async def server_state(request: Request) -> ServerState:
    """The state the lifespan stored on the app (async: sync dependencies cost a thread hop)."""
    state: ServerState = request.app.state.rillet
    return state


State = Annotated[ServerState, Depends(server_state)]
