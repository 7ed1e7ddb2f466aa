"""`TileColumns.fold` given the presence masks worked out once per batch (`presence`, shared
by a group's views and sizes, sliced as `TileSlots.taken` slices them) folds as `ViewTiler`:
a column with a value for every event is folded whole, the others only where present."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from features.tile_columns import presence
from features.tiles import tile_start
from tests.features.bruteforce import Event
from tests.features.strategies import scenarios
from tests.features.test_tile_columns import (
    PROPERTY,
    Columns,
    apply_all,
    arrays,
    batches,
    rows_array,
    typed_events,
)


class SharedColumns(Columns):
    """`Columns` folding each batch with masks made once for all sizes, then sliced."""

    def fold(self, events: Sequence[Event], only_touching: bool = False) -> None:
        ts, eids, values = arrays(events)
        known = presence(values, list(values))
        for g, cols in self.sizes.items():
            keep = np.flatnonzero(cols.touches(values, len(ts), known))
            rows, free = self.rows[g], self.free[g]
            at = []
            for t in ts[keep].tolist():
                start = tile_start(t, g)
                if start not in rows:
                    rows[start] = free.pop() if free else len(rows) + len(free)
                at.append(rows[start])
            cols.ensure(len(rows) + len(free))
            picked = {c: v[keep] for c, v in values.items()}
            masks = {c: m[keep] for c, m in known.items()}
            cols.fold(rows_array(at), ts[keep], eids[keep], picked, masks)


@PROPERTY
@given(data=st.data())
def test_folds_with_shared_presence_masks_are_view_tilers(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    dtypes, events = data.draw(typed_events(scenario))
    state, _ = apply_all(scenario.view, events)
    columns = SharedColumns(scenario.view, dtypes)
    for batch in data.draw(batches(events)):
        columns.fold(batch)
    assert columns.tiles(empty=False) == state.tiles
