"""`TileSlots.rows` gives each (entity, tile start) one row of its own, batch after batch."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from features.model import Feature
from features.tiles import CompiledFeature
from pipelines.tile_slots import TileSlots

G = 60
PAIRS = st.tuples(st.integers(0, 5), st.integers(0, 3).map(lambda k: k * G))
BATCHES = st.lists(st.lists(PAIRS, max_size=12), max_size=6)


@given(BATCHES)
def test_each_entity_and_start_keeps_one_row_of_its_own(
    batches: list[list[tuple[int, int]]],
) -> None:
    slots = TileSlots(G, [CompiledFeature.of(Feature("n", "count", None, G, G))], {})
    seen: dict[tuple[int, int], int] = {}  # the brute force: a row per pair, once given
    for batch in batches:
        ents = np.array([e for e, _ in batch], dtype=np.int64)
        starts = np.array([s for _, s in batch], dtype=np.int64)
        rows = slots.rows(ents, starts).tolist()
        for pair, row in zip(batch, rows, strict=True):
            assert seen.setdefault(pair, row) == row
            assert slots.start_of[row] == pair[1]
    assert len(set(seen.values())) == len(seen)
