"""The `tiles` step: per (view, entity) time tiles through `features.tiles.ViewTiler`.

`pipelines.tile_router` routes accepted events to the tile shard of their view's entity
(which may differ from the source key). The online hash of each (view, entity) is the
state: every batch writes the absolute tiles it changed plus, in `m`, the newest origin
position applied per (origin partition, ledger shard) (`pos`) and the view's version (`v`).
The shard keeps those hashes in a bounded cache and loads a missing entity from Redis
before applying to it; after a crash, replayed events at or before an entity's `pos` are
skipped, so nothing is applied twice.

The step writes through its worker's `TileConnection` without waiting for the replies, so
Redis applies a batch while the step computes the next one. `snapshot()` drains the
replies: Bytewax commits an epoch only after its tiles are in Redis. Bytewax snapshots
stay tiny (the set of entities with events later than the clock), which keeps epoch closes
short and freshness steady. Pending events are folded when a notification fires; a
periodic sweep prunes tiles no window can read.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from bytewax.operators import StatefulBatchLogic

from features import layout
from features.durations import US_PER_S, from_us, now_us
from features.tiles import EntityTiles, TileKey, ceil_to
from pipelines.plan import Plan, PlanSource, ViewRoute
from pipelines.records import Position, TileInput
from pipelines.sinks.redis_bulk import fetch_raw, pack_one
from pipelines.sinks.redis_tiles import (
    bulk,
    delete_command,
    expire_command,
    expiry_bucket_ms,
    meta_head,
    pack_stream_write,
)
from pipelines.sinks.redis_writer import TileConnection
from pipelines.stats import StatsWriter

if TYPE_CHECKING:
    import redis

SWEEP_US = 300 * US_PER_S
PRUNE_ABOVE = 8  # tiles per tile size an entity may hold before a write prunes it
_MIN = -(2**63)


@dataclass(slots=True)
class Cached:
    """One (view, entity) as the online store holds it, plus what the writer needs."""

    state: EntityTiles
    eid: str
    keys: tuple[Any, ...]
    key: bytes  # the hash key as a RESP bulk string
    head: bytes  # `redis_tiles.meta_head`: the fixed start of `m`
    marks: dict[str, Position] = field(default_factory=dict)
    fresh: bool = True  # absent from Redis when loaded: count it in the HyperLogLog
    reset: bool = False  # Redis held another version of the view: delete before writing
    stored_pending: bool = False  # Redis holds a non-empty `p`
    changed: set[TileKey] | None = None  # tiles changed by the batch being applied
    expire_at: int = 0  # the `PEXPIREAT` (ms) this step last set; 0: not known
    used: int = 0  # the shard's batch number of the last use (eviction order)
    prune_at: int = _MIN  # no tile is prunable before this time (`ViewTiler.prune_due`)


class TileShard(StatefulBatchLogic[TileInput, Any, bytes]):
    """A cache of the online tiles of one shard's entities; writes absolute tiles per batch."""

    def __init__(
        self,
        plans: PlanSource,
        project: str,
        client: redis.Redis,
        writer: TileConnection,
        resume: bytes | None,
        cache_limit: int,
    ) -> None:
        self.plans = plans
        self.project = project
        self.client = client
        self.writer = writer
        self.stats = StatsWriter(client, project)
        self.cache_limit = cache_limit
        self.cache: dict[str, dict[str, Cached]] = {}  # view → entity → Cached
        self.versions: dict[str, str] = {}
        self.batches = 0
        self.dropped = False  # entities left the cache since the last flush
        # (view, entity) → join-key values, for entities holding events later than the clock
        loaded = pickle.loads(resume) if resume else {}  # noqa: S301 - our own recovery store
        self.pending: dict[tuple[str, str], tuple[Any, ...]] = loaded
        # restored pending entities are looked at in the first notification
        self.pending_at: int | None = now_us() if self.pending else None
        self.next_sweep = now_us() + SWEEP_US
        self.first = True

    # ------------------------------------------------------------------ cache

    def _sync_views(self, plan: Plan) -> None:
        """Forget cached entities of views that changed or disappeared."""
        for name in list(self.cache):
            route = plan.views.get(name)
            if route is None or route.version != self.versions.get(name):
                del self.cache[name]
                self.versions.pop(name, None)
                self.pending = {k: v for k, v in self.pending.items() if k[0] != name}
                self.dropped = True
        for name, route in plan.views.items():
            if name not in self.cache:
                self.cache[name] = {}
                self.versions[name] = route.version

    def _load(self, plan: Plan, wanted: list[tuple[str, str, tuple[Any, ...]]]) -> None:
        """Read the entities of `wanted` missing from the cache from Redis (one round trip)."""
        todo = []
        for name, eid, keys in wanted:
            cache = self.cache[name]
            if eid not in cache:
                cache[eid] = None  # type: ignore[assignment]  # filled below; dedups `todo`
                todo.append((name, eid, keys))
        if not todo:
            return
        if self.dropped:
            # A dropped entity may still have writes in flight: let them land before reading.
            self.writer.drain()
            self.dropped = False
        project = self.project
        commands = [("HGETALL", layout.view_key(project, n, e)) for n, e, _ in todo]
        for (name, eid, keys), reply in zip(todo, fetch_raw(self.client, commands), strict=True):
            self.cache[name][eid] = _cached(reply, project, eid, keys, plan.views[name])

    def _missing(self, values: list[TileInput]) -> list[tuple[str, str, tuple[Any, ...]]]:
        """(view, entity, join-key values) of every routed entity not in the cache."""
        wanted = []
        for inp in values:
            for names, entries in inp.groups:
                for name in names:
                    cache = self.cache.get(name)
                    if cache is None:
                        continue
                    for eid, keys, _, _ in entries:
                        if eid not in cache:
                            wanted.append((name, eid, keys))
        return wanted

    # ------------------------------------------------------------------ Bytewax callbacks

    def on_batch(self, values: list[TileInput]) -> tuple[list[Any], bool]:
        plan = self.plans.current()
        if plan.views.keys() != self.cache.keys() or any(
            r.version != self.versions.get(n) for n, r in plan.views.items()
        ):
            self._sync_views(plan)
        if self.first:  # stagger the shards' sweeps by their number
            self.first = False
            self.next_sweep += values[0].shard * US_PER_S
        self.batches += 1
        self._load(plan, self._missing(values))
        now = now_us()
        touched: dict[str, list[Cached]] = {}
        fresh: dict[str, int] = {}
        for inp in values:
            part = inp.part
            for names, entries in inp.groups:
                for name in names:
                    route = plan.views.get(name)
                    if route is None:
                        continue  # removed from the registry since it was routed
                    apply, cache = route.tiler.apply_into, self.cache[name]
                    items = touched.get(name)
                    if items is None:
                        items = touched[name] = []
                    top = fresh.get(name, _MIN)
                    for eid, _, event, position in entries:
                        item = cache[eid]
                        marks = item.marks
                        last = marks.get(part)
                        if last is not None and position <= last:
                            continue  # applied before a crash: Redis already has it
                        marks[part] = position
                        changed = item.changed
                        if changed is None:
                            changed = item.changed = set()
                            items.append(item)
                        ts = event.ts
                        apply(item.state, ts, event.eid, event.row, now, changed)
                        if ts > top:
                            top = ts
                    if top > _MIN:
                        fresh[name] = top
        self._write(plan, touched, now, fresh)
        if self._size() > self.cache_limit:
            self._evict()
        return [], StatefulBatchLogic.RETAIN

    def _write(
        self,
        plan: Plan,
        touched: dict[str, list[Cached]],
        now: int,
        fresh: dict[str, int],
        extra: Sequence[bytes] = (),
    ) -> None:
        """Submit the absolute state of every touched entity (folding due pending events).

        `extra` (the sweep's `HDEL`s, as RESP), the HyperLogLog of new entities and the
        views' freshness go last: once freshness shows a time, the tiles holding it are
        written.
        """
        packed: list[bytes] = []
        count = 0
        batch = self.batches
        hll: list[tuple[Any, ...]] = []
        for name, items in touched.items():
            route: ViewRoute = plan.views[name]
            ttl, tiler = route.view.ttl, route.tiler
            bucket_ms = expiry_bucket_ms(ttl)
            prune_above = PRUNE_ABOVE * len(route.view.granularities)
            new_ids = []
            for item in items:
                changed: set[TileKey] = item.changed  # type: ignore[assignment]  # set when listed
                item.changed = None
                item.used = batch
                state = item.state
                if state.pending:
                    changed |= tiler.fold_pending(state, now)
                    if state.pending:
                        self.pending[(name, item.eid)] = item.keys
                    else:
                        self.pending.pop((name, item.eid), None)
                if item.reset:
                    packed.append(b"*2\r\n$3\r\nDEL\r\n" + item.key)
                    count += 1
                    item.reset = False
                    item.stored_pending = False
                if len(state.tiles) > prune_above and now >= item.prune_at:
                    # Tiles no window can read any more: dropped here rather than at the
                    # sweep, so a busy entity's memory stays bounded by its windows. An
                    # older tile a late event creates later waits for the next due time.
                    dropped = tiler.prune(state, now)
                    due = tiler.prune_due(state)
                    item.prune_at = _MIN if due is None else due
                    if dropped:
                        changed -= dropped
                        packed.append(delete_command(item.key, dropped))
                        count += 1
                packed.append(
                    pack_stream_write(
                        item.key, item.head, state, changed, item.marks, item.stored_pending
                    )
                )
                count += 1
                item.stored_pending = bool(state.pending)
                max_ts = state.max_ts
                if max_ts is not None:
                    expire_at = layout.expire_at_ms(max_ts, ttl)
                    if expire_at > item.expire_at:
                        # set again only past the bucket set before (rounded up to it)
                        item.expire_at = ceil_to(expire_at, bucket_ms)
                        packed.append(expire_command(item.key, item.expire_at))
                        count += 1
                if item.fresh:
                    item.fresh = False
                    new_ids.append(item.eid)
            if new_ids:
                hll.append(("PFADD", layout.entity_count_key(self.project, name), *new_ids))
        packed += extra
        commands = hll + (self.stats.freshness_commands(fresh) if fresh else [])
        for command in commands:
            packed.append(pack_one(command))
        self.writer.send(packed, count + len(extra) + len(commands))
        self.pending_at = self._earliest_pending() if self.pending else None

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

    def on_notify(self) -> tuple[list[Any], bool]:
        plan = self.plans.current()
        self._sync_views(plan)
        now = now_us()
        self.batches += 1
        self._load(plan, [(n, e, k) for (n, e), k in self.pending.items() if n in self.cache])
        touched: dict[str, list[Cached]] = {}
        for name, eid in list(self.pending):
            item = self.cache[name][eid]
            if not item.state.pending:
                del self.pending[(name, eid)]
                continue
            if any(rec[0] <= now for rec in item.state.pending):
                item.changed = set()
                touched.setdefault(name, []).append(item)
        extra: list[bytes] = []
        if now >= self.next_sweep:
            extra = self._sweep(plan, now)
            self.next_sweep = now + SWEEP_US
        if touched or extra:
            self._write(plan, touched, now, {}, extra)
        if not self.pending:
            self.pending_at = None
        return [], StatefulBatchLogic.RETAIN

    def _sweep(self, plan: Plan, now: int) -> list[bytes]:
        """`HDEL`s (RESP) of cached tiles no window can read any more; drops expired entities."""
        commands: list[bytes] = []
        for name, cache in self.cache.items():
            route = plan.views[name]
            ttl = route.view.ttl
            for eid in list(cache):
                item = cache[eid]
                state = item.state
                dropped = route.tiler.prune(state, now)
                if state.max_ts is not None and state.max_ts + ttl < now and not state.pending:
                    del cache[eid]  # its online key has expired too
                    self.dropped = True
                elif dropped:
                    commands.append(delete_command(item.key, sorted(dropped)))
        return commands

    def _size(self) -> int:
        return sum(len(c) for c in self.cache.values())

    def _evict(self) -> None:
        """Drop the least recently used entities (Redis holds them) down to 90% of the limit."""
        excess = self._size() - int(self.cache_limit * 0.9)
        if excess <= 0:
            return
        uses = sorted(item.used for cache in self.cache.values() for item in cache.values())
        cutoff = uses[min(excess, len(uses)) - 1]  # at least `excess` were used at or before
        for name, cache in self.cache.items():
            for eid in [e for e, item in cache.items() if item.used <= cutoff]:
                if (name, eid) not in self.pending:
                    del cache[eid]
        self.dropped = True

    def on_eof(self) -> tuple[list[Any], bool]:
        self.writer.drain()
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        # Bytewax commits the epoch after this returns: its tiles must be in Redis by then.
        self.writer.drain()
        return pickle.dumps(self.pending, protocol=pickle.HIGHEST_PROTOCOL)


def _cached(reply: Any, project: str, eid: str, keys: tuple[Any, ...], route: ViewRoute) -> Cached:
    """An HGETALL reply (RESP3 map or RESP2 list) as a cache entry for `route`'s view."""
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    key = bulk(layout.view_key(project, route.view.name, eid).encode())
    head = meta_head(keys, route.version)
    if not reply:
        return Cached(EntityTiles(), eid, keys, key, head)
    meta = orjson.loads(reply.get(b"m", b"{}"))
    if meta.get("v") not in (None, route.version):
        return Cached(EntityTiles(), eid, keys, key, head, fresh=False, reset=True)
    state = layout.decode_tiles(reply) or EntityTiles()
    marks = {part: (int(p[0]), int(p[1])) for part, p in (meta.get("pos") or {}).items()}
    return Cached(
        state, eid, keys, key, head, marks, fresh=False, stored_pending=bool(state.pending)
    )
