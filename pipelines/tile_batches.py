"""The tiles step's batches: queued inputs as columns, and what a fold changed.

`pipelines.tiling` turns the inputs queued for one group of views (views on the same
entity) into one `Batch` of numpy columns; `view_tiles.ViewTiles.apply` folds it and
records in `Changes` what its writes must carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from features.schema import Event
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
    rows: list[Mapping[str, Any]]  # the events' rows (for pending records)
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
    """Several inputs' events for one group of views, as the columns a fold takes.

    The entries are columns already: joined, not taken apart; every per-event pass is a
    `map` of a C getter, as this runs for every event of a flush.
    """
    streams = list(dict.fromkeys(inp.part for inp, _ in parts))
    number = {name: i for i, name in enumerate(streams)}
    groups = [entries for _, entries in parts]
    if len(groups) == 1:
        only = groups[0]
        eids, keys, events, positions = only.eids, only.keys, only.events, only.positions
    else:
        eids = list(chain.from_iterable(map(_EIDS, groups)))
        keys = list(chain.from_iterable(map(_KEYS, groups)))
        events = list(chain.from_iterable(map(_EVENTS, groups)))
        positions = list(chain.from_iterable(map(_POSITIONS, groups)))
    sizes = list(map(len, map(_EVENTS, groups)))
    n = len(events)
    rows = list(map(_ROW, events))
    values = {c: np.fromiter(map(dict.get, rows, repeat(c, n)), object, n) for c in columns}
    return Batch(
        streams=streams,
        stream=np.repeat(np.array([number[inp.part] for inp, _ in parts], np.int64), sizes),
        shard=np.repeat(np.array([inp.shard for inp, _ in parts], np.int64), sizes),
        eids=eids,
        keys=keys,
        ts=np.fromiter(map(_TS, events), np.int64, n),
        event_ids=np.fromiter(map(_EVENT_ID, events), object, n),
        values=values,
        rows=rows,
        major=np.fromiter(map(_MAJOR, positions), np.int64, n),
        minor=np.fromiter(map(_MINOR, positions), np.int64, n),
    )


_EIDS, _KEYS = attrgetter("eids"), attrgetter("keys")
_EVENTS, _POSITIONS = attrgetter("events"), attrgetter("positions")
# Events are `Event` named tuples: an index reads a field faster than its name does.
_ROW, _TS, _EVENT_ID = (itemgetter(Event._fields.index(f)) for f in ("row", "ts", "eid"))
_MAJOR, _MINOR = itemgetter(0), itemgetter(1)


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
        [batch.rows[i] for i in picks],
        batch.major[at],
        batch.minor[at],
    )


def ends_of_groups(values: Array, last: bool) -> Array:
    """Per distinct value of `values` (non-negative ints), ordered by value, the position of
    its last (else first) occurrence: `np.unique`'s `return_index`, several times faster.

    One sort of `value << bits | position` groups equal values with their positions in
    order, so a group's edge holds the wanted position."""
    n = len(values)
    bits = max(n.bit_length(), 1)
    if not n or int(values.min()) < 0 or int(values.max()) >= 1 << (62 - bits):
        at = np.unique(values[::-1] if last else values, return_index=True)[1]
        return n - 1 - at if last else at
    key = values.astype(np.int64)
    key <<= bits
    key |= np.arange(n)
    key.sort()
    group = key >> bits
    edge = np.empty(n, dtype=bool)
    if last:
        np.not_equal(group[1:], group[:-1], out=edge[:-1])
        edge[-1] = True
    else:
        np.not_equal(group[1:], group[:-1], out=edge[1:])
        edge[0] = True
    return key[edge] & ((1 << bits) - 1)


def first_positions(names: Sequence[str], positions: Sequence[int]) -> list[int]:
    """Of each distinct name, the position (of `positions`, paired in order) of its first
    occurrence, ascending: a reversed pass leaves each name with its first.

    >>> first_positions(["a", "b", "a", "c"], [10, 11, 12, 13])
    [10, 11, 13]
    """
    return sorted(dict(zip(reversed(names), reversed(positions), strict=True)).values())
