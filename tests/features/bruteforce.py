"""An independent brute-force reading of SPEC §4 over raw events, for property tests.

Written from the SPEC text only: it scans every event for every query and never imports
`features.tiles`, `features.aggregations` or `features.lateness`, so an error in the
tile/algebra code cannot hide behind the same error here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One raw event: event time in µs, event id, column values and its source key."""

    ts: int
    eid: Any
    row: Mapping[str, Any] = field(default_factory=dict)
    key: Any = "k"


def floor_to(ts: int, g: int) -> int:
    """`floor(ts / g) * g` with exact integer arithmetic (also for negative times)."""
    return (ts // g) * g


def in_window(ts: int, as_of: int, window: int, g: int) -> bool:
    """SPEC §4: `event_time <= T` and `tile_start = floor(event_time / g) * g >= T - window`."""
    return ts <= as_of and floor_to(ts, g) >= as_of - window


def window_events(events: Iterable[Event], as_of: int, window: int, g: int) -> list[Event]:
    """The events a feature as of `as_of` aggregates."""
    return [e for e in events if in_window(e.ts, as_of, window, g)]


def _exact_sum(values: Sequence[Any]) -> Any:
    if all(isinstance(v, int) for v in values):
        return sum(values)
    return math.fsum(values)


def value(function: str, events: Iterable[Event], column: str | None, n: int | None = None) -> Any:
    """The value of `function` over `events` (already windowed), per SPEC §2/§4."""
    evs = list(events)
    if column is None:
        if function != "count":
            raise ValueError(f"{function} needs a column")
        return len(evs)
    present = [e for e in evs if e.row.get(column) is not None]
    values = [e.row[column] for e in present]
    # Ordered functions: by event time, ties broken by event id (the larger id is later).
    ordered = sorted(present, key=lambda e: (e.ts, e.eid))
    if function == "count":
        return len(values)
    if function == "sum":
        return _exact_sum(values) if values else 0
    if not values:
        return None
    if function == "mean":
        return math.fsum(values) / len(values)
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    if function == "first":
        return ordered[0].row[column]
    if function == "last":
        return ordered[-1].row[column]
    if function == "last_n":
        if n is None:
            raise ValueError("last_n needs n")
        return [e.row[column] for e in reversed(ordered)][:n]
    if function == "stddev":
        return statistics.stdev(values) if len(values) >= 2 else None
    raise ValueError(f"unknown function {function!r}")


def feature_value(
    function: str,
    events: Iterable[Event],
    as_of: int,
    window: int,
    g: int,
    column: str | None,
    n: int | None = None,
) -> Any:
    """The value of a feature as of `as_of`: window the events, then aggregate."""
    return value(function, window_events(events, as_of, window, g), column, n)


def judge_all(events: Iterable[Event], lateness: int) -> list[str]:
    """Verdicts in broker order per SPEC §4: late before duplicate, state per source key.

    Late: older than the newest accepted event time of its key minus `lateness`.
    Duplicate: its event id was already accepted for its key. Nothing is ever forgotten.
    """
    newest: dict[Any, int] = {}
    accepted_ids: dict[Any, set[Any]] = {}
    verdicts: list[str] = []
    for e in events:
        if e.key in newest and e.ts < newest[e.key] - lateness:
            verdicts.append("late")
        elif e.eid in accepted_ids.get(e.key, set()):
            verdicts.append("duplicate")
        else:
            verdicts.append("accept")
            accepted_ids.setdefault(e.key, set()).add(e.eid)
            newest[e.key] = max(newest.get(e.key, e.ts), e.ts)
    return verdicts


def same_value(actual: Any, expected: Any) -> bool:
    """Equality with floats within 1e-9 relative (1e-9 absolute near 0), SPEC §4."""
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(
            same_value(a, b) for a, b in zip(actual, expected, strict=True)
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    return bool(actual == expected) and type(actual) is type(expected)
