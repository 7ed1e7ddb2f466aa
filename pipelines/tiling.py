"""The `tiles` step: per (view, entity) time tiles through `features.tiles.ViewTiler`.

Accepted events are routed to the tile shard of their view's entity (which may differ from
the source key: `page_views` keyed by (user, item) feeds a view on users). Each shard keeps
`EntityTiles` per view and entity in recovery state and emits the absolute encoded values
of what each batch changed. Events later than the wall clock wait in `pending` and are
folded when a notification fires; a periodic sweep prunes tiles no window can read and
forgets entities whose online key has expired.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from features import layout
from features.durations import US_PER_S, from_us, now_us
from features.tiles import EntityTiles, TileKey
from pipelines.decoding import shard_name
from pipelines.plan import PlanSource
from pipelines.records import AcceptedBatch, TileBatch, TileInput
from pipelines.sinks.redis_tiles import TileWrite, encode_write, pack_stream_write

TILE_SHARDS = 16  # part of the recovery state schema: never change on a live recovery dir
SWEEP_US = 300 * US_PER_S


def prune_write(project: str, view: str, eid: str, dropped: set[TileKey]) -> TileWrite:
    """A write that only deletes pruned tiles (meta, pending and expiry stay as they are)."""
    return TileWrite(
        key=layout.view_key(project, view, eid),
        hll_key=layout.entity_count_key(project, view),
        entity=eid,
        fields={},
        removed=[layout.tile_field(k) for k in sorted(dropped)],
        expire_at_ms=None,
    )


class TileRouter:
    """The `route` step: an accepted batch → one `TileInput` per tile shard it touches."""

    def __init__(self, plans: PlanSource) -> None:
        self.plans = plans

    def __call__(self, batch: AcceptedBatch) -> Iterator[tuple[str, TileInput]]:
        source_plan = self.plans.current().sources.get(batch.source)
        if source_plan is None or not source_plan.views:
            return
        # Views on the same entity share one entity id and shard per event.
        by_keys: dict[tuple[str, ...], list[str]] = {}
        for route in source_plan.views:
            by_keys.setdefault(route.join_keys, []).append(route.view.name)
        shards: dict[int, TileInput] = {}
        crc32, entity_id = zlib.crc32, layout.entity_id
        for join_keys, names in by_keys.items():
            group = tuple(names)
            per_shard: dict[int, list[tuple[str, tuple[Any, ...], Any]]] = {}
            single = join_keys[0] if len(join_keys) == 1 else None
            for event in batch.events:
                row = event.row
                if single is not None:
                    value = row[single]
                    if value is None:
                        continue
                    values: tuple[Any, ...] = (value,)
                else:
                    values = tuple([row[k] for k in join_keys])
                    if None in values:
                        continue  # an entity needs every join key
                eid = entity_id(values)
                shard = crc32(eid.encode()) % TILE_SHARDS
                entries = per_shard.get(shard)
                if entries is None:
                    entries = per_shard[shard] = []
                entries.append((eid, values, event))
            for shard, entries in per_shard.items():
                inp = shards.get(shard)
                if inp is None:
                    inp = shards[shard] = TileInput(shard, [])
                inp.groups.append((group, entries))
        for shard, inp in shards.items():
            yield (shard_name(shard), inp)


class TileShard(StatefulBatchLogic[TileInput, TileBatch, bytes]):
    """Tiles of every entity of one shard, per view; emits absolute writes per batch."""

    def __init__(
        self, plans: PlanSource, project: str, resume: bytes | None, snapshots: bool
    ) -> None:
        self.plans = plans
        self.project = project
        self.snapshots = snapshots
        state = pickle.loads(resume) if resume else ({}, {}, {})  # noqa: S301 - own recovery store
        self.views: dict[str, dict[str, EntityTiles]] = state[0]
        self.fingerprints: dict[str, bytes] = state[1]
        # entities holding events later than the clock: (view, entity) → join-key values
        self.pending: dict[tuple[str, str], tuple[Any, ...]] = state[2]
        self.pending_at: int | None = self._earliest_pending()
        self.first = True
        self.next_sweep = now_us() + SWEEP_US

    def _sync_views(self, plan: Any) -> None:
        """Reset the state of views whose definition changed; forget removed views."""
        for name in list(self.views):
            route = plan.views.get(name)
            if route is None or route.fingerprint != self.fingerprints.get(name):
                del self.views[name]
                self.fingerprints.pop(name, None)
                self.pending = {k: v for k, v in self.pending.items() if k[0] != name}
        for name, route in plan.views.items():
            if name not in self.views:
                self.views[name] = {}
                self.fingerprints[name] = route.fingerprint

    def on_batch(self, values: list[TileInput]) -> tuple[list[TileBatch], bool]:
        plan = self.plans.current()
        if plan.views.keys() != self.views.keys():
            self._sync_views(plan)
        now = now_us()
        # per view: entity id → [changed tiles, join-key values, max_ts before this batch]
        touched: dict[str, dict[str, list[Any]]] = {}
        fresh: dict[str, int] = {}
        for inp in values:
            if self.first:  # stagger the shards' sweeps by their number
                self.first = False
                self.next_sweep += inp.shard * US_PER_S
            for names, entries in inp.groups:
                for name in names:
                    route = plan.views.get(name)
                    if route is None:
                        continue  # removed from the registry since it was routed
                    if route.fingerprint != self.fingerprints.get(name):
                        self._sync_views(plan)
                    apply, entities = route.tiler.apply, self.views[name]
                    seen = touched.get(name)
                    if seen is None:
                        seen = touched[name] = {}
                    top = fresh.get(name, -(2**63))
                    for eid, key_values, event in entries:
                        state = entities.get(eid)
                        if state is None:
                            state = entities[eid] = EntityTiles()
                        mark = seen.get(eid)
                        if mark is None:
                            mark = seen[eid] = [set(), key_values, state.max_ts]
                        ts = event.ts
                        mark[0].update(apply(state, ts, event.eid, event.row, now))
                        if ts > top:
                            top = ts
                    fresh[name] = top
        return [self._writes(plan, touched, fresh, now)], StatefulBatchLogic.RETAIN

    def _writes(
        self, plan: Any, touched: dict[str, dict[str, list[Any]]], fresh: dict[str, int], now: int
    ) -> TileBatch:
        """Encode the absolute state of every touched entity (folding due pending events)."""
        out = TileBatch(freshness=fresh)
        project = self.project
        for name, marks in touched.items():
            route = plan.views[name]
            entities, ttl, tiler = self.views[name], route.view.ttl, route.tiler
            for eid, (changed, key_values, previous_max_ts) in marks.items():
                state = entities[eid]
                if state.pending:
                    changed |= tiler.fold_pending(state, now)
                    if state.pending:
                        self.pending[(name, eid)] = key_values
                    else:
                        self.pending.pop((name, eid), None)
                data, n = pack_stream_write(
                    layout.view_key(project, name, eid),
                    state,
                    changed,
                    key_values,
                    ttl,
                    previous_max_ts,
                )
                out.packed.append(data)
                out.commands += n
            out.entities[layout.entity_count_key(project, name)] = list(marks)
        self.pending_at = self._earliest_pending() if self.pending else None
        return out

    def _earliest_pending(self) -> int | None:
        times = [
            min(rec[0] for rec in self.views[name][eid].pending)
            for name, eid in self.pending
            if name in self.views and eid in self.views[name] and self.views[name][eid].pending
        ]
        return min(times) if times else None

    def notify_at(self) -> datetime | None:
        due = self.next_sweep if self.pending_at is None else min(self.pending_at, self.next_sweep)
        return from_us(due).astimezone(UTC)

    def on_notify(self) -> tuple[list[TileBatch], bool]:
        plan = self.plans.current()
        self._sync_views(plan)
        now = now_us()
        writes = []
        for (name, eid), key_values in list(self.pending.items()):
            state = self.views[name].get(eid)
            route = plan.views[name]
            changed = route.tiler.fold_pending(state, now) if state is not None else set()
            if state is None or not state.pending:
                del self.pending[(name, eid)]
            if state is not None and changed:
                write = encode_write(self.project, route.view, key_values, state, changed, ())
                writes.append(write)
        if now >= self.next_sweep:
            writes.extend(self._sweep(plan, now))
            self.next_sweep = now + SWEEP_US
        self.pending_at = self._earliest_pending()
        return ([TileBatch(writes=writes)] if writes else []), StatefulBatchLogic.RETAIN

    def _sweep(self, plan: Any, now: int) -> list[Any]:
        """Prune unreadable tiles (HDEL them) and forget entities whose key has expired."""
        writes = []
        for name, entities in self.views.items():
            route = plan.views[name]
            ttl = route.view.ttl
            for eid in list(entities):
                state = entities[eid]
                dropped = route.tiler.prune(state, now)
                if state.max_ts is not None and state.max_ts + ttl < now and not state.pending:
                    del entities[eid]
                elif dropped:
                    writes.append(prune_write(self.project, name, eid, dropped))
        return writes

    def on_eof(self) -> tuple[list[TileBatch], bool]:
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        if not self.snapshots:
            return b""
        return pickle.dumps(
            (self.views, self.fingerprints, self.pending), protocol=pickle.HIGHEST_PROTOCOL
        )
