"""The online writer: absolute tile values of changed entities, one round trip per batch.

`write_tiles` (shared with the backfill) queues the writes of one entity on a redis-py
pipeline, exactly as docs/storage.md says. The stream path is the hot loop, so its tiling
step encodes `TileWrite`s while it owns the state and the sink sends them as raw commands
in one round trip: one `HSET` per entity (tiles, `m`, and `p` written as `[]` when nothing
is pending, instead of a separate `HDEL`), `PEXPIREAT` only when the entity's expiry moves
to a new bucket (keys may outlive `ttl` by at most one bucket, which changes no value), and
one `PFADD` per view per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from features import layout
from features.model import FeatureView
from features.tiles import EntityTiles, TileKey
from pipelines.sinks.redis_bulk import execute_bulk

if TYPE_CHECKING:
    import redis

EMPTY_PENDING = b"[]"
MAX_EXPIRY_BUCKET_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class TileWrite:
    """Everything Redis needs for one (entity, view): fields to set and delete, expiry."""

    key: str
    hll_key: str
    entity: str
    fields: dict[str, bytes]
    removed: list[str]
    expire_at_ms: int | None


def expiry_bucket_ms(ttl_us: int) -> int:
    """How far the stream may round an expiry up: 1/16 of the ttl, at most an hour."""
    return max(1000, min(MAX_EXPIRY_BUCKET_MS, ttl_us // 16_000))


def bucketed_expiry(max_ts: int, ttl_us: int) -> int:
    """`layout.expire_at_ms` rounded up to the view's expiry bucket."""
    exact = layout.expire_at_ms(max_ts, ttl_us)
    bucket = expiry_bucket_ms(ttl_us)
    return -(-exact // bucket) * bucket


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


def encode_stream_write(
    project: str,
    view: FeatureView,
    entity: str,
    entity_values: Sequence[Any],
    state: EntityTiles,
    changed: Iterable[TileKey],
    previous_max_ts: int | None,
) -> TileWrite:
    """The stream's cheaper encoding: `p` always set, expiry only when its bucket moves."""
    fields = layout.encode_tiles(state, changed, list(entity_values))
    if layout.PENDING_FIELD not in fields:
        fields[layout.PENDING_FIELD] = EMPTY_PENDING
    expire = None
    if state.max_ts is not None:
        expire = bucketed_expiry(state.max_ts, view.ttl)
        if previous_max_ts is not None and expire == bucketed_expiry(previous_max_ts, view.ttl):
            expire = None
    return TileWrite(
        key=layout.view_key(project, view.name, entity),
        hll_key=layout.entity_count_key(project, view.name),
        entity=entity,
        fields=fields,
        removed=[],
        expire_at_ms=expire,
    )


def queue_write(pipe: Any, write: TileWrite) -> None:
    """Queue HDEL / HSET / PEXPIREAT / PFADD of one encoded write on a Redis pipeline."""
    if write.removed:
        pipe.hdel(write.key, *write.removed)
    if write.fields:
        pipe.hset(write.key, mapping=write.fields)
        pipe.pfadd(write.hll_key, write.entity)
    if write.expire_at_ms is not None:
        pipe.pexpireat(write.key, write.expire_at_ms)


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


def write_commands(writes: Iterable[TileWrite]) -> list[tuple[Any, ...]]:
    """Raw commands for a batch of writes: per entity HDEL/HSET/PEXPIREAT, PFADD per view."""
    commands: list[tuple[Any, ...]] = []
    add = commands.append
    seen: dict[str, list[str]] = {}
    for w in writes:
        if w.removed:
            add(("HDEL", w.key, *w.removed))
        if w.fields:
            flat: list[Any] = ["HSET", w.key]
            for item in w.fields.items():
                flat += item
            add(tuple(flat))
            entities = seen.get(w.hll_key)
            if entities is None:
                entities = seen[w.hll_key] = []
            entities.append(w.entity)
        if w.expire_at_ms is not None:
            add(("PEXPIREAT", w.key, w.expire_at_ms))
    for hll_key, entities in seen.items():
        add(("PFADD", hll_key, *entities))
    return commands


class _TilePartition(StatelessSinkPartition[Any]):
    def __init__(self, client: redis.Redis, project: str) -> None:
        from pipelines.stats import StatsWriter

        self.client = client
        self.stats = StatsWriter(client, project)

    def write_batch(self, items: list[Any]) -> None:
        freshness: dict[str, int] = {}
        writes: list[TileWrite] = []
        for item in items:
            writes += item.writes
            for view, ts in item.freshness.items():
                if ts > freshness.get(view, ts - 1):
                    freshness[view] = ts
        commands = write_commands(writes)
        # Freshness goes last: once it shows a time, the tiles holding it are written.
        commands += self.stats.freshness_commands(freshness)
        if commands:
            execute_bulk(self.client, commands)

    def close(self) -> None:
        self.client.close()


class RedisTileSink(DynamicSink[Any]):
    """Writes `TileBatch` items (`.writes`, `.freshness`) in one round trip per batch."""

    def __init__(self, redis_url: str, project: str) -> None:
        self.redis_url = redis_url
        self.project = project

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TilePartition:
        import redis as redis_lib

        return _TilePartition(redis_lib.Redis.from_url(self.redis_url), self.project)
