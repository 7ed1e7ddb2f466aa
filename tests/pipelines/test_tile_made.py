"""`TileSlots.rows` makes the tiles past each entity's newest without a lookup: the rows,
buckets (their order too) and free rows are those the plain lookup gives, with many events
of one tile in a batch, late events before an entity's newest tile, drops and forgets."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.model import Feature
from features.tiles import CompiledFeature
from pipelines.tile_slots import NO_TILE, TileSlots

G = 60
PAIRS = st.tuples(st.integers(0, 9), st.integers(0, 6).map(lambda k: k * G))
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("rows"), st.lists(PAIRS, max_size=40)),
        st.tuples(st.just("drop"), st.integers(0, 6).map(lambda k: k * G)),
        st.tuples(st.just("forget"), st.sets(st.integers(0, 9), max_size=4)),
    ),
    max_size=12,
)


def _plain_rows(slots: TileSlots, ents: np.ndarray[Any, Any], starts: Any) -> list[int]:
    if len(ents):
        slots._room(ents)
    rows: list[int] = slots._lookup(ents, starts).tolist()
    return rows


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_made_tiles_are_those_the_plain_lookup_gives(steps: list[tuple[str, Any]]) -> None:
    features = [CompiledFeature.of(Feature("n", "count", None, G, G))]
    fast, plain = TileSlots(G, features, {}), TileSlots(G, features, {})
    for kind, arg in steps:
        if kind == "rows":
            ents = np.array([e for e, _ in arg], dtype=np.int64)
            starts = np.array([s for _, s in arg], dtype=np.int64)
            assert fast.rows(ents, starts).tolist() == _plain_rows(plain, ents, starts)
        elif kind == "drop":
            assert fast.drop_before(arg) == plain.drop_before(arg)
        else:
            fast.forget(arg)
            plain.forget(arg)
        assert [(s, list(b.items())) for s, b in fast.buckets.items()] == [
            (s, list(b.items())) for s, b in plain.buckets.items()
        ]
        assert fast.free == plain.free
        assert fast.start_of[: fast.used].tolist() == plain.start_of[: plain.used].tolist()
        # What `rows` rests on: each entity's remembered tile is its newest held.
        newest: dict[int, int] = {}
        for start, bucket in fast.buckets.items():
            for ent in bucket:
                newest[ent] = max(newest.get(ent, NO_TILE), start)
        for ent in range(len(fast.last_start)):
            assert int(fast.last_start[ent]) == newest.get(ent, NO_TILE)
            if ent in newest:
                assert fast.buckets[newest[ent]][ent] == fast.last_row[ent]
