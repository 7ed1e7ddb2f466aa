"""The partial-aggregate algebra (features.aggregations) against the brute force.

Chronon's test shape: aggregating two halves and merging equals aggregating the whole;
merging with the empty state is the identity; update order does not matter; states are
JSON values that survive orjson; inputs are never mutated.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.aggregations import Aggregation, State, aggregation
from features.model import FUNCTIONS
from tests.features.bruteforce import Event, same_value, value

PROPERTY = settings(max_examples=150, deadline=None)
NUMERIC = {"sum", "mean", "stddev"}


def algebra(function: str, n: int) -> Aggregation:
    return aggregation(function, n if function == "last_n" else None)


def fold(agg: Aggregation, events: list[Event]) -> State:
    """Aggregate events the way tiles do: nulls skipped, values with (ts, id)."""
    state = agg.empty()
    for e in events:
        if e.row["v"] is not None:
            before = copy.deepcopy(state)
            new = agg.update(state, e.row["v"], e.ts, e.eid)
            assert state == before, "update mutated its input"
            state = new
    return state


def merge_checked(agg: Aggregation, a: State, b: State) -> State:
    before = copy.deepcopy((a, b))
    out = agg.merge(a, b)
    assert (a, b) == before, "merge mutated its input"
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, int, list[Event]]:
    """A function, an `n`, and events with distinct (ts, id), repeated times, nulls."""
    function = draw(st.sampled_from(FUNCTIONS))
    n = draw(st.integers(1, 8))
    if function in NUMERIC or draw(st.booleans()):
        floats = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
        values: st.SearchStrategy[Any] = st.one_of(st.integers(-1000, 1000), floats)
    else:
        values = st.text(alphabet="ab9|é", max_size=3)
    size = draw(st.integers(0, 30))
    if draw(st.booleans()):
        eids: list[Any] = draw(
            st.lists(st.integers(-50, 50), min_size=size, max_size=size, unique=True)
        )
    else:
        eids = draw(
            st.lists(st.text("019a", max_size=3), min_size=size, max_size=size, unique=True)
        )
    events = [
        Event(draw(st.integers(-5, 5)), eid, {"v": draw(st.one_of(st.none(), values, values))})
        for eid in eids
    ]
    return function, n, events


def expected(function: str, n: int, events: list[Event]) -> Any:
    return value(function, events, "v", n)


@PROPERTY
@given(case=cases(), data=st.data())
def test_halves_merged_equal_the_whole(
    case: tuple[str, int, list[Event]], data: st.DataObject
) -> None:
    function, n, events = case
    agg = algebra(function, n)
    in_left = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    left = [e for e, b in zip(events, in_left, strict=True) if b]
    right = [e for e, b in zip(events, in_left, strict=True) if not b]
    merged = merge_checked(agg, fold(agg, left), fold(agg, right))
    whole = fold(agg, events)
    assert same_value(agg.finalize(merged), agg.finalize(whole))
    assert same_value(agg.finalize(merged), expected(function, n, events))
    assert same_value(
        agg.finalize(merge_checked(agg, fold(agg, right), fold(agg, left))), agg.finalize(whole)
    )


@PROPERTY
@given(case=cases(), data=st.data())
def test_any_grouping_of_parts_gives_the_brute_force_value(
    case: tuple[str, int, list[Event]], data: st.DataObject
) -> None:
    function, n, events = case
    agg = algebra(function, n)
    shuffled = data.draw(st.permutations(events))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=4)))
    parts = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    states = [fold(agg, p) for p in parts]
    # Merge in a random tree shape: pick two neighbours, merge, repeat.
    while len(states) > 1:
        i = data.draw(st.integers(0, len(states) - 2))
        states[i : i + 2] = [merge_checked(agg, states[i], states[i + 1])]
    assert same_value(agg.finalize(states[0]), expected(function, n, events))
    assert same_value(agg.finalize(fold(agg, shuffled)), expected(function, n, events))


@PROPERTY
@given(case=cases())
def test_merge_with_empty_is_identity_and_states_survive_json(
    case: tuple[str, int, list[Event]],
) -> None:
    function, n, events = case
    agg = algebra(function, n)
    state = fold(agg, events)
    assert agg.merge(state, agg.empty()) == state
    assert agg.merge(agg.empty(), state) == state
    assert agg.merge(agg.empty(), agg.empty()) == agg.empty()
    again = orjson.loads(orjson.dumps(state))
    assert again == state
    assert same_value(agg.finalize(again), agg.finalize(state))
    # A decoded state keeps working: fold one more event into it.
    present = [e for e in events if e.row["v"] is not None]
    if present:
        top = max(e.eid for e in events)
        newer = Event(6, top + 1 if isinstance(top, int) else f"{top}z", present[0].row)
        grown = agg.update(again, newer.row["v"], newer.ts, newer.eid)
        assert same_value(agg.finalize(grown), expected(function, n, [*events, newer]))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_empty_window_values(function: str) -> None:
    agg = algebra(function, 3)
    assert agg.finalize(agg.empty()) == (0 if function in {"count", "sum"} else None)
    assert agg.finalize(agg.empty()) == value(function, [], "v", 3)


def test_stddev_is_sample_and_null_for_one_value() -> None:
    agg = aggregation("stddev")
    one = agg.update(agg.empty(), 5.0, 1, 1)
    assert agg.finalize(one) is None
    two = agg.update(one, 7, 2, 2)
    assert agg.finalize(two) == pytest.approx(2**0.5)
    assert agg.finalize(agg.merge(one, agg.update(agg.empty(), 7, 2, 2))) == pytest.approx(2**0.5)


@settings(max_examples=100, deadline=None)
@given(
    base=st.sampled_from([1e3, 1e4, 1e5, 1e6]),
    step=st.sampled_from([1e-6, 1e-3, 0.01]),
    offsets=st.lists(st.integers(-50, 50), min_size=2, max_size=40),
)
def test_stddev_of_values_close_together_far_from_zero(
    base: float, step: float, offsets: list[int]
) -> None:
    """Welford's error is about 1e-16 x |mean| absolute: within SPEC's 1e-9 up to ~1e6.

    (Relative error grows as the spread shrinks against the magnitude; no float64
    streaming algorithm avoids that, so SPEC's absolute 1e-9 near 0 is the bound here.)
    """
    agg = aggregation("stddev")
    values = [base + step * k for k in offsets]
    state = agg.empty()
    for i, v in enumerate(values):
        state = agg.update(state, v, i, i)
    assert abs(agg.finalize(state) - statistics.stdev(values)) <= 1e-15 * base


def test_last_n_is_newest_first_and_bounded() -> None:
    agg = aggregation("last_n", 2)
    state = agg.empty()
    for ts, eid, v in [(3, "a", "c"), (1, "a", "a"), (3, "b", "d"), (2, "a", "b")]:
        state = agg.update(state, v, ts, eid)
    assert agg.finalize(state) == ["d", "c"]
    assert len(state) == 2


@pytest.mark.parametrize("bad", [("median", None), ("last_n", None)])
def test_unknown_function_or_missing_n_is_refused(bad: tuple[str, int | None]) -> None:
    with pytest.raises(ValueError, match=bad[0]):
        aggregation(*bad)
