"""The rows of one view's tiles of one size on one worker: (entity, tile start) → row.

`features.tile_columns.TileColumns` holds the states, one row per tile; this module gives
each tile its row. Tiles are aligned, so a batch touches only a few tile starts: rows are
found per start (`bucket`, entity number → row) with one C-level dict lookup per event,
and a whole start is dropped at once when no window reads it any more. A bucket is read
only by rare paths, so the tiles made go into it lazily: kept as arrays per start
(`_made`), put into its dict when the start is next read (`_bucket`), if ever. Each entity's
newest tile seen is also remembered in arrays (`last_start`, `last_row`): an event in that
tile, the usual case for the coarser sizes, gets its row with numpy, without a lookup; as
no entity holds a tile past its newest, events past it make their tiles without one too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from features.column_states import grown
from features.packed_sort import stable_order
from features.tile_columns import TileColumns
from features.tiles import CompiledFeature
from pipelines.tile_batches import ends_of_groups

Array = np.ndarray[Any, Any]
# Positions taken, then their starts, times, ids, values and presence (`TileSlots.taken`).
Taken = tuple[Array, Array, Array, Array, Mapping[str, Array], Mapping[str, Array]]
NO_TILE = -(2**63)  # `last_start` of an entity without a remembered tile


class TileSlots:
    """Rows of the tiles of size `g` of one view, and their states."""

    def __init__(self, g: int, features: Sequence[CompiledFeature], dtypes: Mapping[str, str]):
        self.g = g
        self.columns = TileColumns(features, dtypes)
        self._buckets: dict[int, dict[int, int]] = {}  # tile start → entity → row
        # Tiles made but not yet in their start's dict: start → (entities, rows) chunks,
        # in the order made (`_bucket` puts them in, in that order).
        self._made: dict[int, list[tuple[Array, Array]]] = {}
        self.free: list[int] = []
        self.used = 0  # rows ever handed out (the free ones included)
        self.start_of = np.zeros(0, dtype=np.int64)  # row → its tile start
        # Per entity number: a tile it holds (`buckets[last_start[e]][e] == last_row[e]`),
        # its newest seen; NO_TILE: none remembered.
        self.last_start = np.zeros(0, dtype=np.int64)
        self.last_row = np.zeros(0, dtype=np.int64)
        self._scratch = np.zeros(0, dtype=np.int64)  # per entity number: `_distinct`'s

    @property
    def buckets(self) -> dict[int, dict[int, int]]:
        """Tile start → entity → row, every tile made put in (for rare paths and tests)."""
        for start in list(self._made):
            self._bucket(start)
        return self._buckets

    def _bucket(self, start: int) -> dict[int, int]:
        """The dict of one start (made empty if none), the tiles made since put in."""
        bucket = self._buckets.setdefault(start, {})
        chunks = self._made.pop(start, None)
        if chunks:
            for ents, rows in chunks:
                bucket.update(zip(ents.tolist(), rows.tolist(), strict=True))
        return bucket

    def taken(
        self,
        cutoff: int,
        ts: Array,
        event_ids: Array,
        values: Mapping[str, Array],
        present: Mapping[str, Array],
    ) -> Taken:
        """The events these tiles take (positions) and their starts, times, ids, values and
        presence (`present`: `TileColumns.touches`), the values of the columns read only:
        those giving a feature a value, in a tile some window still reads (from `cutoff`)."""
        starts = ts - ts % self.g
        # A tile no window reads at any time from now on is never created.
        at = np.flatnonzero(self.columns.touches(values, len(ts), present) & (starts >= cutoff))
        read = self.columns.columns
        if len(at) == len(ts):
            return at, starts, ts, event_ids, values, present
        return (
            at,
            starts[at],
            ts[at],
            event_ids[at],
            {c: values[c][at] for c in read},
            {c: present[c][at] for c in read},
        )

    def rows(self, ents: Array, starts: Array) -> Array:
        """The row of each (entity, tile start); tiles not seen yet get empty rows.

        Rows are handed out as a lookup of every event in the buckets would. An entity holds
        no tile past its remembered one (its newest), so events in that tile take its row and
        events past it make tiles, both without a lookup; only the rare events before it are
        looked up."""
        if not len(ents):
            return np.empty(0, dtype=np.int64)
        self._room(ents)
        newest = self.last_start[ents]
        hit = newest == starts
        if hit.all():
            return self.last_row[ents]
        out = self.last_row[ents]
        make = starts > newest
        older = np.flatnonzero(~(hit | make))
        if len(older):
            found = self._find(ents[older], starts[older])
            out[older] = found
            make[older[found < 0]] = True
        at = np.flatnonzero(make)
        if len(at):
            out[at] = self._make(ents[at], starts[at])
        return out

    def _find(self, ents: Array, starts: Array) -> Array:
        """The rows of tiles held, -1 where (entity, start) holds none."""
        listed = starts.tolist()
        for start in set(listed) & self._made.keys():
            self._bucket(start)
        out = np.empty(len(ents), dtype=np.int64)
        for i, (ent, start) in enumerate(zip(ents.tolist(), listed, strict=True)):
            out[i] = self._buckets.get(start, {}).get(ent, -1)
        return out

    def _make(self, ents: Array, starts: Array) -> Array:
        """New rows for tiles not held (each (entity, start) once however often it comes),
        handed out as a lookup of every event would: by start, then by the first event of
        each tile."""
        order = stable_order(starts)
        ordered, owners = starts[order], ents[order]
        group = np.zeros(len(order), dtype=np.int64)
        group[1:] = np.cumsum(ordered[1:] != ordered[:-1])
        n = len(order)
        key = group * (int(ents.max()) + 1) + owners  # one per tile
        by_key = stable_order(key)  # each tile's events together, first first
        keys = key[by_key]
        head = np.ones(n, dtype=bool)
        head[1:] = keys[1:] != keys[:-1]
        tile_of = None  # each event's tile, numbered in `hand` order (None: its own)
        hand = np.arange(n)  # each tile's first event: by start, then arrival
        if not head.all():
            firsts = by_key[head]
            is_first = np.zeros(n, dtype=bool)
            is_first[firsts] = True
            hand = np.flatnonzero(is_first)
            first_of = np.empty(n, dtype=np.int64)
            first_of[by_key] = firsts[np.cumsum(head) - 1]
            tile_of = (np.cumsum(is_first) - 1)[first_of]
        counts = np.bincount(group[hand])
        made = np.empty(len(hand), dtype=np.int64)
        edge = 0
        for count in counts.tolist():
            if count:
                start, mine = int(ordered[hand[edge]]), owners[hand[edge : edge + count]]
                rows = self._take(count, start)
                made[edge : edge + count] = (
                    np.arange(rows.start, rows.stop) if isinstance(rows, range) else rows
                )
                self._buckets.setdefault(start, {})  # its dict, for `_made` to go into
                self._made.setdefault(start, []).append((mine, made[edge : edge + count]))
                edge += count
        # Each entity's newest tile: its last made past the one remembered.
        tile_ents, tile_starts = owners[hand], ordered[hand]
        newer = np.flatnonzero(tile_starts > self.last_start[tile_ents])
        last = (
            newer
            if self._distinct(tile_ents[newer])
            else newer[ends_of_groups(tile_ents[newer], last=True)]
        )
        self.last_start[tile_ents[last]] = tile_starts[last]
        self.last_row[tile_ents[last]] = made[last]
        out = np.empty(n, dtype=np.int64)
        out[order] = made if tile_of is None else made[tile_of]
        return out

    def _distinct(self, ents: Array) -> bool:
        """Whether no entity number repeats in `ents`: each writes its position to a scratch
        slot of its own; a repeat leaves some position unread, whichever write lands last."""
        at = np.arange(len(ents))
        self._scratch[ents] = at
        return bool((self._scratch[ents] == at).all())

    def _room(self, ents: Array) -> None:
        """Make room to remember a tile of each of `ents` (entity numbers)."""
        top = int(ents.max()) + 1
        if top > len(self.last_start):
            size = max(top, 2 * len(self.last_start), 1024)
            self.last_start = grown(self.last_start, size, NO_TILE)
            self.last_row = grown(self.last_row, size, 0)
            self._scratch = np.zeros(size, dtype=np.int64)

    def _take(self, count: int, start: int) -> Sequence[int]:
        """`count` empty rows for tiles starting at `start` (freed rows first; a `range`
        when none is freed, the usual case, so no list of ints is built)."""
        reuse = min(count, len(self.free))
        rows = self.free[len(self.free) - reuse :]
        del self.free[len(self.free) - reuse :]
        first = self.used
        self.used += count - reuse
        self.columns.ensure(self.used)
        if self.used > len(self.start_of):
            self.start_of = grown(self.start_of, self.columns.capacity, 0)
        self.start_of[first : self.used] = start
        if not rows:
            return range(first, self.used)
        self.start_of[rows] = start
        rows += range(first, self.used)
        return rows

    def _release(self, rows: list[int]) -> None:
        if rows:
            self.columns.clear(np.array(rows, dtype=np.int64))
            self.free += rows

    def drop_before(self, cutoff: int) -> list[tuple[int, list[int]]]:
        """Drop every tile starting before `cutoff`; returns `(start, entities)` dropped."""
        dropped = []
        for start in [s for s in self._buckets if s < cutoff]:
            bucket = self._buckets.pop(start)
            ents, rows = list(bucket), list(bucket.values())
            for made_ents, made_rows in self._made.pop(start, ()):  # no need for the dict
                ents += made_ents.tolist()
                rows += made_rows.tolist()
            self._release(rows)
            dropped.append((start, ents))
        if dropped:
            self.last_start[self.last_start < cutoff] = NO_TILE
        return dropped

    def forget(self, ents: Iterable[int]) -> None:
        """Drop every tile of these entities (evicted: Redis still holds them)."""
        gone = set(ents)
        known = [e for e in gone if e < len(self.last_start)]
        self.last_start[np.array(known, dtype=np.int64)] = NO_TILE
        freed: list[int] = []
        buckets = self.buckets
        for start in list(buckets):
            bucket = buckets[start]
            if len(gone) < len(bucket):
                hits = [e for e in gone if e in bucket]
            else:
                hits = [e for e in bucket if e in gone]
            for ent in hits:
                freed.append(bucket.pop(ent))
            if not bucket:
                del buckets[start]
        self._release(freed)

    def tiles_of(self, ent: int) -> dict[int, int]:
        """Tile start → row of one entity (a scan of the starts: for rare paths)."""
        return {s: b[ent] for s, b in self.buckets.items() if ent in b}
