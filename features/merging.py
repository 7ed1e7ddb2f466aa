"""Merging a list of partial states at once: what a read does with a window's tiles.

`merge_all(agg)` gives a function equal to folding `agg.merge` left over the parts from
`agg.empty()`; for the builtin aggregations it is one C-level pass (`reduce(add)`, `min`, `max`)
rather than a Python call per part, since a read merges every tile of every window.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from operator import add, itemgetter

from features.aggregations import Aggregation, Count, First, Last, Max, Mean, Min, State, Sum

_ORDER = itemgetter(0, 1)  # (event time, event id): the order of first/last states
_COUNT, _TOTAL = itemgetter(0), itemgetter(1)  # of a mean state


def _sum_all(parts: list[State]) -> State:
    return reduce(add, parts, 0)


def _min_all(parts: list[State]) -> State:
    return min(parts) if parts else None


def _max_all(parts: list[State]) -> State:
    return max(parts) if parts else None


def _first_all(parts: list[State]) -> State:
    return min(parts, key=_ORDER) if parts else None


def _last_all(parts: list[State]) -> State:
    return max(parts, key=_ORDER) if parts else None


def _mean_all(parts: list[State]) -> State:
    return [reduce(add, map(_COUNT, parts), 0), reduce(add, map(_TOTAL, parts), 0)]


# Each shortcut computes exactly `agg.merge` folded left over the parts from `agg.empty()`:
# the same comparisons and additions in the same order (builtin `min`/`max` keep the first
# of equal items, as `merge` keeps its left side), only without a Python call per part.
_SHORTCUTS: dict[type, Callable[[list[State]], State]] = {
    Count: _sum_all,
    Sum: _sum_all,
    Mean: _mean_all,
    Min: _min_all,
    Max: _max_all,
    First: _first_all,
    Last: _last_all,
}
PLAIN_STATES = (Count, Sum, Min, Max)  # `finalize` returns the state itself


def merge_all(agg: Aggregation) -> Callable[[list[State]], State]:
    """A function merging a list of partial states in order, as folding `agg.merge` does.

    >>> from features.aggregations import aggregation
    >>> merge_all(aggregation("max", None))([3, 7, 5])
    7
    >>> merge_all(aggregation("mean", None))([[1, 2.0], [3, 4.0]])
    [4, 6.0]
    """
    shortcut = _SHORTCUTS.get(type(agg))
    if shortcut is not None:
        return shortcut
    merge, empty = agg.merge, agg.empty

    def fold(parts: list[State]) -> State:
        return reduce(merge, parts, empty())

    return fold
