"""One feature's partial states as numpy columns, per aggregation (features.aggregations).

Each class folds a batch of non-null values in arrival order into the rows of their tiles
and gives back and loads the states exactly as `features.aggregations` defines them
(`features.state_texts` writes them as JSON text); `TileColumns` (features/tile_columns.py)
puts a view's features of one tile size together. A state exists for a row iff `n`
(values folded) is positive.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.aggregations import Count, First, Last, LastN, Max, Mean, Min, Stddev, Sum
from features.packed_sort import stable_order
from features.tiles import CompiledFeature

Array = np.ndarray[Any, Any]
_INT_LIMIT = 2.0**62  # an int64 sum column switches to Python ints before it could wrap


def _storage(dtype: str | None) -> Any:
    """The numpy dtype holding values of a schema dtype (strings and bools stay objects)."""
    if dtype == "float":
        return np.float64
    if dtype in ("int", "timestamp"):
        return np.int64
    return object


def grown(old: Array, capacity: int, fill: Any) -> Array:
    """`old` extended to `capacity` entries, the new ones set to `fill`.

    >>> grown(np.array([1, 2]), 4, -1).tolist()
    [1, 2, -1, -1]
    """
    new = np.empty(capacity, dtype=old.dtype)
    new[: len(old)] = old
    new[len(old) :] = fill
    return new


def _group_edges(rows: Array) -> Array:
    """For sorted `rows`: True where a new row starts."""
    edges = np.ones(len(rows), dtype=bool)
    edges[1:] = rows[1:] != rows[:-1]
    return edges


def _ranks(eids: Array) -> Array:
    """Each event id's rank among `eids` (ties equal), so ids order as numbers."""
    return np.unique(eids, return_inverse=True)[1].reshape(-1)


def _by_row_time(rows: Array, ts: Array, latest: bool) -> Array:
    """`np.lexsort((arrived, ts, rows))` (`arrived`: arrival order, reversed if `latest`) as
    the stable order of rows and times packed in one int64 (`stable_order`) when they fit.

    >>> _by_row_time(np.array([1, 0, 1, 1]), np.array([5, 9, 5, 2]), latest=True).tolist()
    [1, 3, 2, 0]
    """
    n = len(rows)
    low = int(ts.min())
    time_bits = (int(ts.max()) - low).bit_length()
    if int(rows.min()) < 0 or int(rows.max()).bit_length() + time_bits > 62:
        arrival = np.arange(n)
        return np.lexsort((-arrival if latest else arrival, ts, rows))
    key = rows.astype(np.int64) << time_bits
    key |= ts - np.int64(low)
    # Latest: of equal keys the last to arrive first, a stable order of the reversed keys.
    return n - 1 - stable_order(key[::-1]) if latest else stable_order(key)


class CountColumns:
    """One feature's state columns. `n` counts the values folded: a state exists iff n > 0."""

    def __init__(self, feature: CompiledFeature, kind: Any) -> None:
        self.name = feature.name
        self.column = feature.column
        self.kind = kind
        self.n = np.zeros(0, dtype=np.int64)

    def columns(self) -> list[str]:
        return ["n"]

    def empty_value(self, name: str) -> Any:
        return 0

    def grow(self, capacity: int) -> None:
        for name in self.columns():
            setattr(self, name, grown(getattr(self, name), capacity, self.empty_value(name)))

    def clear(self, rows: Array) -> None:
        for name in self.columns():
            getattr(self, name)[rows] = self.empty_value(name)

    def fold(self, rows: Array, ts: Array, eids: Array, values: Array) -> None:
        np.add.at(self.n, rows, 1)

    def state(self, row: int) -> Any:
        return int(self.n[row])

    def load(self, row: int, state: Any) -> None:
        self.n[row] = state


class SumColumns(CountColumns):
    def __init__(self, feature: CompiledFeature, kind: Any) -> None:
        super().__init__(feature, kind)
        self.s = np.zeros(0, dtype=kind)

    def columns(self) -> list[str]:
        return ["n", "s"]

    def fold(self, rows: Array, ts: Array, eids: Array, values: Array) -> None:
        np.add.at(self.n, rows, 1)
        if self.s.dtype == np.int64:
            ints = values.astype(np.int64)
            bound = np.abs(ints.astype(np.float64)).sum()
            if len(rows):
                bound += np.abs(self.s[rows].astype(np.float64)).max()
            if bound < _INT_LIMIT:
                np.add.at(self.s, rows, ints)
                return
            self.s = self.s.astype(object)  # Python ints from here on: exact, never wrap
        elif self.s.dtype == object:
            np.add.at(self.s, rows, values)
            return
        np.add.at(self.s, rows, values.astype(self.s.dtype))

    def value(self, row: int) -> Any:
        return self.s[row].item() if self.s.dtype != object else self.s[row]

    def state(self, row: int) -> Any:
        return self.value(row)

    def load(self, row: int, state: Any) -> None:
        self.n[row] = 1
        self._set_sum(row, state)

    def _set_sum(self, row: int, total: Any) -> None:
        if self.s.dtype == np.int64 and abs(total) >= _INT_LIMIT:
            self.s = self.s.astype(object)
        self.s[row] = total


class MeanColumns(SumColumns):
    def state(self, row: int) -> Any:
        return [int(self.n[row]), self.value(row)]

    def load(self, row: int, state: Any) -> None:
        self.n[row] = state[0]
        self._set_sum(row, state[1])


class ExtremeColumns(CountColumns):
    """min or max: numbers through `ufunc.at`, other values (strings) one by one."""

    def __init__(self, feature: CompiledFeature, kind: Any, lowest: bool) -> None:
        super().__init__(feature, kind)
        self.lowest = lowest
        self.v = np.zeros(0, dtype=kind)

    def columns(self) -> list[str]:
        return ["n", "v"]

    def empty_value(self, name: str) -> Any:
        if name == "n" or self.kind is object:
            return 0 if name == "n" else None
        if self.kind is np.float64:
            return np.inf if self.lowest else -np.inf
        info = np.iinfo(np.int64)
        return info.max if self.lowest else info.min

    def fold(self, rows: Array, ts: Array, eids: Array, values: Array) -> None:
        if self.kind is not object:
            ufunc = np.minimum if self.lowest else np.maximum
            ufunc.at(self.v, rows, values.astype(self.kind))
            np.add.at(self.n, rows, 1)
            return
        column, n, lowest = self.v, self.n, self.lowest
        for row, value in zip(rows.tolist(), values.tolist(), strict=True):
            old = column[row]
            if n[row] == 0 or (value < old if lowest else value > old):
                column[row] = value
            n[row] += 1

    def state(self, row: int) -> Any:
        value = self.v[row]
        return value.item() if self.kind is not object else value

    def load(self, row: int, state: Any) -> None:
        self.n[row] = 1
        self.v[row] = state


class OrderedColumns(CountColumns):
    """first or last: the value of the earliest (latest) event by `(ts, eid)`."""

    def __init__(self, feature: CompiledFeature, kind: Any, latest: bool) -> None:
        super().__init__(feature, kind)
        self.latest = latest
        self.ts = np.zeros(0, dtype=np.int64)
        self.e = np.zeros(0, dtype=object)
        self.v = np.zeros(0, dtype=kind)

    def columns(self) -> list[str]:
        return ["n", "ts", "e", "v"]

    def empty_value(self, name: str) -> Any:
        return None if name == "e" or (name == "v" and self.kind is object) else 0

    def fold(self, rows: Array, ts: Array, eids: Array, values: Array) -> None:
        if not len(rows):
            return
        arrival = np.arange(len(rows))
        # Per row, the winner among the batch: the latest (earliest) (ts, eid); of equal
        # keys the first to arrive, as `update` keeps its state on a tie.
        arrived = -arrival if self.latest else arrival
        order = _by_row_time(rows, ts, self.latest)
        sorted_rows, sorted_ts = rows[order], ts[order]
        if ((sorted_rows[1:] == sorted_rows[:-1]) & (sorted_ts[1:] == sorted_ts[:-1])).any():
            # Equal (row, ts) pairs: only then do event ids decide (ranking them sorts text).
            order = np.lexsort((arrived, _ranks(eids), ts, rows))
        ends = _group_edges(rows[order])
        if self.latest:
            ends = np.append(ends[1:], True)
        pick = order[ends]
        row, t, e = rows[pick], ts[pick], eids[pick]
        held = self.n[row] > 0
        old_t = self.ts[row]
        wins = ~held | (t > old_t if self.latest else t < old_t)
        tie = np.flatnonzero(held & (t == old_t))
        if len(tie):
            old_e = self.e[row[tie]]
            wins[tie] = (e[tie] > old_e) if self.latest else (e[tie] < old_e)
        row, pick = row[wins], pick[wins]
        self.ts[row], self.e[row] = ts[pick], eids[pick]
        self.v[row] = values[pick].astype(self.kind)
        np.add.at(self.n, rows, 1)

    def state(self, row: int) -> Any:
        value = self.v[row]
        return [int(self.ts[row]), self.e[row], value.item() if self.kind is not object else value]

    def load(self, row: int, state: Any) -> None:
        self.n[row] = 1
        self.ts[row], self.e[row], self.v[row] = state


class LastNColumns(CountColumns):
    """last_n: slots `0..n-1` newest first, `k` of them filled."""

    def __init__(self, feature: CompiledFeature, kind: Any, size: int) -> None:
        super().__init__(feature, kind)
        self.size = size
        self.k = np.zeros(0, dtype=np.int64)
        for j in range(size):
            setattr(self, f"ts{j}", np.zeros(0, dtype=np.int64))
            setattr(self, f"e{j}", np.zeros(0, dtype=object))
            setattr(self, f"v{j}", np.zeros(0, dtype=kind))

    def columns(self) -> list[str]:
        return ["n", "k", *(f"{c}{j}" for j in range(self.size) for c in ("ts", "e", "v"))]

    def empty_value(self, name: str) -> Any:
        if name[0] == "e" or (name[0] == "v" and self.kind is object):
            return None
        return 0

    def fold(self, rows: Array, ts: Array, eids: Array, values: Array) -> None:
        if not len(rows):
            return
        ordered = np.sort(rows)  # np.unique hashes: several times slower than a sort
        touched = ordered[_group_edges(ordered)]
        # Candidates: the entries held (seq < 0, in slot order) then the batch (arrival
        # order); sorted newest first, equal keys in that order, as `update` inserts.
        old_rows, old_ts, old_e, old_v, old_seq = [], [], [], [], []
        held = self.k[touched]
        for j in range(self.size):
            at = touched[held > j]
            old_rows.append(at)
            old_ts.append(getattr(self, f"ts{j}")[at])
            old_e.append(getattr(self, f"e{j}")[at])
            old_v.append(getattr(self, f"v{j}")[at])
            old_seq.append(np.full(len(at), j - self.size))
        all_rows = np.concatenate([*old_rows, rows])
        all_ts = np.concatenate([*old_ts, ts])
        all_e = np.concatenate([*old_e, eids.astype(object)])
        all_v = np.concatenate([*old_v, values.astype(self.kind)])
        seq = np.concatenate([*old_seq, np.arange(len(rows))])
        order = np.lexsort((-all_ts, all_rows))
        sorted_rows, sorted_ts = all_rows[order], all_ts[order]
        if ((sorted_rows[1:] == sorted_rows[:-1]) & (sorted_ts[1:] == sorted_ts[:-1])).any():
            # Equal (row, ts) pairs: only then do ids and arrival decide (ranking sorts text).
            order = np.lexsort((seq, -_ranks(all_e), -all_ts, all_rows))
            sorted_rows = all_rows[order]
        starts = np.flatnonzero(_group_edges(sorted_rows))
        lengths = np.diff(np.append(starts, len(order)))
        slot = np.arange(len(order)) - np.repeat(starts, lengths)
        for j in range(self.size):
            take = order[slot == j]
            at = all_rows[take]
            getattr(self, f"ts{j}")[at] = all_ts[take]
            getattr(self, f"e{j}")[at] = all_e[take]
            getattr(self, f"v{j}")[at] = all_v[take]
        self.k[sorted_rows[starts]] = np.minimum(lengths, self.size)
        np.add.at(self.n, rows, 1)

    def state(self, row: int) -> Any:
        out = []
        for j in range(int(self.k[row])):
            value = getattr(self, f"v{j}")[row]
            out.append(
                [
                    int(getattr(self, f"ts{j}")[row]),
                    getattr(self, f"e{j}")[row],
                    value.item() if self.kind is not object else value,
                ]
            )
        return out

    def load(self, row: int, state: Any) -> None:
        state = state[: self.size]  # newest first: a longer list (another n) keeps its newest
        self.n[row] = len(state)
        self.k[row] = len(state)
        for j, (t, e, v) in enumerate(state):
            getattr(self, f"ts{j}")[row], getattr(self, f"e{j}")[row] = t, e
            getattr(self, f"v{j}")[row] = v


class StddevColumns(CountColumns):
    """Welford's update, once per event: one vectorized pass per rank of a repeated row."""

    def __init__(self, feature: CompiledFeature, kind: Any) -> None:
        super().__init__(feature, kind)
        self.mean = np.zeros(0, dtype=np.float64)
        self.m2 = np.zeros(0, dtype=np.float64)

    def columns(self) -> list[str]:
        return ["n", "mean", "m2"]

    def fold(self, rows: Array, ts: Array, eids: Array, values: Array) -> None:
        if not len(rows):
            return
        x = values.astype(np.float64)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        starts = np.flatnonzero(_group_edges(sorted_rows))
        lengths = np.diff(np.append(starts, len(order)))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order)) - np.repeat(starts, lengths)
        for j in range(int(lengths.max())):
            pick = np.flatnonzero(rank == j)
            r, v = rows[pick], x[pick]
            n = self.n[r] + 1
            delta = v - self.mean[r]
            mean = self.mean[r] + delta / n
            self.m2[r] = self.m2[r] + delta * (v - mean)
            self.mean[r], self.n[r] = mean, n

    def state(self, row: int) -> Any:
        return [int(self.n[row]), float(self.mean[row]), float(self.m2[row])]

    def load(self, row: int, state: Any) -> None:
        self.n[row], self.mean[row], self.m2[row] = state


def feature_columns(feature: CompiledFeature, dtype: str | None) -> CountColumns:
    """The state columns of a feature whose column has schema dtype `dtype` (None: no column).

    >>> from features.model import Feature
    >>> last2 = feature_columns(CompiledFeature.of(Feature("l", "last_n", "x", 60, 60, 2)), "int")
    >>> last2.grow(1)
    >>> last2.fold(np.array([0, 0, 0]), np.array([5, 9, 7]), np.array(["a", "b", "c"], object),
    ...            np.array([50, 90, 70], object))
    >>> last2.state(0)
    [[9, 'b', 90], [7, 'c', 70]]
    """
    agg, kind = feature.agg, _storage(dtype)
    if isinstance(agg, Count):
        return CountColumns(feature, kind)
    if isinstance(agg, Mean):
        return MeanColumns(feature, kind)
    if isinstance(agg, Sum):
        return SumColumns(feature, kind)
    if isinstance(agg, Min | Max):
        return ExtremeColumns(feature, kind, lowest=type(agg) is Min)
    if isinstance(agg, First | Last):
        return OrderedColumns(feature, kind, latest=type(agg) is Last)
    if isinstance(agg, LastN):
        return LastNColumns(feature, kind, agg.n)
    if isinstance(agg, Stddev):
        return StddevColumns(feature, kind)
    msg = f"no column form for {type(agg).__name__} ({feature.name})"
    raise ValueError(msg)
