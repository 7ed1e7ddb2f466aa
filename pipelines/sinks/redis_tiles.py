"""The online writer: absolute tile values of changed entities, one pipelined round trip per batch.

`write_tiles` is shared with the backfill. The stream's tiling step encodes its writes
(`encode_write`) while it owns the state, and the sink only queues and executes them, so
state mutated by later batches never leaks into an earlier write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from features import layout
from features.model import FeatureView
from features.tiles import EntityTiles, TileKey

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True, slots=True)
class TileWrite:
    """Everything Redis needs for one (entity, view): fields to set and delete, expiry."""

    key: str
    hll_key: str
    entity: str
    fields: dict[str, bytes]
    removed: list[str]
    expire_at_ms: int | None


def encode_write(
    project: str,
    view: FeatureView,
    entity_values: Sequence[Any],
    state: EntityTiles,
    changed: Iterable[TileKey],
    dropped: Iterable[TileKey],
) -> TileWrite:
    """Encode the absolute values of an entity's changed tiles (plus meta and pending)."""
    entity = layout.entity_id(entity_values)
    expire = None if state.max_ts is None else layout.expire_at_ms(state.max_ts, view.ttl)
    return TileWrite(
        key=layout.view_key(project, view.name, entity),
        hll_key=layout.entity_count_key(project, view.name),
        entity=entity,
        fields=layout.encode_tiles(state, changed, list(entity_values)),
        removed=layout.removed_fields(state, dropped),
        expire_at_ms=expire,
    )


def queue_write(pipe: Any, write: TileWrite) -> None:
    """Queue HSET / HDEL / PEXPIREAT / PFADD of one encoded write on a Redis pipeline."""
    if write.removed:
        pipe.hdel(write.key, *write.removed)
    pipe.hset(write.key, mapping=write.fields)
    if write.expire_at_ms is not None:
        pipe.pexpireat(write.key, write.expire_at_ms)
    pipe.pfadd(write.hll_key, write.entity)


def write_tiles(
    pipe: Any,
    project: str,
    view: FeatureView,
    entity_values: Sequence[Any],
    state: EntityTiles,
    changed: Iterable[TileKey],
    dropped: Iterable[TileKey],
) -> None:
    """Queue the writes of one entity's view state on `pipe` (the caller executes it)."""
    queue_write(pipe, encode_write(project, view, entity_values, state, changed, dropped))


class _TilePartition(StatelessSinkPartition[Any]):
    def __init__(self, client: redis.Redis, apply_extra: Any) -> None:
        self.client = client
        self.apply_extra = apply_extra

    def write_batch(self, items: list[Any]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            for write in item.writes:
                queue_write(pipe, write)
        if self.apply_extra is not None:
            self.apply_extra(pipe, items)
        pipe.execute()

    def close(self) -> None:
        self.client.close()


class RedisTileSink(DynamicSink[Any]):
    """Writes `TileBatch` items (anything with `.writes`) in one round trip per batch.

    `apply_extra(pipe, items)` may queue more commands (freshness, counters) on the same
    pipeline, so a value and the stats that describe it land together.
    """

    def __init__(self, redis_url: str, apply_extra: Any = None) -> None:
        self.redis_url = redis_url
        self.apply_extra = apply_extra

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TilePartition:
        import redis as redis_lib

        return _TilePartition(redis_lib.Redis.from_url(self.redis_url), self.apply_extra)
