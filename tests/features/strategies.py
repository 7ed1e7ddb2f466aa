"""Hypothesis strategies and harness for the SPEC §4 property tests (views, events, clocks).

Times are drawn on a scale chosen per example (from 1 µs to 1 h), so tile sizes of a few
microseconds are exercised as well as realistic ones, with many edge values: negative
times, times on tile boundaries and one µs either side, repeated timestamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from features.model import Feature, FeatureView
from features.tiles import EntityTiles, ViewTiler
from tests.features.bruteforce import Event, feature_value, same_value

# (function, column): every function, on a numeric column `x` and a string column `s`.
FUNCTION_COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("count", None),
    ("count", "x"),
    ("count", "s"),
    ("sum", "x"),
    ("mean", "x"),
    ("min", "x"),
    ("max", "x"),
    ("min", "s"),
    ("max", "s"),
    ("first", "x"),
    ("last", "x"),
    ("first", "s"),
    ("last", "s"),
    ("last_n", "x"),
    ("last_n", "s"),
    ("stddev", "x"),
)
UNITS: tuple[int, ...] = (1, 10, 1_000, 1_000_000, 60_000_000, 3_600_000_000)
MULTIPLES: tuple[int, ...] = (1, 2, 3, 5, 10)


@dataclass(frozen=True)
class Scenario:
    """A view with every function, its tile sizes, and the time range events fall in."""

    view: FeatureView
    sizes: tuple[int, ...]
    span: int


@st.composite
def scenarios(
    draw: st.DrawFn, functions: Sequence[tuple[str, str | None]] = FUNCTION_COLUMNS
) -> Scenario:
    """A view holding one feature per (function, column), each with its own window and g."""
    unit = draw(st.sampled_from(UNITS))
    sizes = tuple(
        sorted(
            {unit * m for m in draw(st.lists(st.sampled_from(MULTIPLES), min_size=1, max_size=3))}
        )
    )
    feats = []
    for i, (function, column) in enumerate(functions):
        g = draw(st.sampled_from(sizes))
        window = g * draw(st.integers(1, 12))
        n = draw(st.integers(1, 6)) if function == "last_n" else None
        feats.append(Feature(f"f{i}_{function}_{column or 'rows'}", function, column, window, g, n))
    ttl = max(f.window for f in feats)
    view = FeatureView("v", "user", "src", ttl, tuple(feats))
    return Scenario(view, sizes, span=2 * ttl)


@st.composite
def times(draw: st.DrawFn, scenario: Scenario) -> int:
    """A time in `[-span, span]`, often on a tile boundary or one µs off it."""
    span = scenario.span
    if draw(st.booleans()):
        return draw(st.integers(-span, span))
    g = draw(st.sampled_from(scenario.sizes))
    return g * draw(st.integers(-span // g, span // g)) + draw(st.sampled_from((-1, 0, 1)))


@st.composite
def event_ids(draw: st.DrawFn, count: int) -> list[Any]:
    """`count` distinct event ids, all ints or all strings (one dtype per source)."""
    if draw(st.booleans()):
        ints = st.integers(-(2**40), 2**40)
        return draw(st.lists(ints, min_size=count, max_size=count, unique=True))
    # Digit strings compare as strings ("10" < "9"), unlike the numbers they spell.
    prefix = draw(st.sampled_from(["", "e", "E-"]))
    ints = st.integers(0, 10**5)
    return [
        f"{prefix}{i}" for i in draw(st.lists(ints, min_size=count, max_size=count, unique=True))
    ]


_FLOATS = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
_INTS = st.integers(-1000, 1000)
# Column values, nulls included: `x` is an int column or a float column (where JSON may
# also carry ints); `s` is a string column.
X_VALUES: tuple[st.SearchStrategy[Any], ...] = (
    st.one_of(st.none(), _INTS, _INTS, _INTS),
    st.one_of(st.none(), _FLOATS, _FLOATS, _INTS),
)
S_VALUES = st.one_of(st.none(), st.text(alphabet="abAB|{%é", max_size=3))


@st.composite
def event_sets(
    draw: st.DrawFn, scenario: Scenario, min_size: int = 0, max_size: int = 40
) -> list[Event]:
    """Events with distinct ids, drawn times (repeats likely) and nullable columns."""
    pool = draw(st.lists(times(scenario), min_size=1, max_size=12))
    size = draw(st.integers(min_size, max_size))
    eids = draw(event_ids(size))
    ts = draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size))
    xs = draw(st.lists(draw(st.sampled_from(X_VALUES)), min_size=size, max_size=size))
    ss = draw(st.lists(S_VALUES, min_size=size, max_size=size))
    return [Event(t, eid, {"x": x, "s": s}) for t, eid, x, s in zip(ts, eids, xs, ss, strict=True)]


@st.composite
def query_times(
    draw: st.DrawFn,
    scenario: Scenario,
    events: Sequence[Event],
    floor: int,
    focus: Sequence[int] = (),
) -> list[int]:
    """Up to ~25 query times `>= floor`, mostly on the window edges the events create.

    Only `T >= floor` (the state's `folded_until`) is exact by design (see features.tiles).
    `focus` times (e.g. just before pending events) are always candidates too.
    """
    edges = {floor, floor + 1}
    for e in events:
        edges.update((e.ts - 1, e.ts, e.ts + 1))
        for f in scenario.view.features:
            edge = (e.ts // f.granularity) * f.granularity + f.window
            edges.update((edge - 1, edge, edge + 1))
    candidates = sorted(t for t in edges if t >= floor)
    picked = draw(st.lists(st.sampled_from(candidates), max_size=20, unique=True))
    focused = [t for t in focus if t >= floor]
    if focused:
        picked += draw(st.lists(st.sampled_from(focused), max_size=4))
    beyond = draw(st.lists(st.integers(floor, floor + 2 * scenario.span), max_size=3))
    return sorted({floor, *picked, *beyond})


@st.composite
def clocks(draw: st.DrawFn, scenario: Scenario, events: Sequence[Event]) -> list[int]:
    """The writer's clock as each event arrives: before its time (pending) or after it.

    Either one clock for all events (a writer at wall-clock time: events after it wait)
    or a clock drawn near each event (some before it, some after it).
    """
    if draw(st.booleans()):
        return [draw(times(scenario))] * len(events)
    near = st.sampled_from((-1, 0, 1))
    offset = st.one_of(near, st.integers(-scenario.span, scenario.span))
    offsets = draw(st.lists(offset, min_size=len(events), max_size=len(events)))
    return [e.ts + d for e, d in zip(events, offsets, strict=True)]


def apply_events(
    data: st.DataObject, scenario: Scenario, events: list[Event]
) -> tuple[ViewTiler, EntityTiles]:
    """Apply `events` in their order to a fresh state, each with a drawn writer clock."""
    tiler = ViewTiler(scenario.view)
    state = EntityTiles()
    for e, now in zip(events, data.draw(clocks(scenario, events)), strict=True):
        changed = tiler.apply(state, e.ts, e.eid, e.row, now=now)
        assert all(start <= e.ts < start + g for g, start in changed)
    return tiler, state


def before_pending(*states: EntityTiles) -> list[int]:
    """Query times just before each pending event: where a leak of future events would show."""
    return [r[0] - 1 for state in states for r in state.pending]


def check_values(
    tiler: ViewTiler, state: EntityTiles, events: list[Event], as_of: list[int]
) -> int:
    """Assert every feature at every query time equals the brute force; returns the count."""
    checked = 0
    for t in as_of:
        actual = tiler.evaluate(state, t)
        for f in tiler.view.features:
            expected = feature_value(f.function, events, t, f.window, f.granularity, f.column, f.n)
            assert same_value(actual[f.name], expected), (
                f"{f} as of {t}: tiles {actual[f.name]!r} != brute force {expected!r}"
            )
            checked += 1
    return checked
