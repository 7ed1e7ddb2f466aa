"""`TileSlots` puts the tiles it makes into their start's dict lazily (`_made`): lookups of
late events, drops, forgets and `tiles_of` give what an eager dict gives, in the same
order, when they meet tiles not yet put in. `stable_order` is a stable argsort."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.model import Feature
from features.tiles import CompiledFeature
from pipelines.tile_batches import stable_order
from pipelines.tile_slots import TileSlots
from tests.pipelines.test_tile_slots import _plain_rows

G = 60
PAIRS = st.tuples(st.integers(0, 9), st.integers(0, 6).map(lambda k: k * G))
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("rows"), st.lists(PAIRS, max_size=40)),
        st.tuples(st.just("drop"), st.integers(0, 7).map(lambda k: k * G)),
        st.tuples(st.just("forget"), st.sets(st.integers(0, 9), max_size=4)),
        st.tuples(st.just("tiles_of"), st.integers(0, 9)),
    ),
    max_size=14,
)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_lazy_buckets_answer_as_eager_ones(steps: list[tuple[str, Any]]) -> None:
    """Only the answers are compared until the end (reading `buckets` puts every tile in,
    so a step-by-step comparison would never leave a tile pending)."""
    features = [CompiledFeature.of(Feature("n", "count", None, G, G))]
    lazy, eager = TileSlots(G, features, {}), TileSlots(G, features, {})
    for kind, arg in steps:
        if kind == "rows":
            ents = np.array([e for e, _ in arg], dtype=np.int64)
            starts = np.array([s for _, s in arg], dtype=np.int64)
            assert lazy.rows(ents, starts).tolist() == _plain_rows(eager, ents, starts)
        elif kind == "drop":
            assert lazy.drop_before(arg) == eager.drop_before(arg)
        elif kind == "forget":
            lazy.forget(arg)
            eager.forget(arg)
        else:
            assert lazy.tiles_of(arg) == eager.tiles_of(arg)
        assert lazy.free == eager.free
    assert [(s, list(b.items())) for s, b in lazy.buckets.items()] == [
        (s, list(b.items())) for s, b in eager.buckets.items()
    ]


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
