"""Tile writes: absolute tile values of changed entities, as docs/storage.md says.

`write_tiles` (used by the backfill) queues one entity's writes on a redis-py pipeline.
The stream's tiles step builds its commands a batch at a time (`tile_commands`); it shares
the key framing (`bulk`), the fixed start of `m` (`meta_head`) and the expiry bucket here.
It frames the keys and `m` heads of the entities it loads a batch at a time too
(`key_bulks`, `meta_heads`), reads them with one packed `HGETALL` each (`hgetalls`) and
keeps the framing per entity as Arrow data (`EntityBytes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import add
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from features import layout
from features.model import FeatureView
from features.tiles import EntityTiles, TileKey

Array = np.ndarray[Any, Any]
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


def key_bulks(project: str, view: str, eids: Sequence[str]) -> list[bytes]:
    r"""`bulk(layout.view_key(project, view, eid).encode())` of each entity, built with a few
    C-level passes over the whole list (`_framed`), not a Python step per entity.

    >>> key_bulks("p", "v", ["u1", "u22"])
    [b'$15\r\nrillet:p:{u1}:v\r\n', b'$16\r\nrillet:p:{u22}:v\r\n']
    """
    around = [part.encode() for part in layout.view_key(project, view, _NUL).split(_NUL)]
    text = _joined(eids) if len(around) == 2 else None
    if text is None:  # odd ids or names: row by row
        return [bulk(layout.view_key(project, view, e).encode()) for e in eids]
    head, tail = around
    ends = _framed(text, b"", tail + b"\r\n")  # each id, the tail and the bulk's end
    sizes = list(map(len, ends))
    extra = len(head) - 2  # the bulk's size is the head's, the id's and the tail's
    starts = {n: b"$%d\r\n%b" % (extra + n, head) for n in set(sizes)}
    return list(map(add, map(starts.__getitem__, sizes), ends))


def meta_heads(keys: Sequence[Sequence[Any]], version: str | None) -> list[bytes]:
    r"""`meta_head(values, version)` of each entity: built with a few C-level passes over
    the whole list when each has one string join key (the common case), else row by row.

    >>> meta_heads([("u1",), ('a"b',)], "v1")
    [b'{"keys":["u1"],"v":"v1"', b'{"keys":["a\\"b"],"v":"v1"']
    """
    try:
        values = [value for (value,) in keys]
    except (TypeError, ValueError):  # composite keys
        values = []
    text = _joined(values)
    if text is None:
        return [meta_head(k, version) for k in keys]
    heads = _framed(text, b'{"keys":["', b'"],"v":' + _dumps(version))
    if _escapes(text):  # values orjson escapes: their heads row by row
        for i, value in enumerate(values):
            if _escapes(value.encode()):
                heads[i] = meta_head(keys[i], version)
    return heads


def hgetalls(keys: Iterable[Sequence[bytes]]) -> bytes:
    """One `HGETALL` of each of `keys` (RESP bulk strings), in order, as one RESP payload."""
    commands = _HGETALL.join(chain.from_iterable(keys))
    return _HGETALL + commands if commands else b""


def _joined(values: Sequence[Any]) -> bytes | None:
    """The UTF-8 of `values` joined by NULs; None if there are none, or one is not a string,
    holds a NUL or is not UTF-8 (a lone surrogate)."""
    try:
        text = _NUL.join(values).encode()
    except (TypeError, UnicodeEncodeError):
        return None
    return text if values and text.count(b"\0") == len(values) - 1 else None


def _framed(text: bytes, head: bytes, tail: bytes) -> list[bytes]:
    """Each value of `_joined` text between `head` and `tail` (neither holds a NUL)."""
    return (head + text.replace(b"\0", tail + b"\0" + head) + tail).split(b"\0")


_NUL = "\0"  # splits joined values (no project or view name holds it)
# What orjson escapes in a string but NUL, which only separates `_joined` values.
_escapes = re.compile(rb'["\\\x01-\x1f]').search
_HGETALL = b"*2\r\n$7\r\nHGETALL\r\n"


class EntityBytes:
    """A byte string per entity number (RESP keys, `m` heads), kept end to end in one
    buffer so a flush takes its entities' as an Arrow array with one `take`, instead of
    converting Python bytes every time.

    New values are appended; a dropped entity's value stays as garbage until the garbage
    outweighs the live values, which are then copied together (amortised O(1) upkeep).

    >>> store = EntityBytes()
    >>> store.put(np.array([3, 0]), [b"ab", b"c"])
    >>> store.take(np.array([0, 3, 0])).to_pylist()
    [b'c', b'ab', b'c']
    """

    slack = 1024  # garbage values always allowed

    def __init__(self) -> None:
        self.data = np.zeros(0, np.uint8)  # the values end to end, then room
        self.ends = np.zeros(1, np.int32)  # where stored value i ends (`ends[i + 1]`), then room
        self.count = 0  # values stored, garbage included
        self.live = 0
        self.at = np.zeros(0, np.int64)  # per entity number: its value's place (-1: none)

    def put(self, ents: Array, values: Sequence[bytes]) -> None:
        """Set the values of distinct entities."""
        if not len(ents):
            return
        self.drop(ents)
        self.at = _room(self.at, int(ents.max()) + 1, -1)
        joined = b"".join(values)
        start = int(self.ends[self.count])
        if start + len(joined) >= 2**31:  # int32 offsets: only live values
            self._compact()
            start = int(self.ends[self.count])
        stop, count = start + len(joined), self.count + len(values)
        self.data = _room(self.data, stop)
        self.ends = _room(self.ends, count + 1)
        self.data[start:stop] = np.frombuffer(joined, np.uint8)
        sizes = np.fromiter(map(len, values), np.int64, len(values))
        np.cumsum(sizes, out=sizes)
        self.ends[self.count + 1 : count + 1] = start + sizes
        self.at[ents] = np.arange(self.count, count)
        self.count = count
        self.live += len(values)

    def drop(self, ents: Array) -> None:
        """Forget the values of entities (those without one are passed over)."""
        ents = ents[ents < len(self.at)]
        held = ents[self.at[ents] >= 0]
        self.at[held] = -1
        self.live -= len(held)
        if self.count - self.live > max(self.live, self.slack):
            self._compact()

    def take(self, ents: Array) -> pa.Array:
        """The values of entities (each holding one), in order."""
        return self._stored().take(pa.array(self.at[ents]))

    def _stored(self) -> pa.Array:
        """Every value stored, garbage included: a view of the buffers, not a copy."""
        ends = self.ends[: self.count + 1]
        buffers = [None, pa.py_buffer(ends), pa.py_buffer(self.data[: ends[-1]])]
        return pa.Array.from_buffers(pa.binary(), self.count, buffers)

    def _compact(self) -> None:
        """Copy the live values together, dropping the garbage."""
        held = np.flatnonzero(self.at >= 0)
        if len(held):
            kept = self.take(held)
            _, offsets, data = kept.buffers()
            ends = np.frombuffer(offsets, np.int32, len(held) + 1, 4 * kept.offset)
            self.data = np.frombuffer(data, np.uint8, ends[-1] - ends[0], ends[0]).copy()
            self.ends = ends - ends[0]
        else:
            self.data, self.ends = np.zeros(0, np.uint8), np.zeros(1, np.int32)
        self.at[held] = np.arange(len(held))
        self.count = self.live = len(held)


def _room(values: Array, size: int, fill: int = 0) -> Array:
    """`values`, or when shorter than `size` a copy at least twice as long (`fill` after)."""
    if size <= len(values):
        return values
    grown = np.full(max(size, 2 * len(values), 1024), fill, values.dtype)
    grown[: len(values)] = values
    return grown


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
