"""`TileSlots.rows` gives each (entity, tile start) one row of its own, batch after batch;
it makes the tiles past each entity's newest without a lookup, and the rows, buckets (their
order too) and free rows are those a plain lookup of every event gives, with many events of
one tile in a batch, late events before an entity's newest tile, drops and forgets."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import is_
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.model import Feature
from features.tiles import CompiledFeature
from pipelines.tile_slots import NO_TILE, TileSlots

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


WIDE_PAIRS = st.tuples(st.integers(0, 9), st.integers(0, 6).map(lambda k: k * G))
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("rows"), st.lists(WIDE_PAIRS, max_size=40)),
        st.tuples(st.just("drop"), st.integers(0, 6).map(lambda k: k * G)),
        st.tuples(st.just("forget"), st.sets(st.integers(0, 9), max_size=4)),
        st.tuples(st.just("tiles_of"), st.integers(0, 9)),
    ),
    max_size=14,
)


def _plain_rows(slots: TileSlots, ents: np.ndarray[Any, Any], starts: Any) -> list[int]:
    """`rows` with every event looked up in the buckets, the reference: tiles not found get
    rows by start, then by first event; each entity's newest tile met is remembered."""
    if not len(ents):
        return []
    slots._room(ents)
    out = np.empty(len(ents), dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    edges = np.flatnonzero(np.diff(starts[order])) + 1
    # Ascending starts: an entity's newest tile here is remembered last.
    for at in np.split(order, edges):
        start = int(starts[at[0]])
        bucket = slots.buckets.setdefault(start, {})
        listed = ents[at].tolist()
        found: Sequence[Any] = list(map(bucket.get, listed))
        if None in found:
            unseen = list(compress(listed, map(is_, found, repeat(None))))
            new = list(dict.fromkeys(unseen))
            bucket.update(zip(new, slots._take(len(new), start), strict=True))
            found = list(map(bucket.__getitem__, listed))
        out[at] = found
        owners = ents[at]
        newer = slots.last_start[owners] < start
        slots.last_start[owners[newer]] = start
        slots.last_row[owners[newer]] = out[at[newer]]
    return list(out.tolist())


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_made_tiles_are_those_the_plain_lookup_gives(steps: list[tuple[str, Any]]) -> None:
    """Step by step the answers, free rows and starts agree; the buckets (their order too)
    only at the end: reading `buckets` puts every tile made into its start's dict, so a
    comparison at every step would never leave one waiting (`TileSlots._made`)."""
    features = [CompiledFeature.of(Feature("n", "count", None, G, G))]
    fast, plain = TileSlots(G, features, {}), TileSlots(G, features, {})
    for kind, arg in steps:
        if kind == "rows":
            ents = np.array([e for e, _ in arg], dtype=np.int64)
            starts = np.array([s for _, s in arg], dtype=np.int64)
            assert fast.rows(ents, starts).tolist() == _plain_rows(plain, ents, starts)
        elif kind == "drop":
            assert fast.drop_before(arg) == plain.drop_before(arg)
        elif kind == "forget":
            fast.forget(arg)
            plain.forget(arg)
        else:
            assert fast.tiles_of(arg) == plain.tiles_of(arg)
        assert fast.free == plain.free
        assert fast.start_of[: fast.used].tolist() == plain.start_of[: plain.used].tolist()
        # What `rows` rests on: each entity's remembered tile is its newest held (the
        # plain slots' buckets tell which: reading them leaves the fast ones lazy).
        newest: dict[int, int] = {}
        for start, bucket in plain.buckets.items():
            for ent in bucket:
                newest[ent] = max(newest.get(ent, NO_TILE), start)
        for ent in range(len(fast.last_start)):
            assert int(fast.last_start[ent]) == newest.get(ent, NO_TILE)
            if ent in newest:
                assert plain.buckets[newest[ent]][ent] == fast.last_row[ent]
    assert [(s, list(b.items())) for s, b in fast.buckets.items()] == [
        (s, list(b.items())) for s, b in plain.buckets.items()
    ]
