"""One view's online state on one worker: its entities, their tiles as columns, replay marks.

The tiles step folds a batch of events into `TileSlots` (one per tile size) with numpy,
never event by event, and then writes each touched entity with one `HSET` built column-wise
(`sinks.tile_commands`). Per entity it keeps what the writer needs: the newest event time
(`max_ts`), the time folded up to, the expiry last set, the events later than the clock
(`pending`, rare: kept as Python records) and, per origin stream, the newest position
applied: replayed events at or before it are skipped (`replay_marks`), so nothing is
applied twice. Its RESP key and the fixed head of its `m` are built when it is cached, a
batch at a time; `tile_loads` decodes the hash of an entity Redis holds.

Tiles no window can read at any time from now on are not created (an old event still
moves `max_ts`), and those that age out are dropped a sweep at a time: `ViewTiler.prune`'s
rule, applied to whole tile starts.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from features import layout
from features.column_states import grown
from features.tile_columns import presence
from features.tiles import MIN_TS
from pipelines.entity_codes import EntityCodes, ViewCodes
from pipelines.plan import ViewRoute
from pipelines.records import Position
from pipelines.replay_marks import guard, mark
from pipelines.sinks.redis_bulk import pack_one
from pipelines.sinks.redis_tiles import EntityBytes, expiry_bucket_ms, meta_heads
from pipelines.tile_batches import Batch, Changes, ends_of_groups, objects, select
from pipelines.tile_loads import load_stored
from pipelines.tile_slots import TileSlots
from pipelines.tile_writes import encode_changes

Array = np.ndarray[Any, Any]
NONE = -(2**63)  # `max_ts` of an entity without events
# Per-entity arrays and the value of an entity slot not in use.
_FILLS = (
    ("eids", None),
    ("keys", None),
    ("max_ts", NONE),
    ("folded", MIN_TS),
    ("expire_at", 0),
    ("used", 0),
    ("shard", 0),
    ("fresh", False),
    ("reset", False),
    ("stored_pending", False),
)


class ViewTiles:
    """The tiles of one view's cached entities, and how to apply events and write them."""

    def __init__(
        self,
        project: str,
        route: ViewRoute,
        dtypes: Mapping[str, str],
        codes: EntityCodes | None = None,
    ) -> None:
        """`codes` is the worker's (shared by its views), else the view's own."""
        self.project = project
        self.route = route
        self.ttl = route.view.ttl
        self.horizon = dict(route.tiler.horizon)
        self.columns = route.tiler.columns
        by_g: dict[int, list[Any]] = {}
        for f in route.tiler.features:
            by_g.setdefault(f.granularity, []).append(f)
        self.slots = {g: TileSlots(g, feats, dtypes) for g, feats in by_g.items()}
        self.index: dict[str, int] = {}
        # Per entity number: id, join-key values (`None`: free), RESP key and `m` head.
        self.eids = np.zeros(0, dtype=object)
        self.keys = np.zeros(0, dtype=object)
        self.key_bulk = EntityBytes()
        self.heads = EntityBytes()
        self.free: list[int] = []
        self.top = 0  # entity numbers ever used
        self.capacity = 0
        self.max_ts = np.zeros(0, dtype=np.int64)
        self.folded = np.zeros(0, dtype=np.int64)
        self.expire_at = np.zeros(0, dtype=np.int64)
        self.used = np.zeros(0, dtype=np.int64)
        self.shard = np.zeros(0, dtype=np.int64)
        self.fresh = np.zeros(0, dtype=bool)
        self.reset = np.zeros(0, dtype=bool)
        self.stored_pending = np.zeros(0, dtype=bool)
        self.pending: dict[int, list[list[Any]]] = {}
        self.marks: dict[str, tuple[Array, Array]] = {}
        self.stream_top: dict[str, Position] = {}
        self.migrations: list[bytes] = []  # commands to send before the next writes
        self.bucket_ms = expiry_bucket_ms(self.ttl)
        self.codes = ViewCodes(EntityCodes() if codes is None else codes, self.index)

    # ------------------------------------------------------------------ entities

    def __len__(self) -> int:
        return len(self.index)

    def _grow(self, size: int) -> None:
        if size <= self.capacity:
            return
        capacity = max(size, 2 * self.capacity, 1024)
        for name, fill in _FILLS:
            setattr(self, name, grown(getattr(self, name), capacity, fill))
        for stream, (major, minor) in self.marks.items():
            self.marks[stream] = (grown(major, capacity, -1), grown(minor, capacity, -1))
        self.capacity = capacity

    def add(
        self,
        eids: Sequence[str],
        keys: Sequence[tuple[Any, ...]],
        shards: Array,
        bulks: list[bytes],
        codes: Array | None = None,
    ) -> Array:
        """Cache new, empty entities (not in Redis, or to be replaced); returns their numbers.

        Their RESP keys (`bulks`, built by the caller to read them: `key_bulks`) and `m`
        heads are kept per entity number for `encode` to take; `codes`: `ViewCodes.added`."""
        n = len(eids)
        reuse = min(n, len(self.free))
        ents = self.free[len(self.free) - reuse :]
        del self.free[len(self.free) - reuse :]
        ents += range(self.top, self.top + n - reuse)
        self.top += n - reuse
        self._grow(self.top)
        out = np.array(ents, dtype=np.int64)
        self.eids[out] = objects(eids)
        self.keys[out] = objects(keys)
        self.key_bulk.put(out, bulks)
        self.heads.put(out, meta_heads(keys, self.route.version))
        self.index.update(zip(eids, ents, strict=True))
        self.codes.added(eids, out, codes)
        self.shard[out] = shards
        return out

    def key_text(self, ent: int) -> str:
        """The hash key of a cached entity."""
        return layout.view_key(self.project, self.route.view.name, self.eids[ent] or "")

    def missing(self, batch: Batch) -> list[int]:
        """Positions in the batch of entities not cached (first occurrence of each): equal
        ids have equal codes, so the first of each code missed, in order."""
        missed = np.flatnonzero(self.codes.lookup(batch) < 0)
        if not len(missed):
            return []
        firsts = ends_of_groups(self.codes.of_batch(batch)[missed], last=False)
        at: list[int] = missed[np.sort(firsts)].tolist()
        return at

    def _entities(self, batch: Batch) -> Array:
        """The numbers of the batch's entities, all cached (`KeyError` otherwise)."""
        ents = self.codes.lookup(batch)
        if ents.min(initial=0) < 0:
            raise KeyError(batch.eids[int(np.argmin(ents))])
        return ents

    def loaded(self, ents: Array, replies: list[Any]) -> None:
        """Set entities just added (`add`, in the order read) from their `HGETALL` replies
        (RESP3 maps or RESP2 lists; empty: new), which the engine reads while it adds them."""
        empty = np.fromiter(map(operator.not_, replies), bool, len(replies))
        self.fresh[ents[empty]] = True
        for i in np.flatnonzero(~empty).tolist():
            load_stored(self, int(ents[i]), replies[i])

    def marks_of(self, stream: str) -> tuple[Array, Array]:
        """Per entity number, the newest (major, minor) position applied of `stream` (-1: none)."""
        found = self.marks.get(stream)
        if found is None:
            found = self.marks[stream] = (
                np.full(self.capacity, -1, dtype=np.int64),
                np.full(self.capacity, -1, dtype=np.int64),
            )
        return found

    # ------------------------------------------------------------------ applying

    def apply(self, batch: Batch, now: int, changes: Changes, flush: int) -> int:
        """Apply a batch (entities cached); returns the newest event time applied (or NONE)."""
        ents = self._entities(batch)
        keep = guard(self, batch, ents)
        if keep is not None:
            if not keep.any():
                return NONE
            ents, batch = ents[keep], select(batch, keep)
        self.used[ents] = flush
        mark(self, batch, ents, changes)
        changes.ents.append(ents)
        ts = batch.ts
        np.maximum.at(self.max_ts, ents, ts)
        later = ts > now
        if later.any():
            values = [(c, batch.values[c]) for c in self.columns]
            for i in np.flatnonzero(later).tolist():
                self.pending.setdefault(int(ents[i]), []).append(
                    [int(ts[i]), batch.event_ids[i], {c: v[i] for c, v in values}]
                )
            now_ = ~later
            self._fold(ents[now_], ts[now_], batch.event_ids[now_],
                       {c: v[now_] for c, v in batch.values.items()}, now, changes)  # fmt: skip
        else:
            self._fold(ents, ts, batch.event_ids, batch.values, now, changes, batch.shared)
        return int(ts.max())

    def _fold(
        self,
        ents: Array,
        ts: Array,
        event_ids: Array,
        values: Mapping[str, Array],
        now: int,
        changes: Changes,
        shared: dict[Any, Any] | None = None,
    ) -> None:
        """Fold events into their tiles. `shared` (a whole batch's, else None) keeps for the
        next view of the group the events each tile size takes, which hang only on the
        events, the columns the size reads and the oldest start a window reads."""
        if not len(ents):
            return
        np.maximum.at(self.folded, ents, ts)
        # Which values are not None, per column: worked out once for every size and view.
        present: dict[str, Array] = {} if shared is None else shared.setdefault("present", {})
        for g, slot in self.slots.items():
            cutoff = now - self.horizon[g]
            key = (g, slot.columns.columns, slot.columns.always, cutoff)
            taken = None if shared is None else shared.get(key)
            if taken is None:
                present.update(
                    presence(values, [c for c in slot.columns.columns if c not in present])
                )
                taken = slot.taken(cutoff, ts, event_ids, values, present)
                if shared is not None:
                    shared[key] = taken
            at, starts, times, ids, picked, known = taken
            if not len(at):
                continue
            rows = slot.rows(ents[at], starts)
            slot.columns.fold(rows, times, ids, picked, known)
            changes.tiles.setdefault(g, []).append((ents[at], rows))

    def fold_due(self, now: int, changes: Changes) -> None:
        """Fold the pending events the clock has reached."""
        due_ents, due_ts, due_ids, due_rows = [], [], [], []
        for ent in list(self.pending):
            records = self.pending[ent]
            if all(rec[0] > now for rec in records):
                continue
            keep = []
            for rec in records:
                if rec[0] <= now:
                    due_ents.append(ent)
                    due_ts.append(rec[0])
                    due_ids.append(rec[1])
                    due_rows.append(rec[2])
                else:
                    keep.append(rec)
            if keep:
                self.pending[ent] = keep
            else:
                del self.pending[ent]
        if not due_ents:
            return
        ents = np.array(due_ents, dtype=np.int64)
        changes.ents.append(ents)
        values = {c: objects([r.get(c) for r in due_rows]) for c in self.columns}
        self._fold(ents, np.array(due_ts, dtype=np.int64), objects(due_ids), values, now, changes)

    def earliest_pending(self) -> int | None:
        """The earliest pending event time (None: nothing pending)."""
        times = [min(rec[0] for rec in records) for records in self.pending.values() if records]
        return min(times) if times else None

    # ------------------------------------------------------------------ writing

    def encode(self, changes: Changes) -> tuple[memoryview, int, list[str]]:
        """The commands writing every changed entity (`tile_writes.encode_changes`)."""
        return encode_changes(self, changes)

    # ------------------------------------------------------------------ housekeeping

    def prune(self, now: int) -> list[bytes]:
        """`HDEL`s (RESP) of the tiles no window reads at any time from `now` on, one per
        entity; drops their rows."""
        fields: dict[int, list[str]] = {}
        for g, slot in self.slots.items():
            for start, ents in slot.drop_before(now - self.horizon[g]):
                name = layout.tile_field((g, start))
                for ent in ents:
                    fields.setdefault(ent, []).append(name)
        return [pack_one(("HDEL", self.key_text(ent), *names)) for ent, names in fields.items()]

    def expired(self, now: int) -> list[int]:
        """Cached entities whose key has expired (newest event older than `ttl`), not pending."""
        live = np.array(list(self.index.values()), dtype=np.int64)
        if not len(live):
            return []
        top = self.max_ts[live]
        old = live[(top != NONE) & (top + self.ttl < now)]
        return [e for e in old.tolist() if e not in self.pending]

    def least_used(self, count: int) -> list[int]:
        """Up to `count` cached entities used least recently, none of them pending."""
        live = np.array([e for e in self.index.values() if e not in self.pending], np.int64)
        if not len(live) or count <= 0:
            return []
        if count < len(live):
            live = live[np.argpartition(self.used[live], count - 1)[:count]]
        out: list[int] = live.tolist()
        return out

    def last_use(self) -> Array:
        """When each cached entity was last used (flush numbers)."""
        return self.used[np.array(list(self.index.values()), dtype=np.int64)]

    def forget(self, ents: Sequence[int]) -> None:
        """Drop entities from the cache (Redis holds them)."""
        if not ents:
            return
        for slot in self.slots.values():
            slot.forget(ents)
        gone = []
        for ent in ents:
            eid = self.eids[ent]
            if eid is not None:
                del self.index[eid]
                gone.append(eid)
            self.eids[ent] = None
            self.pending.pop(ent, None)
        self.codes.forgotten(gone)
        at = np.array(ents, dtype=np.int64)
        for major, minor in self.marks.values():
            major[at], minor[at] = -1, -1
        for name, fill in _FILLS:
            getattr(self, name)[at] = fill
        self.key_bulk.drop(at)
        self.heads.drop(at)
        self.free += ents

    def pending_entities(self) -> list[tuple[str, tuple[Any, ...], int]]:
        """(entity id, join-key values, tile shard) of the entities holding pending events."""
        return [(self.eids[e] or "", self.keys[e], int(self.shard[e])) for e in self.pending]
