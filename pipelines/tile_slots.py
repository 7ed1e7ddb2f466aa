"""The rows of one view's tiles of one size on one worker: (entity, tile start) → row.

`features.tile_columns.TileColumns` holds the states, one row per tile; this module gives
each tile its row. Tiles are aligned, so a batch touches only a few tile starts: rows are
found per start (`bucket`, entity number → row) with one C-level dict lookup per event,
and a whole start is dropped at once when no window reads it any more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import compress, repeat
from operator import is_
from typing import Any

import numpy as np

from features.column_states import grown
from features.tile_columns import TileColumns
from features.tiles import CompiledFeature

Array = np.ndarray[Any, Any]


class TileSlots:
    """Rows of the tiles of size `g` of one view, and their states."""

    def __init__(self, g: int, features: Sequence[CompiledFeature], dtypes: Mapping[str, str]):
        self.g = g
        self.columns = TileColumns(features, dtypes)
        self.buckets: dict[int, dict[int, int]] = {}  # tile start → entity → row
        self.free: list[int] = []
        self.used = 0  # rows ever handed out (the free ones included)
        self.start_of = np.zeros(0, dtype=np.int64)  # row → its tile start

    def rows(self, ents: Array, starts: Array) -> Array:
        """The row of each (entity, tile start); tiles not seen yet get empty rows."""
        out = np.empty(len(ents), dtype=np.int64)
        order = np.argsort(starts, kind="stable")
        ordered = starts[order]
        edges = np.flatnonzero(np.diff(ordered)) + 1
        for at in np.split(order, edges) if len(order) else ():
            start = int(starts[at[0]])
            bucket = self.buckets.get(start)
            if bucket is None:
                bucket = self.buckets[start] = {}
            listed = ents[at].tolist()
            found = list(map(bucket.get, listed))
            if None in found:
                unseen = (
                    listed
                    if found.count(None) == len(listed)
                    else list(compress(listed, map(is_, found, repeat(None))))
                )
                new = list(dict.fromkeys(unseen))
                taken = self._take(len(new), start).tolist()
                bucket.update(zip(new, taken, strict=True))
                # Each event a new, distinct tile (the usual case): rows in the events' order.
                if len(new) < len(listed):
                    taken = list(map(bucket.__getitem__, listed))
                found = taken
            out[at] = found
        return out

    def _take(self, count: int, start: int) -> Array:
        """`count` empty rows for tiles starting at `start` (freed rows first)."""
        reuse = min(count, len(self.free))
        rows = self.free[len(self.free) - reuse :]
        del self.free[len(self.free) - reuse :]
        fresh = np.arange(self.used, self.used + count - reuse, dtype=np.int64)
        self.used += count - reuse
        self.columns.ensure(self.used)
        if self.used > len(self.start_of):
            self.start_of = grown(self.start_of, self.columns.capacity, 0)
        taken = np.concatenate([np.array(rows, dtype=np.int64), fresh])
        self.start_of[taken] = start
        return taken

    def _release(self, rows: list[int]) -> None:
        if rows:
            self.columns.clear(np.array(rows, dtype=np.int64))
            self.free += rows

    def drop_before(self, cutoff: int) -> list[tuple[int, list[int]]]:
        """Drop every tile starting before `cutoff`; returns `(start, entities)` dropped."""
        dropped = []
        for start in [s for s in self.buckets if s < cutoff]:
            bucket = self.buckets.pop(start)
            self._release(list(bucket.values()))
            dropped.append((start, list(bucket)))
        return dropped

    def forget(self, ents: Iterable[int]) -> None:
        """Drop every tile of these entities (evicted: Redis still holds them)."""
        gone = set(ents)
        freed: list[int] = []
        for start in list(self.buckets):
            bucket = self.buckets[start]
            if len(gone) < len(bucket):
                hits = [e for e in gone if e in bucket]
            else:
                hits = [e for e in bucket if e in gone]
            for ent in hits:
                freed.append(bucket.pop(ent))
            if not bucket:
                del self.buckets[start]
        self._release(freed)

    def tiles_of(self, ent: int) -> dict[int, int]:
        """Tile start → row of one entity (a scan of the starts: for rare paths)."""
        return {s: b[ent] for s, b in self.buckets.items() if ent in b}
