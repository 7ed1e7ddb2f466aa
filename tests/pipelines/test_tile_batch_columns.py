"""`batch_of` joins its inputs' columns and `objects` builds an object column with a
C-level pass (`np.fromiter`): the result is what an event-by-event build gives, whatever
the values (nested lists and tuples, arrays, nulls, missing columns)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.schema import Event
from pipelines.records import TileInput
from pipelines.tile_batches import Batch, batch_of, objects
from tests.pipelines.tile_entries import entries_of

COLUMNS = ["a", "b", "c"]
LEAVES = st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=3))
VALUES = st.one_of(
    LEAVES,
    st.lists(LEAVES, max_size=3),
    st.tuples(LEAVES, LEAVES),
    st.lists(st.lists(st.integers(0, 3), min_size=2, max_size=2), max_size=2),
    st.lists(st.integers(0, 9), min_size=2, max_size=2).map(np.array),
)
ROWS = st.dictionaries(st.sampled_from(COLUMNS), VALUES, max_size=3)
ENTRIES = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        st.integers(0, 2**62),
        ROWS,
        st.tuples(st.integers(0, 2**62), st.integers(0, 2**20)),
    ),
    min_size=1,
    max_size=6,
)
PARTS = st.lists(
    st.tuples(st.sampled_from(["p0", "p1", "p2"]), st.integers(0, 7), ENTRIES),
    min_size=1,
    max_size=4,
)


def _plain(values: list[Any]) -> np.ndarray[Any, Any]:
    """An object array set item by item: no item is ever looked into."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _same(got: np.ndarray[Any, Any], want: list[Any]) -> None:
    assert got.dtype == object
    assert got.shape == (len(want),)
    assert all(g is w for g, w in zip(got.tolist(), want, strict=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUES, max_size=5))
def test_objects_holds_each_value_as_it_is(values: list[Any]) -> None:
    _same(objects(values), values)
    _same(objects(tuple(values)), values)
    _same(_plain(values), values)


@settings(max_examples=200, deadline=None)
@given(PARTS)
def test_batch_of_gives_the_columns_built_event_by_event(
    raw: list[tuple[str, int, list[tuple[str, int, dict[str, Any], tuple[int, int]]]]],
) -> None:
    parts = []
    for part, shard, found in raw:
        entries = entries_of(
            (
                (eid, (eid,), Event(i, ts, f"e{i}", (eid,), row, {}, None), position)
                for i, (eid, ts, row, position) in enumerate(found)
            ),
            COLUMNS,
        )
        parts.append((TileInput(shard, part, [(("v",), entries)]), entries))
    batch = batch_of(parts, COLUMNS)
    want = _by_event(raw)
    assert batch.streams == want.streams
    for name in ("stream", "shard", "ts", "major", "minor"):
        got, expected = getattr(batch, name), getattr(want, name)
        assert got.dtype == np.int64
        assert got.tolist() == expected.tolist(), name
    assert batch.eids == want.eids
    assert batch.keys == want.keys
    assert batch.event_ids.dtype == object
    assert batch.event_ids.tolist() == want.event_ids.tolist()
    assert list(batch.values) == COLUMNS
    for column in COLUMNS:
        _same(batch.values[column], want.values[column].tolist())


def _by_event(
    raw: list[tuple[str, int, list[tuple[str, int, dict[str, Any], tuple[int, int]]]]],
) -> Batch:
    """`batch_of`, one event at a time, from the drawn events themselves."""
    streams: list[str] = []
    stream, shard, eids, keys, ts, event_ids, major, minor = ([] for _ in range(8))
    values: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for part, number, found in raw:
        if part not in streams:
            streams.append(part)
        for i, (eid, time, row, (high, low)) in enumerate(found):
            stream.append(streams.index(part))
            shard.append(number)
            eids.append(eid)
            keys.append((eid,))
            ts.append(time)
            event_ids.append(f"e{i}")
            major.append(high)
            minor.append(low)
            for c in COLUMNS:
                values[c].append(row[c] if c in row else None)
    ints = lambda xs: np.array(xs, dtype=np.int64)  # noqa: E731
    return Batch(
        streams, ints(stream), ints(shard), eids, keys, ints(ts), _plain(event_ids),
        {c: _plain(v) for c, v in values.items()}, ints(major), ints(minor),
    )  # fmt: skip
