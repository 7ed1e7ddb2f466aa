"""Tile math and the writer's operations on `EntityTiles` (features.tiles), SPEC §4.

`fold_pending` and `prune` are housekeeping: they must never change a value the state
can answer exactly (`T >= folded_until`, and for `prune(now)` also `T >= now`).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.durations import parse_duration
from features.model import Feature, FeatureView
from features.tiles import (
    GRANULARITY_LADDER,
    EntityTiles,
    ViewTiler,
    ceil_to,
    default_granularity,
    in_window,
    tile_start,
)
from tests.features import bruteforce
from tests.features.bruteforce import feature_value
from tests.features.strategies import (
    apply_events,
    before_pending,
    check_values,
    clocks,
    event_sets,
    query_times,
    scenarios,
)

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIZES = st.one_of(st.integers(1, 1000), st.sampled_from(GRANULARITY_LADDER))
TIMES = st.one_of(st.integers(-(2**60), 2**60), st.integers(-5000, 5000))


@settings(max_examples=300, deadline=None)
@given(ts=TIMES, g=SIZES)
def test_tile_start_and_ceil_bracket_the_time(ts: int, g: int) -> None:
    start = tile_start(ts, g)
    assert start % g == 0
    assert start <= ts < start + g
    assert start == bruteforce.floor_to(ts, g)
    up = ceil_to(ts, g)
    assert up % g == 0
    assert up - g < ts <= up


@settings(max_examples=300, deadline=None)
@given(ts=TIMES, as_of=TIMES, g=SIZES, k=st.integers(1, 60))
def test_window_rule_is_the_plain_range_of_spec(ts: int, as_of: int, g: int, k: int) -> None:
    """SPEC §4: `tile_start >= T - window` is equivalent to `ceil_g(T - window) <= ts`."""
    window = g * k
    expected = bruteforce.in_window(ts, as_of, window, g)
    assert in_window(ts, as_of, window, g) == expected
    assert (ceil_to(as_of - window, g) <= ts <= as_of) == expected


def test_window_covers_between_window_minus_g_and_window() -> None:
    g, window, as_of = 10, 60, 1_005
    counted = [ts for ts in range(900, 1_100) if in_window(ts, as_of, window, g)]
    assert counted[0] == 950 and counted[-1] == 1_005
    assert window - g <= as_of - counted[0] <= window


def reference_granularity(window: int) -> int:
    """SPEC §4 read literally: the largest ladder size <= window/48 dividing window, else 1s."""
    ladder = [parse_duration(d) for d in ("1s", "10s", "1m", "5m", "15m", "1h", "1d")]
    fits = [g for g in ladder if g <= window / 48 and window % g == 0]
    return max(fits) if fits else parse_duration("1s")


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(1, 400),
    unit=st.sampled_from(["s", "m", "h", "d"]),
)
def test_default_granularity_follows_spec(amount: int, unit: str) -> None:
    window = parse_duration(f"{amount}{unit}")
    g = default_granularity(window)
    assert g == reference_granularity(window)
    assert window % g == 0


@pytest.mark.parametrize(
    ("window", "granularity"),
    [("1m", "1s"), ("1h", "1m"), ("24h", "15m"), ("7d", "1h"), ("30d", "1h"), ("90s", "1s")],
)
def test_default_granularity_examples(window: str, granularity: str) -> None:
    assert default_granularity(parse_duration(window)) == parse_duration(granularity)


@PROPERTY
@given(data=st.data())
def test_fold_pending_never_changes_a_value(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    events = data.draw(event_sets(scenario, min_size=1))
    tiler, state = apply_events(data, scenario, events)
    pending_before = len(state.pending)
    now = data.draw(st.integers(-2 * scenario.span, 2 * scenario.span))
    floor_before = state.folded_until
    changed = tiler.fold_pending(state, now)
    assert all(rec[0] > now for rec in state.pending)
    assert changed <= state.tiles.keys()
    assert state.folded_until >= floor_before
    if len(state.pending) == pending_before:
        assert changed == set()
    check_values(
        tiler,
        state,
        events,
        data.draw(query_times(scenario, events, state.folded_until, before_pending(state))),
    )


@PROPERTY
@given(data=st.data())
def test_prune_never_changes_a_value_at_or_after_now(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    events = data.draw(event_sets(scenario, min_size=1))
    tiler, state = apply_events(data, scenario, events)
    # Clocks at which a tile is exactly at, or one µs either side of, the pruning horizon.
    edges = [s + tiler.horizon[g] + d for g, s in state.tiles for d in (-1, 0, 1)]
    anywhere = st.integers(-2 * scenario.span, 3 * scenario.span)
    now = data.draw(st.one_of(anywhere, st.sampled_from(edges)) if edges else anywhere)
    tiles_before = dict(state.tiles)
    dropped = tiler.prune(state, now)
    assert dropped.isdisjoint(state.tiles)
    assert dropped | state.tiles.keys() == tiles_before.keys()
    for g, start in dropped:
        assert start < now - tiler.horizon[g]
    floor = max(now, state.folded_until)
    check_values(
        tiler, state, events, data.draw(query_times(scenario, events, floor, before_pending(state)))
    )


@PROPERTY
@given(data=st.data())
def test_a_writer_interleaving_apply_fold_and_prune_matches_brute_force(
    data: st.DataObject,
) -> None:
    """The stream writer's life: a clock that moves forward, events arriving out of order."""
    scenario = data.draw(scenarios())
    events = data.draw(event_sets(scenario, max_size=30))
    tiler, state = ViewTiler(scenario.view), EntityTiles()
    now = data.draw(st.integers(-scenario.span, scenario.span))
    pruned_at = None
    for e in events:
        now += data.draw(st.sampled_from([0, 0, 1, scenario.sizes[0], scenario.span // 4]))
        tiler.apply(state, e.ts, e.eid, e.row, now=now)
        step = data.draw(st.sampled_from(["none", "fold", "prune", "both"]))
        if step in {"fold", "both"}:
            tiler.fold_pending(state, now)
        if step in {"prune", "both"}:
            tiler.prune(state, now)
            pruned_at = now
    floor = state.folded_until if pruned_at is None else max(pruned_at, state.folded_until)
    check_values(
        tiler, state, events, data.draw(query_times(scenario, events, floor, before_pending(state)))
    )


@PROPERTY
@given(data=st.data())
def test_prune_due_is_the_first_clock_at_which_prune_drops_a_tile(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    events = data.draw(event_sets(scenario))
    tiler, state = apply_events(data, scenario, events)
    due = tiler.prune_due(state)
    if due is None:
        assert not state.tiles
        return
    before = EntityTiles(tiles=dict(state.tiles))
    assert not tiler.prune(before, due - 1), "prune dropped a tile before it was due"
    assert tiler.prune(EntityTiles(tiles=dict(state.tiles)), due), "nothing due at prune_due"


def test_tiles_of_a_removed_granularity_are_pruned() -> None:
    feat = Feature("n", "count", None, 60, 10)
    tiler = ViewTiler(FeatureView("v", "user", "src", 60, (feat,)))
    state = EntityTiles(tiles={(7, 14): {"old": 3}, (10, 100): {"n": 1}})
    assert tiler.prune(state, 100) == {(7, 14)}
    assert state.tiles == {(10, 100): {"n": 1}}


@PROPERTY
@given(data=st.data())
def test_an_entity_never_seen_has_empty_windows(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    tiler = ViewTiler(scenario.view)
    as_of = data.draw(st.integers(-scenario.span, scenario.span))
    values = tiler.evaluate(EntityTiles(), as_of)
    assert values == tiler.empty_values()
    for f in scenario.view.features:
        assert values[f.name] == feature_value(
            f.function, [], as_of, f.window, f.granularity, f.column, f.n
        )
        assert values[f.name] == (0 if f.function in {"count", "sum"} else None)
    names = data.draw(
        st.lists(st.sampled_from([f.name for f in scenario.view.features]), unique=True)
    )
    assert tiler.empty_values(names) == {n: values[n] for n in names}
    assert tiler.evaluate(EntityTiles(), as_of, names) == {n: values[n] for n in names}


def view_of(*features: Feature) -> ViewTiler:
    return ViewTiler(FeatureView("v", "user", "src", max(f.window for f in features), features))


def test_empty_window_after_events_left_it() -> None:
    funcs: list[tuple[str, int | None]] = [
        ("count", None), ("sum", None), ("mean", None), ("min", None), ("max", None),
        ("first", None), ("last", None), ("last_n", 2), ("stddev", None),
    ]  # fmt: skip
    tiler = view_of(*(Feature(f, f, "x", 60, 10, n) for f, n in funcs))
    state = EntityTiles()
    tiler.apply(state, 5, "a", {"x": 2.0}, now=5)
    tiler.apply(state, 7, "b", {"x": 4.0}, now=7)
    inside = tiler.evaluate(state, 7)
    assert inside == {
        "count": 2, "sum": 6.0, "mean": 3.0, "min": 2.0, "max": 4.0,
        "first": 2.0, "last": 4.0, "last_n": [4.0, 2.0], "stddev": pytest.approx(2**0.5),
    }  # fmt: skip
    # Tile [0, 10) is read while T - 60 <= 0, i.e. up to T = 60; at T = 61 it is gone.
    assert tiler.evaluate(state, 60)["count"] == 2
    after: dict[str, Any] = tiler.evaluate(state, 61)
    assert after == tiler.empty_values()
    assert after["count"] == 0 and after["sum"] == 0 and after["last_n"] is None


def test_stddev_of_one_value_and_nulls_are_skipped() -> None:
    tiler = view_of(
        Feature("sd", "stddev", "x", 60, 10),
        Feature("nx", "count", "x", 60, 10),
        Feature("rows", "count", None, 60, 10),
        Feature("last", "last", "x", 60, 10),
    )
    state = EntityTiles()
    tiler.apply(state, 1, "a", {"x": 3}, now=100)
    tiler.apply(state, 2, "b", {"x": None}, now=100)
    tiler.apply(state, 3, "c", {}, now=100)
    assert tiler.evaluate(state, 10) == {"sd": None, "nx": 1, "rows": 3, "last": 3}


def test_future_events_wait_in_pending_and_never_count_before_their_time() -> None:
    tiler = view_of(Feature("n", "count", None, 60, 10), Feature("last", "last", "x", 60, 10))
    state = EntityTiles()
    assert tiler.apply(state, 50, "a", {"x": 1}, now=50) == {(10, 50)}
    assert tiler.apply(state, 55, "b", {"x": 2, "other": 9}, now=50) == set()
    assert state.pending == [[55, "b", {"x": 2}]]
    assert state.max_ts == 55 and state.folded_until == 50
    assert tiler.evaluate(state, 54) == {"n": 1, "last": 1}
    assert tiler.evaluate(state, 55) == {"n": 2, "last": 2}
    assert tiler.fold_pending(state, 54) == set()
    assert tiler.fold_pending(state, 55) == {(10, 50)}
    assert state.pending == [] and state.folded_until == 55
    assert tiler.evaluate(state, 55) == {"n": 2, "last": 2}


@PROPERTY
@given(data=st.data())
def test_apply_reports_exactly_the_tiles_it_changed(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    tiler, state = ViewTiler(scenario.view), EntityTiles()
    events = data.draw(event_sets(scenario, min_size=1, max_size=15))
    for e, now in zip(events, data.draw(clocks(scenario, events)), strict=True):
        before = {k: dict(v) for k, v in state.tiles.items()}
        changed = tiler.apply(state, e.ts, e.eid, e.row, now=now)
        moved = {k for k, v in state.tiles.items() if before.get(k) != v}
        if e.ts > now:
            assert changed == set()
            assert moved == set()
            continue
        # Every tile the event was folded into, even where its state happened to stay equal.
        expected = {
            (f.granularity, tile_start(e.ts, f.granularity))
            for f in scenario.view.features
            if f.column is None or e.row.get(f.column) is not None
        }
        assert moved <= changed == expected


def test_view_tiler_reads_features_by_name() -> None:
    tiler = view_of(Feature("n", "count", None, 60, 10), Feature("s", "sum", "x", 30, 10))
    state = EntityTiles()
    tiler.apply(state, 1, 1, {"x": 5}, now=1)
    assert tiler.evaluate(state, 1, ["s"]) == {"s": 5}
    assert tiler.evaluate_feature(state, "n", 1) == 1
    assert tiler.columns == ("x",)
    assert tiler.horizon == {10: 60}
