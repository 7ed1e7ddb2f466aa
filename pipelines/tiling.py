"""The `tiles` step: accepted events → per (view, entity) time tiles in Redis, a batch at a time.

`pipelines.tile_router` routes accepted events to the tile shard of their view's entity.
The shards of one worker share one `TileEngine`: Bytewax hands each shard its own slice of
an activation (~1/16 of it), too small to fold column-wise, so a shard only queues its
inputs and the engine folds them together once enough have come, or at the next
notification, epoch snapshot or end of input. Entities are disjoint across shards, and each
shard's inputs keep their order, so the result is the same as folding shard by shard.

The online hash of each (view, entity) is the state: every flush writes the absolute tiles
it changed, `m` and, per origin stream (origin partition and ledger shard), the newest
position applied. The engine caches those hashes (`view_tiles.ViewTiles`) and loads a
missing entity from Redis before applying to it; after a crash, replayed events at or
before an entity's mark are skipped, so nothing is applied twice. It writes through its
worker's `TileConnection` without waiting for the replies; `snapshot()` drains them, so
Bytewax commits an epoch only after its tiles are in Redis. Bytewax snapshots stay tiny: the
entities of the shard with events later than the clock.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from bytewax.operators import StatefulBatchLogic

from features import layout
from features.durations import US_PER_S, from_us, now_us
from pipelines.entity_codes import EntityCodes
from pipelines.plan import Plan, PlanSource
from pipelines.records import Entries, TileInput
from pipelines.sinks.redis_bulk import fetch_packed, pack_one
from pipelines.sinks.redis_tiles import hgetalls, key_bulks
from pipelines.sinks.redis_writer import TileConnection
from pipelines.stats import StatsWriter
from pipelines.tile_batches import Batch, Changes, batch_of, first_positions
from pipelines.tile_router import shard_of_entity
from pipelines.view_tiles import NONE, ViewTiles

if TYPE_CHECKING:
    import redis

SWEEP_US = 300 * US_PER_S
FLUSH_EVENTS = 16_000  # queued events that make a shard's call fold the worker's queue at once
Pending = dict[tuple[str, str], tuple[Any, ...]]  # (view, entity) → join-key values
# Entities to load: ids, join-key values, shards and their entity codes (None: not known).
Missing = tuple[list[str], list[tuple[Any, ...]], np.ndarray[Any, Any], np.ndarray[Any, Any] | None]


class TileEngine:
    """One worker's tiles: the views' cached entities, the queue of inputs, the writes."""

    def __init__(
        self,
        plans: PlanSource,
        project: str,
        client: redis.Redis,
        writer: TileConnection,
        clock: Callable[[], int] = now_us,
    ) -> None:
        """`clock` gives the writer's time in µs (tests pass their own)."""
        self.plans = plans
        self.clock = clock
        self.project = project
        self.client = client
        self.writer = writer
        self.stats = StatsWriter(client, project)
        self.views: dict[str, ViewTiles] = {}
        self.codes = EntityCodes()  # the views' shared entity codes
        self.queue: list[TileInput] = []
        self.queued = 0
        self.limit = 0  # cached (view, entity) pairs allowed (the shards' limits summed)
        self.flushes = 0
        self.dropped = False  # entities left the cache since the last read from Redis
        self.restored: Pending = {}  # pending entities of resumed shards, not loaded yet
        self.next_sweep = clock() + SWEEP_US

    # ------------------------------------------------------------------ queue

    def submit(self, values: list[TileInput]) -> None:
        """Queue a shard's inputs; fold the queue once it is large enough."""
        self.queue += values
        self.queued += sum(len(e) for inp in values for _, e in inp.groups)
        if self.queued >= FLUSH_EVENTS:
            self.flush()

    def due(self) -> int:
        """When the engine next has work without new input (µs)."""
        if self.queue or self.restored:
            return self.clock()
        due = self.next_sweep
        for view in self.views.values():
            if view.pending:
                first = view.earliest_pending()
                if first is not None and first < due:
                    due = first
        return due

    def restore(self, pending: Pending) -> None:
        """Pending entities of a resumed shard: loaded and looked at in the next flush."""
        self.restored.update(pending)

    def drain(self) -> None:
        """Wait until Redis has applied every write sent (an epoch barrier)."""
        self.writer.drain()

    def pending_of(self, shard: int) -> Pending:
        """The shard's entities holding events later than the clock (its Bytewax state)."""
        out = {k: v for k, v in self.restored.items() if shard_of_entity(k[1]) == shard}
        for name, view in self.views.items():
            for eid, keys, ent_shard in view.pending_entities():
                if ent_shard == shard:
                    out[(name, eid)] = keys
        return out

    # ------------------------------------------------------------------ flush

    def flush(self) -> None:
        """Fold the queued inputs and due pending events, write them, then tidy the cache."""
        plan = self.plans.current()
        self._sync_views(plan)
        inputs, self.queue, self.queued = self.queue, [], 0
        self.flushes += 1
        now = self.clock()
        work = self._batches(inputs)
        self._load(work)
        changes = {name: Changes() for name in self.views}
        fresh: dict[str, int] = {}
        for name, view, batch in work:
            top = view.apply(batch, now, changes[name], self.flushes)
            if top != NONE and top > fresh.get(name, NONE):
                fresh[name] = top
        for name, view in self.views.items():
            if view.pending:
                view.fold_due(now, changes[name])
        self._write(changes, fresh)
        if now >= self.next_sweep:
            # After the writes: a sweep forgets entities, which must be written first.
            deletes = self.sweep(now)
            self.next_sweep = now + SWEEP_US
            self.writer.send(deletes, len(deletes))
        if sum(len(v) for v in self.views.values()) > self.limit:
            self._evict()
        self.codes.bound(sum(len(v) for v in self.views.values()))

    def _sync_views(self, plan: Plan) -> None:
        """Forget the cache of views that changed or disappeared; start new views empty."""
        for name in list(self.views):
            route = plan.views.get(name)
            if route is None or route.version != self.views[name].route.version:
                del self.views[name]
                self.restored = {k: v for k, v in self.restored.items() if k[0] != name}
                self.dropped = True
        for name, route in plan.views.items():
            if name not in self.views:
                source = plan.definitions.sources[route.view.source]
                dtypes = {c.name: c.dtype for c in source.schema}
                self.views[name] = ViewTiles(self.project, route, dtypes, self.codes)

    def _batches(self, inputs: list[TileInput]) -> list[tuple[str, ViewTiles, Batch]]:
        """The queued events as one batch of columns per group of views (views on the same
        entity), in queue order: each stream's events keep their order."""
        groups: dict[tuple[str, ...], list[tuple[TileInput, Entries]]] = {}
        for inp in inputs:
            for names, entries in inp.groups:
                if len(entries):
                    groups.setdefault(names, []).append((inp, entries))
        work = []
        for names, parts in groups.items():
            views = [(n, self.views[n]) for n in names if n in self.views]
            if views:
                columns = sorted({c for _, v in views for c in v.columns})
                batch = batch_of(parts, columns)
                work += [(name, view, batch) for name, view in views]
        return work

    def _load(self, work: list[tuple[str, ViewTiles, Batch]]) -> None:
        """Read every entity of `work` (and every restored one) missing from the cache: one
        packed `HGETALL` each, framed column-wise per view, the replies sliced per view."""
        wanted: dict[str, list[Missing]] = {}
        for name, view, batch in work:
            at = view.missing(batch)
            if at:
                ids, values = batch.eids.__getitem__, batch.keys.__getitem__
                codes = view.codes.of_batch(batch)[at]  # coded by `missing` just now
                picked = (list(map(ids, at)), list(map(values, at)), batch.shard[at], codes)
                wanted.setdefault(name, []).append(picked)
        restored: dict[str, dict[str, tuple[Any, ...]]] = {}
        for (name, eid), keys in self.restored.items():
            cached = self.views.get(name)
            if cached is not None and eid not in cached.index:
                restored.setdefault(name, {})[eid] = keys
        for name, found in restored.items():
            shards = np.array([shard_of_entity(e) for e in found], dtype=np.int64)
            wanted.setdefault(name, []).append((list(found), list(found.values()), shards, None))
        self.restored = {}
        if not wanted:
            return
        if self.dropped:
            # A dropped entity may still have writes in flight: let them land before reading.
            self.writer.drain()
            self.dropped = False
        loads = [(name, *_first_of_each(parts)) for name, parts in wanted.items()]
        bulks = [key_bulks(self.project, name, eids) for name, eids, *_ in loads]
        count = sum(len(eids) for _, eids, *_ in loads)
        added: list[tuple[ViewTiles, np.ndarray[Any, Any]]] = []

        def add() -> None:
            # The entities go into the cache while Redis reads them (nothing here needs the
            # replies); their stored state is set once the replies are in.
            for (name, eids, key_values, shards, coded), framed in zip(loads, bulks, strict=True):
                view = self.views[name]
                added.append((view, view.add(eids, key_values, shards, framed, coded)))

        try:
            replies = fetch_packed(self.client, hgetalls(bulks), count, add)
        except BaseException:
            for view, ents in added:  # not read: out of the cache again
                view.forget(ents.tolist())
            raise
        end = 0
        for view, ents in added:
            start, end = end, end + len(ents)
            view.loaded(ents, replies[start:end])

    def _write(self, changes: dict[str, Changes], fresh: dict[str, int]) -> None:
        """Send every view's writes, then the new entities and freshness:
        once freshness shows a time, the tiles holding it are written."""
        packed: list[Any] = []
        count = 0
        for view in self.views.values():
            if view.migrations:
                packed += view.migrations
                count += len(view.migrations)
                view.migrations = []
        commands: list[tuple[Any, ...]] = []
        for name, change in changes.items():
            data, replies, new_ids = self.views[name].encode(change)
            if replies:
                packed.append(data)
                count += replies
            if new_ids:
                commands.append(("PFADD", layout.entity_count_key(self.project, name), *new_ids))
        commands += self.stats.freshness_commands(fresh) if fresh else []
        packed += [pack_one(command) for command in commands]
        self.writer.send(packed, count + len(commands))

    # ------------------------------------------------------------------ housekeeping

    def sweep(self, now: int) -> list[bytes]:
        """`HDEL`s (RESP) of the tiles no window reads at any time from `now` on; forgets
        the entities whose key has expired. Runs every `SWEEP_US` within a flush."""
        commands: list[bytes] = []
        for view in self.views.values():
            expired = view.expired(now)
            if expired:
                view.forget(expired)
                self.dropped = True
            commands += view.prune(now)
        return commands

    def _evict(self) -> None:
        """Drop the least recently used entities (Redis holds them) down to 90% of the limit."""
        size = sum(len(v) for v in self.views.values())
        excess = size - int(self.limit * 0.9)
        if excess <= 0:
            return
        uses = np.concatenate([v.last_use() for v in self.views.values()])
        cutoff = np.partition(uses, min(excess, len(uses)) - 1)[min(excess, len(uses)) - 1]
        for view in self.views.values():
            older = int((view.last_use() <= cutoff).sum())
            view.forget(view.least_used(older))
        self.dropped = True


def _first_of_each(parts: list[Missing]) -> Missing:
    """The entities of `parts` (each without repeats), the first occurrence of each kept."""
    if len(parts) == 1:
        return parts[0]
    eids = [e for p in parts for e in p[0]]
    keys = [k for p in parts for k in p[1]]
    at = first_positions(eids, range(len(eids)))
    shards = np.concatenate([p[2] for p in parts])[at]
    known = [p[3] for p in parts if p[3] is not None]
    codes = np.concatenate(known)[at] if len(known) == len(parts) else None
    return [eids[i] for i in at], [keys[i] for i in at], shards, codes


def shard_builder(
    plans: PlanSource, project: str, client: redis.Redis, cache_limit: int
) -> Callable[[bytes | None], TileShard]:
    """The tiles step's logic builder for one flow: one engine per worker (thread), made
    when its first shard is built, so every run starts from Redis, never from a stale cache.

    `cache_limit` is per shard; a worker's engine caches its shards' limits summed.
    """
    engines: dict[int, TileEngine] = {}

    def build(resume: bytes | None) -> TileShard:
        # Keyed by the OS thread, not a thread-local: with 2+ workers Bytewax gives a worker
        # thread a new Python thread state per callback, and its thread-locals go with it.
        thread = threading.get_ident()
        engine = engines.get(thread)
        if engine is None:
            engine = engines[thread] = TileEngine(plans, project, client, TileConnection(client))
        return TileShard(engine, resume, cache_limit)

    return build


class TileShard(StatefulBatchLogic[TileInput, Any, bytes]):
    """One tile shard's Bytewax state: queues its inputs on the worker's `TileEngine`."""

    def __init__(self, engine: TileEngine, resume: bytes | None, cache_limit: int) -> None:
        self.engine = engine
        self.engine.limit += cache_limit
        self.shard: int | None = None
        restored: Pending = pickle.loads(resume) if resume else {}  # noqa: S301 - our own state
        if restored:
            self.shard = shard_of_entity(next(iter(restored))[1])
            self.engine.restore(restored)

    def on_batch(self, values: list[TileInput]) -> tuple[list[Any], bool]:
        if self.shard is None:
            self.shard = values[0].shard
        self.engine.submit(values)
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return from_us(self.engine.due())

    def on_notify(self) -> tuple[list[Any], bool]:
        if self.engine.due() <= self.engine.clock():
            self.engine.flush()
        return [], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Any], bool]:
        if self.engine.queue:
            self.engine.flush()
        self.engine.drain()
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        # Bytewax commits the epoch after this returns: its tiles must be in Redis by then.
        if self.engine.queue or self.engine.restored:
            self.engine.flush()
        self.engine.drain()
        pending = {} if self.shard is None else self.engine.pending_of(self.shard)
        return pickle.dumps(pending, protocol=pickle.HIGHEST_PROTOCOL)
