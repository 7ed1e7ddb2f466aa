"""`TileSlots` puts the tiles it makes into their start's dict lazily (`_made`; the
property test against a plain lookup is in test_tile_slots.py); `stable_order` is a
stable argsort; `_distinct` tells repeats."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.model import Feature
from features.packed_sort import stable_order
from features.tiles import CompiledFeature
from pipelines.tile_slots import TileSlots

G = 60


def test_tiles_made_wait_outside_the_dicts_until_read() -> None:
    slots = TileSlots(G, [CompiledFeature.of(Feature("n", "count", None, G, G))], {})
    slots.rows(np.array([1, 2, 1]), np.array([G, G, 2 * G]))
    assert slots._buckets == {G: {}, 2 * G: {}}  # made, not put in yet
    assert slots.rows(np.array([1]), np.array([G])).tolist() == [0]  # late: looked up
    assert slots._buckets[G] == {1: 0, 2: 1}
    assert slots.drop_before(3 * G) == [(G, [1, 2]), (2 * G, [1])]


INTS = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(st.integers(0, 5), max_size=60),
        st.lists(st.integers(-(2**40), 2**40), max_size=60),
        st.lists(st.sampled_from([-(2**63), 0, 2**61, 2**62, 2**63 - 1]), max_size=20),
        st.lists(INTS, max_size=20),
    )
)
def test_stable_order_is_a_stable_argsort(values: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    assert stable_order(array).tolist() == np.argsort(array, kind="stable").tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=40))
def test_distinct_tells_repeats(ents: list[int]) -> None:
    """`_distinct` lets `_make` skip finding each entity's newest tile made when none repeats."""
    slots = TileSlots(G, [CompiledFeature.of(Feature("n", "count", None, G, G))], {})
    slots._room(np.array([30]))
    assert slots._distinct(np.array(ents, dtype=np.int64)) == (len(set(ents)) == len(ents))
