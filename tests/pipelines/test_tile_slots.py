"""`TileSlots.rows` gives each (entity, tile start) one row of its own, batch after batch."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
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


def _plain(slots: TileSlots) -> TileSlots:
    """`slots` with every event looked up in the buckets (no remembered tiles)."""

    def rows(ents: np.ndarray[Any, Any], starts: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if len(ents):
            slots._room(ents)
        return slots._lookup(ents, starts)

    slots.rows = rows  # type: ignore[method-assign]
    return slots


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("rows"), st.lists(PAIRS, max_size=12)),
        st.tuples(st.just("drop"), st.integers(0, 4).map(lambda k: k * G)),
        st.tuples(st.just("forget"), st.sets(st.integers(0, 5), max_size=3)),
    ),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_remembered_tiles_give_the_rows_the_buckets_give(
    steps: list[tuple[str, Any]],
) -> None:
    """Rows found through each entity's remembered tile are those of the plain lookup, the
    same rows handed out in the same order, through drops and forgotten entities."""
    features = [CompiledFeature.of(Feature("n", "count", None, G, G))]
    fast, plain = TileSlots(G, features, {}), _plain(TileSlots(G, features, {}))
    for kind, arg in steps:
        if kind == "rows":
            ents = np.array([e for e, _ in arg], dtype=np.int64)
            starts = np.array([s for _, s in arg], dtype=np.int64)
            assert fast.rows(ents, starts).tolist() == plain.rows(ents, starts).tolist()
        elif kind == "drop":
            assert fast.drop_before(arg) == plain.drop_before(arg)
        else:
            fast.forget(arg)
            plain.forget(arg)
        assert fast.buckets == plain.buckets
        assert fast.free == plain.free
