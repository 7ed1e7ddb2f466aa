"""`EntityBytes` holds what a plain dict of entity number → bytes holds, through any
sequence of puts (reused numbers included) and drops, compactions included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.sinks.redis_tiles import EntityBytes

ENTS = st.lists(st.integers(0, 40), max_size=12, unique=True)
VALUES = st.binary(max_size=6)
OPS = st.lists(
    st.tuples(st.booleans(), ENTS, st.lists(VALUES, min_size=12, max_size=12)), max_size=30
)


@settings(max_examples=200, deadline=None)
@given(OPS, st.sampled_from([0, 2, 1024]))
def test_entity_bytes_hold_what_a_dict_holds(
    ops: list[tuple[bool, list[int], list[bytes]]], slack: int
) -> None:
    store = EntityBytes()
    store.slack = slack
    model: dict[int, bytes] = {}
    for put, ents, values in ops:
        at = np.array(ents, np.int64)
        if put:
            store.put(at, values[: len(ents)])
            model.update(zip(ents, values, strict=False))
        else:
            store.drop(at)
            for e in ents:
                model.pop(e, None)
        held = sorted(model)
        assert store.live == len(model)
        assert store.count - store.live <= max(store.live, slack)  # garbage is bounded
        order = np.array(held[::-1] + held, np.int64)
        assert store.take(order).to_pylist() == [model[e] for e in order.tolist()]


def test_taken_values_outlive_later_writes() -> None:
    store = EntityBytes()
    store.put(np.array([0]), [b"old"])
    taken = store.take(np.array([0]))
    store.put(np.array([0]), [b"new"])
    store.drop(np.array([0]))
    store.put(np.arange(5000), [b"x%d" % i for i in range(5000)])
    assert taken.to_pylist() == [b"old"]
