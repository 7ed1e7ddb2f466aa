"""Tile states as numpy columns: `ViewTiler`'s fold re-expressed a batch at a time (SPEC §4).

The stream folds every accepted event into ~3 views and ~5 tiles; done event by event in
Python that fold alone costs more than 20 µs per event (`bench/floor.py`). `TileColumns`
holds the partial states of one view's features of one tile size, one row per tile, and
folds a whole batch with a few numpy operations per feature. The states it gives back are
those of `features.aggregations` folded in arrival order: sums add in the same order,
ordered functions order by `(ts, eid)`, Welford's update runs once per event. Property
tests hold it equal to `ViewTiler` (tests/features/test_tile_columns.py).

>>> from features.model import Feature
>>> from features.tiles import CompiledFeature
>>> cols = TileColumns([CompiledFeature.of(Feature("n", "count", None, 60, 60))], {})
>>> cols.ensure(2)
>>> cols.fold(np.array([0, 0, 1]), np.array([1, 2, 70]), np.array(["a", "b", "c"], object), {})
>>> cols.states(np.array([0, 1]))
[{'n': 2}, {'n': 1}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from features.column_states import feature_columns
from features.json_columns import Picked, Piece, concat, join_present
from features.state_texts import state_pieces
from features.tiles import CompiledFeature

Array = np.ndarray[Any, Any]


def presence(values: Mapping[str, Array], columns: Sequence[str]) -> dict[str, Array]:
    """Per column of `columns`, which of its values are not None (null)."""
    return {c: values[c] != None for c in columns}  # noqa: E711 - elementwise on objects


class TileColumns:
    """The partial states of one view's features of one tile size, one row per tile."""

    def __init__(self, features: Sequence[CompiledFeature], dtypes: Mapping[str, str]) -> None:
        self.features = [feature_columns(f, dtypes.get(f.column or "")) for f in features]
        self.columns = tuple(dict.fromkeys(f.column for f in features if f.column))
        self.always = any(f.column is None for f in features)
        self.names = [(f, orjson.dumps(f.name) + b":") for f in self.features]
        self.capacity = 0

    def ensure(self, rows: int) -> None:
        """Make room for at least `rows` rows (new rows are empty tiles)."""
        if rows <= self.capacity:
            return
        capacity = max(rows, 2 * self.capacity, 1024)
        for feature in self.features:
            feature.grow(capacity)
        self.capacity = capacity

    def clear(self, rows: Array) -> None:
        """Empty the given rows, for reuse by other tiles."""
        for feature in self.features:
            feature.clear(rows)

    def touches(
        self,
        values: Mapping[str, Array],
        size: int | None = None,
        present: Mapping[str, Array] | None = None,
    ) -> Array:
        """Which events create or change a tile of this size: a feature of it gets a value.

        `size` is the number of events (needed only when `values` is empty); `present`, per
        column, which values are not None (`presence`), if worked out already.
        """
        if size is None:
            size = len(next(iter(values.values()))) if values else 0
        if self.always or not self.columns:
            return np.ones(size, dtype=bool)
        if present is None:
            present = presence(values, self.columns)
        out = np.zeros(size, dtype=bool)
        for column in self.columns:
            out |= present[column]
        return out

    def fold(
        self,
        rows: Array,
        ts: Array,
        eids: Array,
        values: Mapping[str, Array],
        present: Mapping[str, Array] | None = None,
    ) -> None:
        """Fold a batch of events, in arrival order, into the rows of their tiles (`present`:
        as `touches` takes it). A column with a value for every event is folded whole."""
        if present is None:
            present = presence(values, self.columns)
        picked: dict[str, tuple[Array, Array, Array, Array]] = {}
        for feature in self.features:
            column = feature.column
            if column is None:
                feature.fold(rows, ts, eids, np.ones(len(rows), dtype=bool))
                continue
            if column not in picked:
                at = np.flatnonzero(present[column])
                whole = len(at) == len(rows)
                picked[column] = (
                    (rows, ts, eids, values[column])
                    if whole
                    else (rows[at], ts[at], eids[at], values[column][at])
                )
            feature.fold(*picked[column])

    def states(self, rows: Array) -> list[dict[str, Any]]:
        """Each row's tile as `ViewTiler` holds it: `{feature: state}` of the features with one."""
        out: list[dict[str, Any]] = [{} for _ in range(len(rows))]
        for feature in self.features:
            held = feature.n[rows] > 0
            for i in np.flatnonzero(held).tolist():
                out[i][feature.name] = feature.state(int(rows[i]))
        return out

    def load(self, rows: Array, tiles: Sequence[Mapping[str, Any]]) -> None:
        """Set rows to tile dicts (states as `features.aggregations` defines them)."""
        self.clear(rows)
        by_name = {f.name: f for f in self.features}
        for row, tile in zip(rows.tolist(), tiles, strict=True):
            for name, state in tile.items():
                feature = by_name.get(name)
                if feature is not None:
                    feature.load(row, state)

    def encode(self, rows: Array) -> pa.Array:
        """Each row's tile as JSON text (what `orjson.dumps(states)` gives, key order aside)."""
        return concat(*self.pieces(rows))

    def pieces(self, rows: Array) -> list[Piece | Picked]:
        """The pieces whose row-wise concatenation is `encode(rows)`, for a caller to join
        with its own parts in one pass (every join copies every row's bytes once).

        Features every row holds are pieces of their own; the others are joined where held.
        """
        always: list[Piece | Picked] = []
        some = []
        none = pa.scalar(None, pa.binary())
        for feature, label in self.names:
            held = feature.n[rows] > 0
            if held.all():
                always += [b"," if always else b"{", label, *state_pieces(feature, rows)]
            elif held.any():
                text = concat(label, *state_pieces(feature, rows))
                some.append(pc.if_else(pa.array(held), text, none))
        if not always and not some:
            return [pa.array([b"{}"] * len(rows), pa.binary())]
        if not some:
            return [*always, b"}"]
        rest = join_present(some, b",")
        if not always:
            return [b"{", rest, b"}"]
        # `rest` is "" where a row holds none of the other features: no comma then.
        comma = pc.if_else(pc.equal(pc.binary_length(rest), 0), b"", b",")
        return [*always, comma, rest, b"}"]
