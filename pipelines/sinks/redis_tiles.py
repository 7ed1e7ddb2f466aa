"""Tile writes: absolute tile values of changed entities, as docs/storage.md says.

`write_tiles` (used by the backfill) queues one entity's writes on a redis-py pipeline.
The stream's tiles step builds its commands a batch at a time (`tile_commands`); it shares
the key framing (`bulk`), the fixed start of `m` (`meta_head`) and the expiry bucket here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from features import layout
from features.model import FeatureView
from features.tiles import EntityTiles, TileKey

_dumps = orjson.dumps
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


def bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


def meta_head(entity_values: Sequence[Any], version: str | None) -> bytes:
    """The start of `m` that is fixed for an entity's life: join-key values, view version."""
    return b'{"keys":' + _dumps(list(entity_values)) + b',"v":' + _dumps(version)


def expiry_bucket_ms(ttl_us: int) -> int:
    """How far the stream may round an expiry up: 1/16 of the ttl, at least 1 s, at most 1 h."""
    return max(1000, min(MAX_EXPIRY_BUCKET_MS, ttl_us // 16_000))


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
