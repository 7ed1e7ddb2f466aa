"""The `route` step: accepted events → the tile shard of each of their views' entities.

A view's entity may differ from its source's key (`page_views`, keyed by (user, item),
feeds a view on users), so each event goes to the shard of the entity id every view of
it needs; views on the same entity share one entry per event.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Any

import numpy as np

from features import layout
from pipelines.plan import PlanSource
from pipelines.records import AcceptedBatch, Entries, EventColumns, TileInput
from pipelines.shard_keys import BALANCED, SHARDS
from pipelines.tile_batches import object_column, values_of

TILE_SHARDS = SHARDS  # as many as ledger shards, under the same keys (`pipelines.shard_keys`)
Array = np.ndarray[Any, Any]
_FIRST = itemgetter(0)


def shard_of_entity(eid: str) -> int:
    """The tile shard of an entity id: crc32 (stable across processes). A view keyed like
    its source gets the same shard as its ledger shard (`decoding.shard_of`)."""
    return zlib.crc32(eid.encode()) % TILE_SHARDS


class TileRouter:
    """The `route` step: an accepted batch → one `TileInput` per tile shard it touches."""

    def __init__(self, plans: PlanSource, shard_keys: Sequence[str] = BALANCED) -> None:
        self.plans = plans
        self.shard_keys = shard_keys  # Bytewax state key of each tile shard

    def __call__(self, batch: AcceptedBatch) -> Iterator[tuple[str, TileInput]]:
        source_plan = self.plans.current().sources.get(batch.source)
        if source_plan is None or not source_plan.views:
            return
        # Views on the same entity share one entity id and shard per event.
        by_keys: dict[tuple[str, ...], list[str]] = {}
        columns: dict[tuple[str, ...], dict[str, None]] = {}
        for route in source_plan.views:
            by_keys.setdefault(route.join_keys, []).append(route.view.name)
            columns.setdefault(route.join_keys, {}).update(dict.fromkeys(route.tiler.columns))
        shards: dict[int, TileInput] = {}
        events = batch.events
        # Each column any view reads is converted once, whichever groups read it.
        converted = values_of(events.table, dict.fromkeys(c for cs in columns.values() for c in cs))
        # Positions only grow within one origin partition *and* one ledger shard (shards
        # reach this step interleaved), so that pair names the replay guard's stream.
        stream = f"{batch.part}#{batch.shard}"
        for join_keys, names in by_keys.items():
            group = tuple(names)
            values = {c: converted[c] for c in columns[join_keys]}
            if join_keys == source_plan.source.key:
                # The entity is the source key: its tile shard is its ledger shard (the
                # same crc32 of the same entity id, over as many shards), and its key values
                # are never null. The batch's own columns are the entries' columns.
                entries = Entries(
                    events.ids,
                    events.keys,
                    events.ts,
                    events.eids,
                    events.major,
                    events.minor,
                    values,
                )
                parts = [(batch.shard, entries)]
            else:
                parts = _by_shard(events, values, join_keys)
            for shard, entries in parts:
                inp = shards.get(shard)
                if inp is None:
                    inp = shards[shard] = TileInput(shard, stream, [])
                inp.groups.append((group, entries))
        for shard, inp in shards.items():
            yield (self.shard_keys[shard], inp)


def _by_shard(
    events: EventColumns, values: dict[str, Array], join_keys: tuple[str, ...]
) -> list[tuple[int, Entries]]:
    """The events with every join key set, as entries per tile shard of their entity (in
    order of each shard's first event), for views keyed unlike their source."""
    table = events.table
    keys = list(zip(*[object_column(table.column(k)).tolist() for k in join_keys], strict=True))
    if not keys:
        return []
    nulls = list(map(tuple.__contains__, keys, repeat(None)))
    at: Array | None = None
    if any(nulls):  # an entity needs every join key
        rows = list(compress(range(len(keys)), map(not_, nulls)))
        if not rows:
            return []
        keys = list(map(keys.__getitem__, rows))
        at = np.array(rows, dtype=np.int64)
    eids = layout.entity_ids(keys)
    shard = np.fromiter(map(zlib.crc32, map(str.encode, eids)), np.int64, len(eids))
    shard %= TILE_SHARDS
    if (shard == shard[0]).all():
        return [(int(shard[0]), _entries(events, values, eids, keys, at))]
    order = np.argsort(shard, kind="stable")
    edges = np.flatnonzero(np.diff(shard[order])) + 1
    out = []
    for run in np.split(order, edges):
        pick = run.tolist()
        picked = _entries(
            events,
            values,
            list(map(eids.__getitem__, pick)),
            list(map(keys.__getitem__, pick)),
            run if at is None else at[run],
        )
        out.append((pick[0], int(shard[pick[0]]), picked))
    out.sort(key=_FIRST)
    return [(number, entries) for _, number, entries in out]


def _entries(
    events: EventColumns,
    values: dict[str, Array],
    eids: list[str],
    keys: list[tuple[Any, ...]],
    at: Array | None,
) -> Entries:
    """The entries of the events at `at` (all if None), with their entity ids and keys."""
    if at is None:
        return Entries(eids, keys, events.ts, events.eids, events.major, events.minor, values)
    event_ids = list(map(events.eids.__getitem__, at.tolist()))
    picked = {c: v[at] for c, v in values.items()}
    return Entries(eids, keys, events.ts[at], event_ids, events.major[at], events.minor[at], picked)
