"""Partial-aggregate algebra for every feature function (SPEC §2, §4).

Each function is a small object with `empty`, `update`, `merge` and `finalize`, used
unchanged by the stream pipeline, the backfill and the online read path (the Chronon
shape). States are plain JSON values (ints, floats, lists) so that a tile serializes with
orjson as is; `update` and `merge` return new states and never mutate their inputs.
Ordered functions (`first`, `last`, `last_n`) order by `(event_time, event_id)`: the larger
id is the later event.

>>> agg = aggregation("mean")
>>> a, b = agg.update(agg.empty(), 2.0, 1, "a"), agg.update(agg.empty(), 4.0, 2, "b")
>>> agg.finalize(agg.merge(a, b))
3.0
"""

from __future__ import annotations

import math
from typing import Any, Protocol

State = Any


class Aggregation(Protocol):
    """The algebra every feature function implements."""

    def empty(self) -> State:
        """The state of an empty window."""

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        """Fold one non-null value observed at event time `ts` with event id `eid`."""

    def merge(self, a: State, b: State) -> State:
        """Combine two partial states of disjoint event sets."""

    def finalize(self, state: State) -> Any:
        """The feature value of a state (SPEC §4: empty → 0 for count/sum, else null)."""


class Count:
    """Number of events (no column) or of non-null values.

    >>> Count().finalize(Count().update(Count().empty(), "x", 1, 1))
    1
    """

    def empty(self) -> State:
        return 0

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        return state + 1

    def merge(self, a: State, b: State) -> State:
        return a + b

    def finalize(self, state: State) -> Any:
        return state


class Sum:
    """Sum of values; 0 over an empty window.

    >>> Sum().finalize(Sum().merge(3, 4))
    7
    """

    def empty(self) -> State:
        return 0

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        return state + value

    def merge(self, a: State, b: State) -> State:
        return a + b

    def finalize(self, state: State) -> Any:
        return state


class Mean:
    """Arithmetic mean; state `[count, sum]`.

    >>> Mean().finalize([2, 5.0])
    2.5
    """

    def empty(self) -> State:
        return [0, 0]

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        return [state[0] + 1, state[1] + value]

    def merge(self, a: State, b: State) -> State:
        return [a[0] + b[0], a[1] + b[1]]

    def finalize(self, state: State) -> Any:
        return state[1] / state[0] if state[0] else None


class Min:
    """Smallest value; state is the value or `None`.

    >>> Min().merge(3, None), Min().merge(3, 2)
    (3, 2)
    """

    def empty(self) -> State:
        return None

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        return value if state is None or value < state else state

    def merge(self, a: State, b: State) -> State:
        if a is None:
            return b
        if b is None:
            return a
        return b if b < a else a

    def finalize(self, state: State) -> Any:
        return state


class Max(Min):
    """Largest value; state is the value or `None`.

    >>> Max().merge(3, 5)
    5
    """

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        return value if state is None or value > state else state

    def merge(self, a: State, b: State) -> State:
        if a is None:
            return b
        if b is None:
            return a
        return b if b > a else a


class First:
    """Value of the earliest event by `(ts, eid)`; state `[ts, eid, value]` or `None`.

    >>> First().finalize(First().merge([5, "b", "x"], [5, "a", "y"]))
    'y'
    """

    def empty(self) -> State:
        return None

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        if state is None or (ts, eid) < (state[0], state[1]):
            return [ts, eid, value]
        return state

    def merge(self, a: State, b: State) -> State:
        if a is None:
            return b
        if b is None:
            return a
        return b if (b[0], b[1]) < (a[0], a[1]) else a

    def finalize(self, state: State) -> Any:
        return None if state is None else state[2]


class Last(First):
    """Value of the latest event by `(ts, eid)`; ties go to the larger event id.

    >>> Last().finalize(Last().merge([5, "b", "x"], [5, "a", "y"]))
    'x'
    """

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        if state is None or (ts, eid) > (state[0], state[1]):
            return [ts, eid, value]
        return state

    def merge(self, a: State, b: State) -> State:
        if a is None:
            return b
        if b is None:
            return a
        return b if (b[0], b[1]) > (a[0], a[1]) else a


class LastN:
    """The `n` latest values, newest first; state is a list of `[ts, eid, value]`.

    >>> agg = LastN(2)
    >>> s = agg.empty()
    >>> for i, v in enumerate([10, 20, 30]):
    ...     s = agg.update(s, v, i, i)
    >>> agg.finalize(s)
    [30, 20]
    """

    def __init__(self, n: int) -> None:
        self.n = n

    def empty(self) -> State:
        return []

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        key = (ts, eid)
        if len(state) >= self.n and key <= (state[-1][0], state[-1][1]):
            return state
        out = list(state)
        pos = len(out)
        while pos > 0 and key > (out[pos - 1][0], out[pos - 1][1]):
            pos -= 1
        out.insert(pos, [ts, eid, value])
        del out[self.n :]
        return out

    def merge(self, a: State, b: State) -> State:
        if not a:
            return b
        if not b:
            return a
        merged = sorted([*a, *b], key=lambda r: (r[0], r[1]), reverse=True)
        return merged[: self.n]

    def finalize(self, state: State) -> Any:
        return [r[2] for r in state] if state else None


class Stddev:
    """Sample standard deviation (Welford; Chan's parallel merge); state `[n, mean, m2]`.

    >>> round(Stddev().finalize(Stddev().merge([1, 2.0, 0.0], [1, 4.0, 0.0])), 6)
    1.414214
    """

    def empty(self) -> State:
        return [0, 0.0, 0.0]

    def update(self, state: State, value: Any, ts: int, eid: Any) -> State:
        n = state[0] + 1
        delta = value - state[1]
        mean = state[1] + delta / n
        return [n, mean, state[2] + delta * (value - mean)]

    def merge(self, a: State, b: State) -> State:
        if not a[0]:
            return b
        if not b[0]:
            return a
        n = a[0] + b[0]
        delta = b[1] - a[1]
        mean = a[1] + delta * b[0] / n
        return [n, mean, a[2] + b[2] + delta * delta * a[0] * b[0] / n]

    def finalize(self, state: State) -> Any:
        if state[0] < 2:
            return None
        return math.sqrt(max(state[2], 0.0) / (state[0] - 1))


_SIMPLE: dict[str, Aggregation] = {
    "count": Count(),
    "sum": Sum(),
    "mean": Mean(),
    "min": Min(),
    "max": Max(),
    "first": First(),
    "last": Last(),
    "stddev": Stddev(),
}


def aggregation(function: str, n: int | None = None) -> Aggregation:
    """The algebra for a feature function name (`last_n` needs `n`)."""
    if function == "last_n":
        if n is None:
            msg = "last_n needs n"
            raise ValueError(msg)
        return LastN(n)
    try:
        return _SIMPLE[function]
    except KeyError:
        msg = f"unknown function {function!r}"
        raise ValueError(msg) from None
