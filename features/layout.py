"""The Redis layout shared by the pipeline (writer) and the API (reader) (SPEC §5).

One hash per (entity, view): `rillet:<project>:{<entity>}:<view>`. The entity part is
a Redis Cluster hash tag, so all views of one entity share a slot and one pipelined round
trip reads them. Fields:

- `t:<g>:<start>` → orjson `{feature: state}` for the tile of size `g` µs at `start` µs;
- `p` → orjson pending records `[[ts, eid, {column: value}], ...]` (absent when none);
- `m` → orjson `{"max_ts": µs, "folded": µs, "keys": [join key values]}`.

Writers send absolute values of changed tiles (never increments), so a replay rewrites
the same bytes. The key expires `ttl` after the entity's newest event time.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any
from urllib.parse import quote, unquote

import orjson

from features.tiles import MIN_TS, EntityTiles, TileKey

_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch
_FIRST = itemgetter(0)
META_FIELD = "m"
PENDING_FIELD = "p"
TILE_PREFIX = "t:"


def entity_id(values: Sequence[Any]) -> str:
    """A stable string for an entity's join-key values (composite keys are ordered).

    Values are percent-encoded, so `|`, `{` and `}` inside a value cannot break the key.

    >>> entity_id(["u1", "item/7"])
    'u1|item%2F7'
    """
    # Values made only of characters `quote` never escapes skip it (the hot path).
    if len(values) == 1:
        text = values[0]
        if type(text) is str and _UNRESERVED(text):
            return text
    return "|".join(
        text if _UNRESERVED(text) else quote(text, safe="") for text in map(str, values)
    )


def plain_entity_ids(keys: Sequence[tuple[Any, ...]]) -> list[str] | None:
    """`entity_id` of each of one source's keys (all of one width) when every key is one
    plain string, its own id: one regex over the joined column, not a call per key; else
    `None`.

    >>> plain_entity_ids([("u1",), ("u-2",)]), plain_entity_ids([("a/b",)])
    (['u1', 'u-2'], None)
    """
    if not keys or len(keys[0]) != 1:
        return None
    values = list(map(_FIRST, keys))
    if set(map(type, values)) != {str} or _UNRESERVED("".join(values)) is None:
        return None  # ("" is its own id too: it may sit among plain ones)
    return values


def entity_ids(keys: Sequence[tuple[Any, ...]]) -> list[str]:
    """`entity_id` of each key: plain string keys are their own ids, checked for the whole
    column at once (`plain_entity_ids`); others get one call each.

    >>> entity_ids([("u1",), ("u-2",)]), entity_ids([("a/b",), ("c",)])
    (['u1', 'u-2'], ['a%2Fb', 'c'])
    """
    return plain_entity_ids(keys) or list(map(entity_id, keys))


def entity_values(eid: str) -> list[str]:
    """Inverse of `entity_id` (values come back as strings)."""
    return [unquote(p) for p in eid.split("|")]


def view_key(project: str, view: str, entity: str) -> str:
    """The hash holding one entity's tiles for one view.

    >>> view_key("demo", "user_txn", "u1")
    'rillet:demo:{u1}:user_txn'
    """
    return f"rillet:{project}:{{{entity}}}:{view}"


def tile_field(key: TileKey) -> str:
    """The hash field of a tile."""
    return f"{TILE_PREFIX}{key[0]}:{key[1]}"


def encode_tiles(
    state: EntityTiles, changed: Iterable[TileKey], keys: Sequence[Any]
) -> dict[str, bytes]:
    """Hash fields to `HSET` for the changed tiles plus meta and pending (absolute values)."""
    out = {tile_field(k): orjson.dumps(state.tiles[k]) for k in changed if k in state.tiles}
    out[META_FIELD] = orjson.dumps(
        {"max_ts": state.max_ts, "folded": state.folded_until, "keys": list(keys)}
    )
    if state.pending:
        out[PENDING_FIELD] = orjson.dumps(state.pending)
    return out


def removed_fields(state: EntityTiles, dropped: Iterable[TileKey]) -> list[str]:
    """Hash fields to `HDEL`: dropped tiles, and `p` once nothing is pending."""
    fields = [tile_field(k) for k in dropped]
    if not state.pending:
        fields.append(PENDING_FIELD)
    return fields


_FIELD_KEYS: dict[Any, TileKey | str] = {}  # field name (bytes or str) -> (g, start) or name
_FIELD_KEYS_MAX = 1 << 16


def _field_key(raw_name: Any) -> TileKey | str:
    """A tile field's `(g, start)`, else the field's name as text (`m`, `p`).

    Memoized: names repeat across entities, since tile starts are aligned.
    """
    name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
    key: TileKey | str = name
    if name.startswith(TILE_PREFIX):
        g, start = name[len(TILE_PREFIX) :].split(":")
        key = (int(g), int(start))
    if len(_FIELD_KEYS) >= _FIELD_KEYS_MAX:
        _FIELD_KEYS.clear()
    _FIELD_KEYS[raw_name] = key
    return key


class TileDecoder:
    """Decodes `HGETALL` replies to `EntityTiles`, optionally only the tiles one evaluation reads.

    With a `horizon` (tile size -> window, `ViewTiler.read_horizon`), only tiles of those
    sizes starting in `[as_of - window, as_of]` are decoded: skipping the others is most of
    a read's decoding.
    """

    def __init__(self, horizon: Mapping[int, int] | None = None, as_of: int = 0) -> None:
        self._as_of = as_of
        # Per tile size, the oldest tile start read (`None`: read every tile).
        self._oldest = None if horizon is None else {g: as_of - w for g, w in horizon.items()}

    def decode(self, fields: Mapping[Any, Any] | Sequence[Any]) -> EntityTiles | None:
        """A reply (a mapping with bytes or str keys, or RESP2's flat `[field, value, ...]`
        list) as `EntityTiles`; `None` if empty (the key does not exist)."""
        if not fields:
            return None
        pairs: Iterable[tuple[Any, Any]]
        if isinstance(fields, list):
            flat = iter(fields)
            pairs = zip(flat, flat, strict=True)
        elif isinstance(fields, Mapping):
            pairs = fields.items()
        else:
            pairs = zip(fields[::2], fields[1::2], strict=True)
        known, oldest, newest = _FIELD_KEYS, self._oldest, self._as_of
        state = EntityTiles()
        keys: list[TileKey] = []
        values: list[Any] = []
        for raw_name, raw_value in pairs:
            what = known.get(raw_name)
            if what is None:
                what = _field_key(raw_name)
            if type(what) is tuple:
                if oldest is not None:
                    lo = oldest.get(what[0])
                    if lo is None or not lo <= what[1] <= newest:
                        continue
                keys.append(what)
                values.append(raw_value)
            elif what == META_FIELD:
                meta = orjson.loads(raw_value)
                state.max_ts = meta.get("max_ts")
                state.folded_until = meta.get("folded", MIN_TS)
            elif what == PENDING_FIELD:
                state.pending = orjson.loads(raw_value)
        if keys:
            # One parse of all tiles: a call per tile costs a tenth more.
            try:
                text: bytes | str = b"[" + b",".join(values) + b"]"
            except TypeError:  # a client that decodes replies to str
                text = "[" + ",".join(values) + "]"
            state.tiles = dict(zip(keys, orjson.loads(text), strict=True))
        return state


_FULL = TileDecoder()


def decode_tiles(fields: Mapping[Any, Any] | Sequence[Any]) -> EntityTiles | None:
    """An `HGETALL` reply back to `EntityTiles` (every tile); `None` if empty.

    >>> state = decode_tiles({b"t:60:120": b'{"n": 2}', b"m": b'{"max_ts": 130, "folded": 130}'})
    >>> state.tiles, state.max_ts
    ({(60, 120): {'n': 2}}, 130)
    >>> TileDecoder({60: 60}, 130).decode([b"t:60:0", b'{"n": 1}', b"t:60:120", b'{"n": 2}']).tiles
    {(60, 120): {'n': 2}}
    """
    return _FULL.decode(fields)


def expire_at_ms(max_ts_us: int, ttl_us: int) -> int:
    """The `PEXPIREAT` time of an entity: `ttl` after its newest event."""
    return (max_ts_us + ttl_us) // 1000


def partition_of(key_values: Sequence[Any], partitions: int) -> int:
    """The broker partition of a source key: a stable crc32 hash (never Python's `hash`).

    >>> partition_of(["u1"], 4) == partition_of(["u1"], 4)
    True
    """
    return zlib.crc32(entity_id(key_values).encode()) % partitions


def stream_key(project: str, topic: str, partition: int) -> str:
    """The Redis stream of one partition of a topic."""
    return f"rillet:{project}:stream:{topic}:{partition}"


def dead_letter_key(project: str, source: str) -> str:
    """The dead-letter stream of a source."""
    return f"rillet:{project}:dlq:{source}"


def dead_letter_marks_key(project: str, source: str) -> str:
    """Hash of the newest origin position dead-lettered per ordered stream (replay guard)."""
    return f"rillet:{project}:dlq:{source}:marks"


def source_stats_key(project: str, source: str) -> str:
    """Hash of pipeline counters for a source (applied, duplicates, late, invalid, lag)."""
    return f"rillet:{project}:stats:{source}"


def source_stats_parts_key(project: str, source: str) -> str:
    """Hash of per-shard/per-partition counter parts behind the totals of `source_stats_key`."""
    return f"rillet:{project}:stats:{source}:parts"


def freshness_key(project: str) -> str:
    """Hash view → newest event time applied (µs)."""
    return f"rillet:{project}:freshness"


def entity_count_key(project: str, view: str) -> str:
    """HyperLogLog of the entities seen by a view (an approximate entity count)."""
    return f"rillet:{project}:entities:{view}"


def registry_key(project: str) -> str:
    """The applied registry document (JSON)."""
    return f"rillet:{project}:registry"


def registry_channel(project: str) -> str:
    """Pub/sub channel announcing a newly applied registry hash."""
    return f"rillet:{project}:registry:applied"
