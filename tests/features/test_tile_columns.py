"""`features.tile_columns.TileColumns` held equal to the per-event fold of `ViewTiler`.

Every partial state must equal `ViewTiler`'s exactly (`==`, floats included: both update
each state in arrival order) whatever the batch split, after reloading states, through
the JSON encoding, after rows are cleared and reused, and for int sums beyond int64.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.aggregations import Stddev
from features.model import Feature, FeatureView
from features.tile_columns import TileColumns
from features.tiles import CompiledFeature, EntityTiles, TileKey, ViewTiler, tile_start
from tests.features.bruteforce import Event
from tests.features.strategies import S_VALUES, X_VALUES, Scenario, event_sets, scenarios

# Hypothesis shrinks a failure for up to 300 s: the 300 s default timeout would hide it.
pytestmark = pytest.mark.timeout(600)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LATER = 2**62  # a writer clock after every drawn time: no event stays pending
SPREADS = st.sampled_from((1, 1, 97, 500))
# Strings JSON must escape, or that its text uses as separators.
JSON_TEXT = st.one_of(st.none(), st.text(alphabet='a,"\\:]}\n\x00é😀', max_size=4))
Array = npt.NDArray[Any]
Batch = tuple[Array, Array, dict[str, Array]]
SEVENTHS = st.integers(-(10**6), 10**6).map(lambda i: i / 7)  # floats whose sums round
# Int column values whose sums leave int64 after two or three events.
BIG_INTS = st.one_of(st.none(), st.integers(2**62, 2**63 - 1), st.just(-(2**63)))


@st.composite
def typed_events(
    draw: st.DrawFn,
    scenario: Scenario,
    min_size: int = 0,
    x_values: st.SearchStrategy[Any] | None = None,
) -> tuple[dict[str, str], list[Event]]:
    """`event_sets` with `x` drawn as an int or a float column (or from `x_values`, as an int
    column) and `s` from `S_VALUES` or `JSON_TEXT`; and the dtypes of `x` and `s`."""
    float_x = x_values is None and draw(st.booleans())
    if x_values is None:
        x_values = st.one_of(X_VALUES[1], SEVENTHS) if float_x else X_VALUES[0]
    events = draw(event_sets(scenario, min_size=min_size))
    n = len(events)
    xs = draw(st.lists(x_values, min_size=n, max_size=n))
    ss = draw(st.lists(draw(st.sampled_from((S_VALUES, JSON_TEXT))), min_size=n, max_size=n))
    typed = [Event(e.ts, e.eid, {"x": x, "s": s}) for e, x, s in zip(events, xs, ss, strict=True)]
    return {"x": "float" if float_x else "int", "s": "string"}, typed


@st.composite
def batches(draw: st.DrawFn, events: list[Event]) -> list[list[Event]]:
    """`events` cut into consecutive batches (empty ones included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=4)))
    return [events[a:b] for a, b in pairwise([0, *cuts, len(events)])]


def rows_array(rows: Iterable[int]) -> Array:
    return np.fromiter(rows, dtype=np.int64)


def arrays(events: Sequence[Event], columns: Sequence[str] = ("x", "s")) -> Batch:
    """The `fold` arguments of a batch: times, event ids, and object arrays per column."""
    values = {c: np.fromiter((e.row.get(c) for e in events), object) for c in columns}
    return rows_array(e.ts for e in events), np.fromiter((e.eid for e in events), object), values


class Columns:
    """One `TileColumns` per tile size of a view, and the row of each tile `(g, start)`: a
    cleared row, else `spread` rows after the last (> 1: gaps, and columns past 1024 rows)."""

    def __init__(self, view: FeatureView, dtypes: dict[str, str], spread: int = 1) -> None:
        by_g: dict[int, list[CompiledFeature]] = {}
        for f in view.features:
            by_g.setdefault(f.granularity, []).append(CompiledFeature.of(f))
        self.sizes = {g: TileColumns(fs, dtypes) for g, fs in by_g.items()}
        self.rows: dict[int, dict[int, int]] = {g: {} for g in by_g}
        self.free: dict[int, list[int]] = {g: [] for g in by_g}
        self.spread = spread

    def fold(self, events: Sequence[Event], only_touching: bool = False) -> None:
        """Fold `events` as one batch into every size (all of them, or those `touches`)."""
        ts, eids, values = arrays(events)
        for g, cols in self.sizes.items():
            keep = cols.touches(values) if only_touching else np.ones(len(ts), dtype=bool)
            rows, free = self.rows[g], self.free[g]
            at = []
            for t in ts[keep].tolist():
                start = tile_start(t, g)
                if start not in rows:
                    rows[start] = free.pop() if free else (len(rows) + len(free)) * self.spread
                at.append(rows[start])
            used = (len(rows) + len(free) - 1) * self.spread + 1
            cols.ensure(used)
            assert cols.capacity >= used
            cols.fold(rows_array(at), ts[keep], eids[keep], {c: v[keep] for c, v in values.items()})

    def drop(self, keys: Iterable[TileKey]) -> None:
        """Clear the rows of these tiles and keep them for new tiles."""
        for g, start in keys:
            row = self.rows[g].pop(start)
            self.sizes[g].clear(rows_array([row]))
            self.free[g].append(row)

    def tiles(self, empty: bool = True) -> dict[TileKey, dict[str, Any]]:
        """The state of every tile given a row (with `empty`, also those that hold none)."""
        out: dict[TileKey, dict[str, Any]] = {}
        for g, cols in self.sizes.items():
            states = cols.states(rows_array(self.rows[g].values()))
            out.update(zip(((g, s) for s in self.rows[g]), states, strict=True))
        return out if empty else {k: v for k, v in out.items() if v}


def apply_all(
    view: FeatureView, events: Iterable[Event], state: EntityTiles | None = None
) -> tuple[EntityTiles, list[set[TileKey]]]:
    """The reference: `ViewTiler` applying each event in order; the tiles each one changed."""
    tiler, state = ViewTiler(view), EntityTiles() if state is None else state
    return state, [tiler.apply(state, e.ts, e.eid, e.row, now=LATER) for e in events]


@settings(PROPERTY, max_examples=150)
@given(data=st.data())
def test_batches_fold_as_view_tiler_applies_each_event(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    dtypes, events = data.draw(typed_events(scenario))
    state, changed = apply_all(scenario.view, events)
    only_touching = data.draw(st.booleans())
    columns = Columns(scenario.view, dtypes, data.draw(SPREADS))
    for batch in data.draw(batches(events)):
        columns.fold(batch, only_touching)
    # Events that touch no feature of a size create no tile there and change nothing.
    assert columns.tiles(empty=False) == state.tiles
    if only_touching:
        assert columns.tiles().keys() == state.tiles.keys()
    values = arrays(events)[2]
    for g, cols in columns.sizes.items():
        every_row = cols.states(np.arange(cols.capacity, dtype=np.int64))
        assert {r for r, tile in enumerate(every_row) if tile} <= set(columns.rows[g].values())
        expected = [(g, tile_start(e.ts, g)) in changed[i] for i, e in enumerate(events)]
        assert cols.touches(values).tolist() == expected


@PROPERTY
@given(data=st.data())
def test_fold_a_prefix_reload_its_states_and_fold_the_rest(data: st.DataObject) -> None:
    """The states loaded are the columns' own, or `ViewTiler`'s as decoded from Redis."""
    scenario = data.draw(scenarios())
    dtypes, events = data.draw(typed_events(scenario))
    cut, spread = data.draw(st.integers(0, len(events))), data.draw(SPREADS)
    whole, first, second = (Columns(scenario.view, dtypes, spread) for _ in range(3))
    whole.fold(events)
    first.fold(events[:cut])
    second.fold(events[::-1])  # its rows hold other tiles: `load` must replace them
    prefix, own = apply_all(scenario.view, events[:cut])[0].tiles, first.tiles()
    for g, cols in second.sizes.items():
        # Every row `whole` uses: the prefix's tiles, and empty ones for the tiles to come.
        starts = data.draw(st.permutations(list(whole.rows[g])))
        if data.draw(st.booleans(), label="from Redis"):
            loaded = [orjson.loads(orjson.dumps(prefix.get((g, s), {}))) for s in starts]
        else:
            loaded = [own.get((g, s), {}) for s in starts]
        cols.load(rows_array(whole.rows[g][s] for s in starts), loaded)
        second.rows[g] = dict(first.rows[g])
    assert second.tiles() == first.tiles()
    second.fold(events[cut:])
    assert second.tiles() == whole.tiles()


@PROPERTY
@given(data=st.data())
def test_encode_gives_the_json_text_of_states(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    dtypes, events = data.draw(typed_events(scenario))
    columns = Columns(scenario.view, dtypes)
    for batch in data.draw(batches(events)):
        columns.fold(batch)
    for g, cols in columns.sizes.items():
        used = len(columns.rows[g])
        cols.ensure(used + 1)  # row `used` is an empty tile
        rows = rows_array(data.draw(st.lists(st.integers(0, used), max_size=2 * used + 2)))
        encoded = cols.encode(rows)
        assert pa.types.is_binary(encoded.type) or pa.types.is_large_binary(encoded.type)
        states = cols.states(rows)
        assert [orjson.loads(text) for text in encoded.to_pylist()] == states
        # Plain JSON values, as ViewTiler holds them (no numpy scalars).
        assert orjson.loads(orjson.dumps(states)) == states


@PROPERTY
@given(data=st.data())
def test_cleared_rows_are_empty_and_fold_as_fresh_tiles(data: st.DataObject) -> None:
    """Clearing the rows of some tiles is `ViewTiler` dropping them; new tiles reuse the rows."""
    scenario = data.draw(scenarios())
    dtypes, events = data.draw(typed_events(scenario, min_size=1))
    cut = data.draw(st.integers(1, len(events)))
    columns = Columns(scenario.view, dtypes)
    columns.fold(events[:cut])
    state = apply_all(scenario.view, events[:cut])[0]
    before = columns.tiles()
    dropped = data.draw(st.lists(st.sampled_from(sorted(before)), unique=True))
    columns.drop(dropped)
    for g, cols in columns.sizes.items():
        assert cols.states(rows_array(columns.free[g])) == [{}] * len(columns.free[g])
    assert columns.tiles() == {k: v for k, v in before.items() if k not in dropped}
    for key in dropped:
        state.tiles.pop(key, None)
    for batch in data.draw(batches(events[cut:])):
        columns.fold(batch)
    apply_all(scenario.view, events[cut:], state)
    assert columns.tiles(empty=False) == state.tiles


@PROPERTY
@given(data=st.data())
def test_int_sums_beyond_int64_are_exact(data: st.DataObject) -> None:
    functions = (("sum", "x"), ("mean", "x"), ("max", "x"), ("count", "x"))
    scenario = data.draw(scenarios(functions))
    dtypes, events = data.draw(typed_events(scenario, x_values=BIG_INTS))
    columns = Columns(scenario.view, dtypes)
    for batch in data.draw(batches(events)):
        columns.fold(batch)
    assert columns.tiles(empty=False) == apply_all(scenario.view, events)[0].tiles


def fold_tile(
    features: Sequence[Feature], batches: Sequence[list[Event]], dtype: str = "int"
) -> list[dict[str, Any]]:
    """The columns' tile [0, 10) after each batch, then `ViewTiler`'s after all events."""
    view = FeatureView("v", "user", "src", 60, tuple(features))
    columns, out = Columns(view, {"x": dtype}), []
    for batch in batches:
        columns.fold(batch)
        out.append(columns.tiles().get((10, 0), {}))
    reference = apply_all(view, [e for batch in batches for e in batch])[0]
    return [*out, reference.tiles.get((10, 0), {})]


@settings(PROPERTY, max_examples=150)
@given(xs=st.lists(st.one_of(X_VALUES[1], SEVENTHS), max_size=30), data=st.data())
def test_float_states_update_in_arrival_order(xs: list[Any], data: st.DataObject) -> None:
    """Many values in one tile: float sums and Welford's update depend on their order."""
    features = [Feature(f, f, "x", 60, 10) for f in ("sum", "mean", "stddev", "min", "max")]
    events = [Event(i % 7, i, {"x": x}) for i, x in enumerate(xs)]
    *_, tile, reference = fold_tile(features, data.draw(batches(events)), "float")
    assert tile == reference


def test_int_sum_beyond_int64_in_one_batch_and_across_two() -> None:
    big, features = 2**63 - 1, [Feature("s", "sum", "x", 60, 10), Feature("m", "mean", "x", 60, 10)]
    one, two = [Event(1, 1, {"x": big}), Event(2, 2, {"x": big})], [Event(3, 3, {"x": -1})]
    after_one, after_two, reference = fold_tile(features, [one, two])
    assert after_one == {"s": 2 * big, "m": [2, 2 * big]}
    assert after_two == {"s": 2 * big - 1, "m": [3, 2 * big - 1]} == reference


def test_encoded_int_sums_beyond_64_bits_are_written_exact() -> None:
    """A sum beyond 64 bits is written as its exact decimal (orjson refuses to write it;
    orjson readers get the nearest float, Python's `json` the exact int)."""
    view = FeatureView("v", "user", "src", 60, (Feature("s", "sum", "x", 60, 10),))
    columns = Columns(view, {"x": "int"})
    columns.fold([Event(t, t, {"x": 2**63 - 1}) for t in range(3)])
    assert columns.tiles() == {(10, 0): {"s": 3 * (2**63 - 1)}}
    [text] = columns.sizes[10].encode(rows_array([0])).to_pylist()
    assert json.loads(text) == {"s": 3 * (2**63 - 1)}
    assert orjson.loads(text) == {"s": float(3 * (2**63 - 1))}


@pytest.mark.parametrize(
    ("eids", "first", "last"),
    [
        (["b", "c", "a"], [5, "a", 3], [5, "c", 2]),
        ([9, 10, 2], [5, 2, 3], [5, 10, 2]),
        (["9", "10", "2"], [5, "10", 2], [5, "9", 1]),  # strings: "10" < "2" < "9"
    ],
)
def test_first_and_last_break_equal_times_by_event_id(
    eids: list[Any], first: list[Any], last: list[Any]
) -> None:
    features = [Feature("first", "first", "x", 60, 10), Feature("l", "last", "x", 60, 10)]
    events = [Event(5, eid, {"x": x}) for eid, x in zip(eids, (1, 2, 3), strict=True)]
    tile, reference = fold_tile(features, [events])
    assert tile == {"first": first, "l": last} == reference


def test_last_n_keeps_the_newest_first_across_batches() -> None:
    one = [Event(1, "a", {"x": 10}), Event(4, "b", {"x": 40}), Event(2, "c", {"x": 20})]
    two = [Event(3, "d", {"x": 30}), Event(5, "e", {"x": 50}), Event(0, "f", {"x": 0})]
    after_one, after_two, reference = fold_tile(
        [Feature("l3", "last_n", "x", 60, 10, 3)], [one, two]
    )
    assert after_one == {"l3": [[4, "b", 40], [2, "c", 20], [1, "a", 10]]}
    assert after_two == {"l3": [[5, "e", 50], [4, "b", 40], [3, "d", 30]]} == reference


@pytest.mark.parametrize("dtype", ["int", "float"])
def test_stddev_over_two_batches_is_view_tilers(dtype: str) -> None:
    events = [Event(i, i, {"x": x}) for i, x in enumerate([2, 4, 4, 4, 5, 5, 7, 9])]
    _, tile, reference = fold_tile(
        [Feature("sd", "stddev", "x", 60, 10)], [events[:3], events[3:]], dtype
    )
    assert tile == reference
    assert Stddev().finalize(tile["sd"]) == pytest.approx(math.sqrt(32 / 7))


def test_a_last_n_state_longer_than_n_loads_its_newest_n() -> None:
    feature = CompiledFeature.of(Feature("l", "last_n", "x", 60, 10, 2))
    columns = TileColumns([feature], {"x": "int"})
    columns.ensure(1)
    held = [[9, "c", 3], [8, "b", 2], [7, "a", 1]]  # newest first, as stored
    columns.load(rows_array([0]), [{"l": held}])
    assert columns.states(rows_array([0])) == [{"l": held[:2]}]
