"""Entity codes: a worker's views look a batch's entity ids up once between them.

Each `ViewTiles` numbers its cached entities in its own dict; with 100,000s of entities a
lookup there misses the CPU cache (~0.3-0.4 µs), and every view of a group would look up
every event. `EntityCodes` gives each id a small code once per batch, and each view maps
codes to its numbers with a numpy gather (`ViewCodes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

from features.column_states import grown
from pipelines.tile_batches import Batch

Array = np.ndarray[Any, Any]


class EntityCodes:
    """A small integer code per entity id, shared by a worker's views: a batch's ids are
    looked up once (`of`) and each view maps codes to its own entity numbers with a gather
    (`ViewCodes`), instead of each view looking every id up in its own dict.

    Codes are never reused while `generation` stays; `bound` starts afresh (a new
    generation, which makes every view rebuild its map) once the ids outgrow the cache."""

    def __init__(self, slack: int = 65536) -> None:
        """`bound` keeps up to `slack` ids more than two per cached entity."""
        self.code: dict[str, int] = {}
        self.generation = 0
        self.slack = slack

    def of(self, eids: Sequence[str]) -> Array:
        """The codes of `eids`, new ids given the next ones."""
        code = self.code
        codes = np.fromiter(map(code.get, eids, repeat(-1)), np.int64, len(eids))
        new = np.flatnonzero(codes < 0).tolist()
        if new:
            codes[new] = [code.setdefault(eids[i], len(code)) for i in new]
        return codes

    def bound(self, cached: int) -> None:
        """Start afresh when the ids coded are many more than the `cached` entities."""
        if len(self.code) > 2 * cached + self.slack:
            self.code = {}
            self.generation += 1


class ViewCodes:
    """One view's map from the worker's entity codes to its entity numbers (-1: not
    cached), kept so that `by_code[code of id]` is always `index.get(id, -1)`."""

    def __init__(self, codes: EntityCodes, index: dict[str, int]) -> None:
        """`index` is the view's own (entity id → number), which the view keeps up."""
        self.codes = codes
        self.index = index
        self.by_code = np.zeros(0, dtype=np.int32)
        self.generation = codes.generation

    def current(self) -> Array:
        """`by_code` for every code given so far, rebuilt from `index` after the codes
        started afresh."""
        codes = self.codes
        if self.generation != codes.generation:
            at = codes.of(list(self.index))
            self.by_code = np.full(max(2 * len(codes.code), 1024), -1, dtype=np.int32)
            self.by_code[at] = list(self.index.values())
            self.generation = codes.generation
        elif len(self.by_code) < len(codes.code):
            size = max(len(codes.code), 2 * len(self.by_code), 1024)
            self.by_code = grown(self.by_code, size, -1)
        return self.by_code

    def of_batch(self, batch: Batch) -> Array:
        """The codes of the batch's entity ids, which the views of its group share (worked
        out by the first of them)."""
        codes = self.codes
        found = batch.shared.get("codes")
        if found is None or found[0] is not codes or found[1] != codes.generation:
            found = batch.shared["codes"] = (codes, codes.generation, codes.of(batch.eids))
        return found[2]

    def lookup(self, batch: Batch) -> Array:
        """The numbers of the batch's entities (-1: not cached)."""
        at = self.of_batch(batch)
        return self.current()[at].astype(np.int64)

    def added(self, eids: Sequence[str], ents: Array, codes: Array | None = None) -> None:
        """Entities just put in `index`, numbered `ents` there; `codes`, if given, are their
        codes (`of_batch` since the codes last started afresh), else looked up."""
        at = self.codes.of(eids) if codes is None else codes
        self.current()[at] = ents  # `current` after `of`: new codes grow the map it gives

    def forgotten(self, eids: list[str]) -> None:
        """Entities just taken out of `index`: each has a code (`added`), unless the codes
        started afresh since, when the next `current` rebuilds the map anyway."""
        if self.generation == self.codes.generation:
            self.by_code[list(map(self.codes.code.__getitem__, eids))] = -1
