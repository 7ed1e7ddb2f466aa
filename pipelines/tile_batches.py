"""The tiles step's batches: queued inputs as columns, and what a fold changed.

`pipelines.tiling` turns the inputs queued for one group of views (views on the same
entity) into one `Batch` of numpy columns; `view_tiles.ViewTiles.apply` folds it and
records in `Changes` what its writes must carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa

from features.packed_sort import stable_order
from pipelines.records import Entries, TileInput

Array = np.ndarray[Any, Any]


@dataclass(slots=True)
class Batch:
    """Events for one view as columns, in arrival order; they come from several origin
    streams (`streams[stream[i]]`), each stream's events in its order."""

    streams: list[str]
    stream: Array  # per event: index into `streams`
    shard: Array  # per event: tile shard
    eids: list[str]  # entity ids
    keys: list[tuple[Any, ...]]  # join-key values
    ts: Array
    event_ids: Array
    values: dict[str, Array]  # column → object array (None: null)
    major: Array
    minor: Array
    # What the views of a group work out alike from this batch (`view_tiles`), kept for
    # the next view: the batch is theirs to share and nobody changes it.
    shared: dict[Any, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Changes:
    """What a batch changed, to write: entities, (entity, row) per tile size, marks."""

    ents: list[Array] = field(default_factory=list)
    tiles: dict[int, list[tuple[Array, Array]]] = field(default_factory=dict)
    # (stream names, then per marked (entity, stream): stream index, entity, major, minor)
    marks: list[tuple[list[str], Array, Array, Array, Array]] = field(default_factory=list)


def batch_of(parts: list[tuple[TileInput, Entries]], columns: Iterable[str]) -> Batch:
    """Several inputs' events for one group of views, as the columns a fold takes: the
    entries are columns already, joined, never taken apart."""
    streams = list(dict.fromkeys(inp.part for inp, _ in parts))
    number = {name: i for i, name in enumerate(streams)}
    groups = [entries for _, entries in parts]
    sizes = list(map(len, groups))
    if len(groups) == 1:
        only = groups[0]
        eids, keys, ts, major, minor = only.eids, only.keys, only.ts, only.major, only.minor
        event_ids = objects(only.event_ids)
        values = {c: only.values[c] for c in columns}
    else:
        eids = list(chain.from_iterable(map(_EIDS, groups)))
        keys = list(chain.from_iterable(map(_KEYS, groups)))
        ts = np.concatenate(list(map(_TS, groups)))
        event_ids = objects(list(chain.from_iterable(map(_EVENT_IDS, groups))))
        major = np.concatenate(list(map(_MAJOR, groups)))
        minor = np.concatenate(list(map(_MINOR, groups)))
        values = {c: np.concatenate([g.values[c] for g in groups]) for c in columns}
    return Batch(
        streams=streams,
        stream=np.repeat(np.array([number[inp.part] for inp, _ in parts], np.int64), sizes),
        shard=np.repeat(np.array([inp.shard for inp, _ in parts], np.int64), sizes),
        eids=eids,
        keys=keys,
        ts=ts,
        event_ids=event_ids,
        values=values,
        major=major,
        minor=minor,
    )


_EIDS, _KEYS, _TS = attrgetter("eids"), attrgetter("keys"), attrgetter("ts")
_EVENT_IDS, _MAJOR, _MINOR = attrgetter("event_ids"), attrgetter("major"), attrgetter("minor")


def values_of(table: pa.Table, columns: Iterable[str]) -> dict[str, Array]:
    """The values of a table's `columns` as a fold takes them (`object_column`)."""
    return {c: object_column(table.column(c)) for c in columns}


def object_column(column: pa.Array | pa.ChunkedArray) -> Array:
    """A typed column's values as an event's row holds them: Python objects in an object
    array, None for null, timestamps as µs ints. One conversion in C per column."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    if not column.null_count:
        out: Array = column.to_numpy(zero_copy_only=False)
        return out if out.dtype == object else out.astype(object)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        strings: Array = column.to_numpy(zero_copy_only=False)  # objects, None for null
        return strings
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    filled = column.fill_null(False if pa.types.is_boolean(column.type) else 0)
    values: Array = filled.to_numpy(zero_copy_only=False).astype(object)
    values[nulls] = None
    return values


def objects(values: Sequence[Any]) -> Array:
    """A 1-d object array of `values` (`np.array` would nest lists and tuples); `fromiter`
    stores each item as it is, without looking into it for nested sequences."""
    return np.fromiter(values, object, len(values))


def select(batch: Batch, keep: Array) -> Batch:
    """The events of `batch` where `keep` is true, in order."""
    at = np.flatnonzero(keep)
    picks = at.tolist()
    return Batch(
        batch.streams,
        batch.stream[at],
        batch.shard[at],
        [batch.eids[i] for i in picks],
        [batch.keys[i] for i in picks],
        batch.ts[at],
        batch.event_ids[at],
        {c: v[at] for c, v in batch.values.items()},
        batch.major[at],
        batch.minor[at],
    )


def ends_of_groups(values: Array, last: bool) -> Array:
    """Per distinct value of `values` (ints), ordered by value, the position of its last
    (else first) occurrence: `np.unique`'s `return_index`, several times faster.

    A stable order (`stable_order`) groups equal values with their positions in order, so
    a group's edge holds the wanted position."""
    order = stable_order(values)
    if not len(order):
        return order
    group = values[order]
    edge = np.empty(len(values), dtype=bool)
    if last:
        np.not_equal(group[1:], group[:-1], out=edge[:-1])
        edge[-1] = True
    else:
        np.not_equal(group[1:], group[:-1], out=edge[1:])
        edge[0] = True
    return order[edge]


def first_positions(names: Sequence[str], positions: Sequence[int]) -> list[int]:
    """Of each distinct name, the position (of `positions`, paired in order) of its first
    occurrence, ascending: a reversed pass leaves each name with its first.

    >>> first_positions(["a", "b", "a", "c"], [10, 11, 12, 13])
    [10, 11, 13]
    """
    return sorted(dict(zip(reversed(names), reversed(positions), strict=True)).values())
