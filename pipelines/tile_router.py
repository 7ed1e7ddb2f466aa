"""The `route` step: accepted events → the tile shard of each of their views' entities.

A view's entity may differ from its source's key (`page_views`, keyed by (user, item),
feeds a view on users), so each event goes to the shard of the entity id every view of
it needs; views on the same entity share one entry per event.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from operator import attrgetter
from typing import Any

from features import layout
from pipelines.plan import PlanSource
from pipelines.records import AcceptedBatch, Position, TileInput
from pipelines.shard_keys import BALANCED, SHARDS

TILE_SHARDS = SHARDS  # as many as ledger shards, under the same keys (`pipelines.shard_keys`)
_KEY = attrgetter("key")


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
        for route in source_plan.views:
            by_keys.setdefault(route.join_keys, []).append(route.view.name)
        shards: dict[int, TileInput] = {}
        entity_id = layout.entity_id
        positions = batch.positions
        source_key = source_plan.source.key
        # Positions only grow within one origin partition *and* one ledger shard (shards
        # reach this step interleaved), so that pair names the replay guard's stream.
        stream = f"{batch.part}#{batch.shard}"
        for join_keys, names in by_keys.items():
            group = tuple(names)
            if join_keys == source_key:
                # The entity is the source key: its tile shard is its ledger shard (the
                # same crc32 of the same entity id, over as many shards), and its key values
                # are never null.
                # Built by C iterators, not a comprehension. No cache of entity ids: with
                # 30k keys a probe of the large dict cost more than `entity_id` saves; plain
                # string keys are their own ids, checked for the whole column at once.
                events = batch.events
                keys = list(map(_KEY, events))
                ids = layout.plain_entity_ids(keys) or list(map(entity_id, keys))
                entries = list(zip(ids, keys, events, positions, strict=True))
                inp = shards.get(batch.shard)
                if inp is None:
                    inp = shards[batch.shard] = TileInput(batch.shard, stream, [])
                inp.groups.append((group, entries))
                continue
            per_shard: dict[int, list[tuple[str, tuple[Any, ...], Any, Position]]] = {}
            for i, event in enumerate(batch.events):
                row = event.row
                values = tuple([row[k] for k in join_keys])
                if None in values:
                    continue  # an entity needs every join key
                eid = entity_id(values)
                shard = shard_of_entity(eid)
                found = per_shard.get(shard)
                if found is None:
                    found = per_shard[shard] = []
                found.append((eid, values, event, positions[i]))
            for shard, found in per_shard.items():
                inp = shards.get(shard)
                if inp is None:
                    inp = shards[shard] = TileInput(shard, stream, [])
                inp.groups.append((group, found))
        for shard, inp in shards.items():
            yield (self.shard_keys[shard], inp)
