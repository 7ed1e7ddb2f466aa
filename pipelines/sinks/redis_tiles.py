"""Tile writes: absolute tile values of changed entities, as docs/storage.md says.

`write_tiles` (used by the backfill) queues one entity's writes on a redis-py pipeline. The
stream's tile step is the hot loop, so it encodes its writes here straight to RESP bytes:
one `HSET` per entity (the changed tiles, `m`, and `p` — written as `[]` when pending
events were folded, instead of a separate `HDEL`), and `PEXPIREAT` only when the entity's
expiry moves to a new bucket (keys may outlive `ttl` by at most one bucket, which changes
no value). Every one of these commands has a one-line reply, which
`redis_writer.TileConnection` relies on.
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
_FIELD_NAMES: dict[TileKey, bytes] = {}  # tile key → its field name as a RESP bulk string
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


def tile_field(tile: TileKey) -> bytes:
    """The RESP bulk string of a tile's hash field name (`layout.tile_field`), cached."""
    name = _FIELD_NAMES.get(tile)
    if name is None:
        if len(_FIELD_NAMES) > 100_000:
            _FIELD_NAMES.clear()
        name = _FIELD_NAMES[tile] = bulk(layout.tile_field(tile).encode())
    return name


def meta_head(entity_values: Sequence[Any], version: str | None) -> bytes:
    """The start of `m` that is fixed for an entity's life: join-key values, view version."""
    return b'{"keys":' + _dumps(list(entity_values)) + b',"v":' + _dumps(version)


def pack_stream_write(
    key: bytes,
    head: bytes,
    state: EntityTiles,
    changed: Iterable[TileKey],
    marks: dict[str, Any],
    clear_pending: bool,
) -> bytes:
    """The stream's `HSET` of one entity as RESP bytes (one command).

    `key` is the RESP bulk string of the hash key and `head` the entity's `meta_head`. It
    sets the changed tiles, `m` (`max_ts`, `folded`, the replay marks as `pos`) and `p`
    when events are pending, or as `[]` when `clear_pending` (it held some before), so no
    `HDEL` is needed.
    """
    # Few, large appends: this runs once per (entity, view) written, ~3 times per event.
    parts = [b"", b"$4\r\nHSET\r\n", key]
    count = 4  # HSET, key, "m" and its value
    tiles, names = state.tiles, _FIELD_NAMES
    for tile in changed:
        value = tiles.get(tile)
        if value is not None:
            data = _dumps(value)
            parts += (names.get(tile) or tile_field(tile), b"$%d\r\n" % len(data), data, b"\r\n")
            count += 2
    max_ts = state.max_ts
    meta = b'%b,"max_ts":%b,"folded":%d,"pos":%b}' % (
        head,
        b"null" if max_ts is None else b"%d" % max_ts,
        state.folded_until,
        _dumps(marks),
    )
    parts += (b"$1\r\nm\r\n$%d\r\n" % len(meta), meta, b"\r\n")
    if state.pending:
        data = _dumps(state.pending)
        parts += (b"$1\r\np\r\n$%d\r\n" % len(data), data, b"\r\n")
        count += 2
    elif clear_pending:
        parts.append(b"$1\r\np\r\n$2\r\n[]\r\n")
        count += 2
    parts[0] = b"*%d\r\n" % count
    return b"".join(parts)


def expiry_bucket_ms(ttl_us: int) -> int:
    """How far the stream may round an expiry up: 1/16 of the ttl, at least 1 s, at most 1 h."""
    return max(1000, min(MAX_EXPIRY_BUCKET_MS, ttl_us // 16_000))


def expire_command(key: bytes, at_ms: int) -> bytes:
    """`PEXPIREAT` as RESP bytes; `key` is the RESP bulk string of the hash key."""
    text = b"%d" % at_ms
    return b"*3\r\n$9\r\nPEXPIREAT\r\n%b$%d\r\n%b\r\n" % (key, len(text), text)


def delete_command(key: bytes, tiles: Iterable[TileKey]) -> bytes:
    """`HDEL` of tile fields as RESP bytes; `key` is the RESP bulk string of the hash key."""
    fields = [tile_field(tile) for tile in tiles]
    return b"*%d\r\n$4\r\nHDEL\r\n%b%b" % (len(fields) + 2, key, b"".join(fields))


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
