"""The `tiles` step: per (view, entity) time tiles through `features.tiles.ViewTiler`.

Accepted events are routed to the tile shard of their view's entity (which may differ from
the source key: `page_views` keyed by (user, item) feeds a view on users). The online hash
of each (view, entity) is the state: every batch writes the absolute tiles it changed plus,
in `m`, the newest origin position applied per (origin partition, ledger shard) (`pos`)
and the view's version (`v`). The shard keeps those hashes in a bounded cache and loads a
missing entity from Redis before applying to it; after a crash, replayed events at or
before an entity's `pos` are skipped, so nothing is applied twice. Bytewax snapshots
therefore stay tiny (the set of entities with events later than the clock), which keeps
epoch closes short and freshness steady. Pending events are folded when a notification
fires; a periodic sweep prunes tiles no window can read and evicts the least recently
used entities.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from bytewax.operators import StatefulBatchLogic

from features import layout
from features.durations import US_PER_S, from_us, now_us
from features.tiles import EntityTiles
from pipelines.decoding import shard_name
from pipelines.plan import PlanSource, ViewRoute
from pipelines.records import AcceptedBatch, Position, TileBatch, TileInput
from pipelines.sinks.redis_bulk import fetch_raw
from pipelines.sinks.redis_bulk import pack_one as _pack
from pipelines.sinks.redis_tiles import TileWrite, pack_stream_write

if TYPE_CHECKING:
    import redis

TILE_SHARDS = 16  # Bytewax state keys of this step (its state is small: safe to change)
SWEEP_US = 300 * US_PER_S
PRUNE_ABOVE = 8  # tiles per tile size an entity may hold before a write prunes it


@dataclass(slots=True)
class Cached:
    """One (view, entity) as the online store holds it, plus what the writer needs."""

    state: EntityTiles
    keys: tuple[Any, ...]
    marks: dict[str, Position] = field(default_factory=dict)
    fresh: bool = True  # absent from Redis when loaded: count it in the HyperLogLog
    reset: bool = False  # Redis held another version of the view: delete before writing


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
        positions = batch.positions
        # Positions only grow within one origin partition *and* one ledger shard (shards
        # reach this step interleaved), so that pair names the replay guard's stream.
        stream = f"{batch.part}#{batch.shard}"
        for join_keys, names in by_keys.items():
            group = tuple(names)
            per_shard: dict[int, list[tuple[str, tuple[Any, ...], Any, Position]]] = {}
            single = join_keys[0] if len(join_keys) == 1 else None
            for i, event in enumerate(batch.events):
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
                entries.append((eid, values, event, positions[i]))
            for shard, entries in per_shard.items():
                inp = shards.get(shard)
                if inp is None:
                    inp = shards[shard] = TileInput(shard, stream, [])
                inp.groups.append((group, entries))
        for shard, inp in shards.items():
            yield (shard_name(shard), inp)


class TileShard(StatefulBatchLogic[TileInput, TileBatch, bytes]):
    """A cache of the online tiles of one shard's entities; emits absolute writes per batch."""

    def __init__(
        self,
        plans: PlanSource,
        project: str,
        client: redis.Redis,
        resume: bytes | None,
        cache_limit: int,
    ) -> None:
        self.plans = plans
        self.project = project
        self.client = client
        self.cache_limit = cache_limit
        self.cache: dict[str, dict[str, Cached]] = {}  # view → entity → Cached, LRU order
        self.versions: dict[str, str] = {}
        # (view, entity) → join-key values, for entities holding events later than the clock
        loaded = pickle.loads(resume) if resume else {}  # noqa: S301 - our own recovery store
        self.pending: dict[tuple[str, str], tuple[Any, ...]] = loaded
        # restored pending entities are looked at in the first notification
        self.pending_at: int | None = now_us() if self.pending else None
        self.next_sweep = now_us() + SWEEP_US
        self.first = True

    # ------------------------------------------------------------------ cache

    def _sync_views(self, plan: Any) -> None:
        """Forget cached entities of views that changed or disappeared."""
        for name in list(self.cache):
            route = plan.views.get(name)
            if route is None or route.version != self.versions.get(name):
                del self.cache[name]
                self.versions.pop(name, None)
                self.pending = {k: v for k, v in self.pending.items() if k[0] != name}
        for name, route in plan.views.items():
            if name not in self.cache:
                self.cache[name] = {}
                self.versions[name] = route.version

    def _load(self, plan: Any, wanted: Iterable[tuple[str, str, tuple[Any, ...]]]) -> None:
        """Read missing entities from Redis (one round trip) into the cache."""
        todo = [(n, e, k) for n, e, k in dict.fromkeys(wanted) if e not in self.cache[n]]
        if not todo:
            return
        commands = [("HGETALL", layout.view_key(self.project, n, e)) for n, e, _ in todo]
        for (name, eid, keys), reply in zip(todo, fetch_raw(self.client, commands), strict=True):
            self.cache[name][eid] = _cached(reply, keys, plan.views[name])

    # ------------------------------------------------------------------ Bytewax callbacks

    def on_batch(self, values: list[TileInput]) -> tuple[list[TileBatch], bool]:
        plan = self.plans.current()
        if plan.views.keys() != self.cache.keys() or any(
            r.version != self.versions.get(n) for n, r in plan.views.items()
        ):
            self._sync_views(plan)
        if self.first:  # stagger the shards' sweeps by their number
            self.first = False
            self.next_sweep += values[0].shard * US_PER_S
        self._load(
            plan,
            (
                (name, eid, keys)
                for inp in values
                for names, entries in inp.groups
                for name in names
                if name in self.cache
                for eid, keys, _, _ in entries
            ),
        )
        now = now_us()
        # per view: entity id → [changed tiles, max_ts before this batch]
        touched: dict[str, dict[str, list[Any]]] = {}
        fresh: dict[str, int] = {}
        for inp in values:
            part = inp.part
            for names, entries in inp.groups:
                for name in names:
                    route = plan.views.get(name)
                    if route is None:
                        continue  # removed from the registry since it was routed
                    apply, cache = route.tiler.apply_into, self.cache[name]
                    seen = touched.get(name)
                    if seen is None:
                        seen = touched[name] = {}
                    top = fresh.get(name, -(2**63))
                    for eid, _, event, position in entries:
                        item = cache[eid]
                        last = item.marks.get(part)
                        if last is not None and position <= last:
                            continue  # applied before a crash: Redis already has it
                        item.marks[part] = position
                        state = item.state
                        mark = seen.get(eid)
                        if mark is None:
                            mark = seen[eid] = [set(), state.max_ts]
                        ts = event.ts
                        apply(state, ts, event.eid, event.row, now, mark[0])
                        if ts > top:
                            top = ts
                    if top > -(2**63):
                        fresh[name] = top
        out = self._writes(plan, touched, now)
        out.freshness = fresh
        if self._size() > self.cache_limit:
            self._evict()
        return [out], StatefulBatchLogic.RETAIN

    def _writes(self, plan: Any, touched: dict[str, dict[str, list[Any]]], now: int) -> TileBatch:
        """Encode the absolute state of every touched entity (folding due pending events)."""
        out = TileBatch()
        project = self.project
        for name, marks in touched.items():
            route: ViewRoute = plan.views[name]
            cache, ttl, tiler = self.cache[name], route.view.ttl, route.tiler
            version = route.version
            prune_above = PRUNE_ABOVE * len(route.view.granularities)
            new_ids = []
            for eid, (changed, previous_max_ts) in marks.items():
                item = cache.pop(eid)
                cache[eid] = item  # most recently used last
                state = item.state
                if state.pending:
                    changed |= tiler.fold_pending(state, now)
                    if state.pending:
                        self.pending[(name, eid)] = item.keys
                    else:
                        self.pending.pop((name, eid), None)
                key = layout.view_key(project, name, eid)
                if item.reset:
                    out.packed.append(_pack(("DEL", key)))
                    out.commands += 1
                    item.reset = False
                if len(state.tiles) > prune_above:
                    # Tiles no window can read any more: dropped here rather than at the
                    # sweep, so a busy entity's memory stays bounded by its windows.
                    dropped = tiler.prune(state, now)
                    if dropped:
                        changed -= dropped
                        fields = [layout.tile_field(k) for k in dropped]
                        out.packed.append(_pack(("HDEL", key, *fields)))
                        out.commands += 1
                data, n = pack_stream_write(
                    key, state, changed, item.keys, ttl, previous_max_ts, version, item.marks
                )
                out.packed.append(data)
                out.commands += n
                if item.fresh:
                    item.fresh = False
                    new_ids.append(eid)
            if new_ids:
                out.entities[layout.entity_count_key(project, name)] = new_ids
        self.pending_at = self._earliest_pending() if self.pending else None
        return out

    def _earliest_pending(self) -> int | None:
        times = []
        for name, eid in self.pending:
            item = self.cache.get(name, {}).get(eid)
            if item is None:
                return now_us()  # not loaded (restored after a restart): look at it now
            if item.state.pending:
                times.append(min(rec[0] for rec in item.state.pending))
        return min(times) if times else None

    def notify_at(self) -> datetime | None:
        due = self.next_sweep if self.pending_at is None else min(self.pending_at, self.next_sweep)
        return from_us(due)

    def on_notify(self) -> tuple[list[TileBatch], bool]:
        plan = self.plans.current()
        self._sync_views(plan)
        now = now_us()
        self._load(plan, ((n, e, k) for (n, e), k in self.pending.items() if n in self.cache))
        touched: dict[str, dict[str, list[Any]]] = {}
        for name, eid in list(self.pending):
            item = self.cache[name][eid]
            if not item.state.pending:
                del self.pending[(name, eid)]
                continue
            if any(rec[0] <= now for rec in item.state.pending):
                touched.setdefault(name, {})[eid] = [set(), item.state.max_ts]
        out = self._writes(plan, touched, now) if touched else TileBatch()
        if now >= self.next_sweep:
            out.writes.extend(self._sweep(plan, now))
            self.next_sweep = now + SWEEP_US
        if not self.pending:
            self.pending_at = None
        has_output = out.commands or out.writes
        return ([out] if has_output else []), StatefulBatchLogic.RETAIN

    def _sweep(self, plan: Any, now: int) -> list[TileWrite]:
        """Prune cached tiles no window can read (HDEL them); drop expired entities."""
        writes = []
        for name, cache in self.cache.items():
            route = plan.views[name]
            ttl = route.view.ttl
            for eid in list(cache):
                state = cache[eid].state
                dropped = route.tiler.prune(state, now)
                if state.max_ts is not None and state.max_ts + ttl < now and not state.pending:
                    del cache[eid]  # its online key has expired too
                elif dropped:
                    writes.append(
                        TileWrite(
                            key=layout.view_key(self.project, name, eid),
                            hll_key=layout.entity_count_key(self.project, name),
                            entity=eid,
                            fields={},
                            removed=[layout.tile_field(k) for k in sorted(dropped)],
                            expire_at_ms=None,
                        )
                    )
        return writes

    def _size(self) -> int:
        return sum(len(c) for c in self.cache.values())

    def _evict(self) -> None:
        """Drop least recently used entities (Redis holds them) down to 90% of the limit."""
        excess = self._size() - int(self.cache_limit * 0.9)
        for name, cache in self.cache.items():
            share = excess * len(cache) // max(1, self._size())
            for eid in list(cache)[: share + 1]:
                if (name, eid) not in self.pending:
                    del cache[eid]

    def on_eof(self) -> tuple[list[TileBatch], bool]:
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.pending, protocol=pickle.HIGHEST_PROTOCOL)


def _cached(reply: Any, keys: tuple[Any, ...], route: ViewRoute) -> Cached:
    """An HGETALL reply (RESP3 map or RESP2 list) as a cache entry for `route`'s view."""
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    if not reply:
        return Cached(EntityTiles(), keys)
    meta = orjson.loads(reply.get(b"m", b"{}"))
    if meta.get("v") not in (None, route.version):
        return Cached(EntityTiles(), keys, fresh=False, reset=True)
    state = layout.decode_tiles(reply) or EntityTiles()
    marks = {part: (int(p[0]), int(p[1])) for part, p in (meta.get("pos") or {}).items()}
    return Cached(state, keys, marks, fresh=False)
