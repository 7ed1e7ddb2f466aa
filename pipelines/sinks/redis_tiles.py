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

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from hiredis import pack_command as _pack

from features import layout
from features.model import FeatureView
from features.tiles import EntityTiles, TileKey
from pipelines.sinks.redis_bulk import send_packed

if TYPE_CHECKING:
    import redis

EMPTY_PENDING = b"[]"
_PEXPIREAT = b"*3\r\n$9\r\nPEXPIREAT\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
_dumps = orjson.dumps
_FIELD_NAMES: dict[TileKey, str] = {}  # tile key → hash field name (`layout.tile_field`)
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


def pack_stream_write(
    key: str,
    state: EntityTiles,
    changed: Iterable[TileKey],
    entity_values: Sequence[Any],
    ttl: int,
    previous_max_ts: int | None,
    version: str | None = None,
    marks: dict[str, Any] | None = None,
) -> tuple[bytes, int]:
    """The stream's write of one entity as RESP bytes and how many commands they hold.

    One `HSET` of the changed tiles, `m` (with the view `version` as `v` and the replay
    `marks` as `pos`) and `p` (`[]` when nothing is pending, so no `HDEL` is needed), plus
    `PEXPIREAT` only when the expiry moved to another bucket.
    """
    args: list[Any] = ["HSET", key]
    tiles, names = state.tiles, _FIELD_NAMES
    for tile in changed:
        value = tiles.get(tile)
        if value is not None:
            name = names.get(tile)
            if name is None:
                if len(names) > 100_000:
                    names.clear()
                name = names[tile] = f"t:{tile[0]}:{tile[1]}"
            args.append(name)
            args.append(_dumps(value))
    max_ts = state.max_ts
    args.append("m")
    args.append(
        _dumps(
            {
                "max_ts": max_ts,
                "folded": state.folded_until,
                "keys": entity_values,
                "v": version,
                "pos": marks,
            }
        )
    )
    args.append("p")
    args.append(_dumps(state.pending) if state.pending else EMPTY_PENDING)
    packed = _pack(tuple(args))
    if max_ts is None or max_ts == previous_max_ts:
        return packed, 1
    ttl_ms = ttl // 1000
    bucket = max(1000, min(MAX_EXPIRY_BUCKET_MS, ttl_ms // 16))
    expire = -(-(max_ts // 1000 + ttl_ms) // bucket) * bucket
    if (
        previous_max_ts is not None
        and expire == -(-(previous_max_ts // 1000 + ttl_ms) // bucket) * bucket
    ):
        return packed, 1
    raw, text = key.encode(), b"%d" % expire
    return packed + _PEXPIREAT % (len(raw), raw, len(text), text), 2


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
    """Raw commands for writes off the hot path (pruning): HDEL/HSET/PEXPIREAT/PFADD."""
    commands: list[tuple[Any, ...]] = []
    for w in writes:
        if w.removed:
            commands.append(("HDEL", w.key, *w.removed))
        if w.fields:
            commands.append(("HSET", w.key, *(x for item in w.fields.items() for x in item)))
            commands.append(("PFADD", w.hll_key, w.entity))
        if w.expire_at_ms is not None:
            commands.append(("PEXPIREAT", w.key, w.expire_at_ms))
    return commands


class _TilePartition(StatelessSinkPartition[Any]):
    def __init__(self, client: redis.Redis, project: str) -> None:
        from pipelines.stats import StatsWriter

        self.client = client
        self.stats = StatsWriter(client, project)

    def write_batch(self, items: list[Any]) -> None:
        packed: list[bytes] = []
        count = 0
        other: list[TileWrite] = []
        entities: dict[str, list[str]] = {}
        freshness: dict[str, int] = {}
        for item in items:
            packed += item.packed
            count += item.commands
            other += item.writes
            for hll_key, ids in item.entities.items():
                entities.setdefault(hll_key, []).extend(ids)
            for view, ts in item.freshness.items():
                if ts > freshness.get(view, ts - 1):
                    freshness[view] = ts
        extra = write_commands(other)
        extra += [("PFADD", hll_key, *ids) for hll_key, ids in entities.items()]
        # Freshness goes last: once it shows a time, the tiles holding it are written.
        extra += self.stats.freshness_commands(freshness)
        packed += [_pack(command) for command in extra]
        send_packed(self.client, packed, count + len(extra))

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
