"""Batch validation of events against their source schema with pandera (SPEC §2, §3).

A batch is checked a column at a time, never an event at a time: `features.coercion`
builds each typed Arrow column in C and names every value of the wrong type; nulls in a
non-nullable column come from Arrow's null bitmap; every value check is the pandera
`Check` of `pandera_schema(source)`, run over the whole column as a pandas Series (the
bounds of a float column first run as the same numpy comparisons: a pass skips pandas;
both in `features.check_runs`). The
verdicts equal `pandera_schema(source).validate(frame, lazy=True)` on the batch's typed
frame (held equal by a property test) at a fraction of its fixed cost: pandera's schema
machinery costs milliseconds per batch, and far more when a batch holds a bad event.
A column whose distinct values pandera already accepted (a country, a currency) is not
checked again. Each reason names the column, the rule and the offending value. A batch
of JSON objects that all pass skips the Python dicts: `features.json_batch` reads it
straight into the columns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import cache, partial
from itertools import repeat
from operator import itemgetter, setitem
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandera.pandas import Check

from features.check_runs import failing_rows, is_bound, within_bounds
from features.coercion import coerce_column, milliseconds_to_timestamps, shown
from features.json_batch import columnar_reader
from features.model import Column, Source
from features.payloads import Rejected, json_objects, parse_each
from features.source_schema import ColumnCheck, column_checks, pandera_schema, to_series
from features.validated import Event, Finished, Validated

__all__ = [
    "CORRELATION_FIELD",
    "Event",
    "Rejected",
    "SourceValidator",
    "Validated",
    "pandera_schema",
]

CORRELATION_FIELD = "correlation_id"
MEMO_LIMIT = 1024  # distinct accepted values remembered per column; more: always checked
_Reason = tuple[int, int, str]  # (column position, check order, text): sorts per event
_NoneType = type(None)
# Runs an iterator of side effects to its end, in C.
_consume: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend


class _ColumnState:
    """One column of the schema: its pandera checks and the values they already accepted."""

    __slots__ = ("bounded", "checks", "column", "memo", "pos")

    def __init__(self, pos: int, column: Column) -> None:
        self.pos = pos
        self.column = column
        self.checks: list[ColumnCheck] = column_checks(column)
        self.memo: set[Any] | None = {None} if self.checks else None
        # A float column checked only by bounds: a batch that passes them all skips pandas.
        self.bounded = column.dtype == "float" and all(is_bound(c.check) for c in self.checks)
        if self.checks:  # registers pandera's pandas check functions (done on a first check)
            Check.get_backend(pd.Series(dtype="float64"))


class SourceValidator:
    """Validates batches of raw events (JSON bytes/str, or dicts) against one source's schema.

    Keep one validator per source: it remembers the values pandera already accepted.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self.schema = pandera_schema(source)
        self._states = [_ColumnState(i, c) for i, c in enumerate(source.schema)]
        self._names = tuple(c.name for c in source.schema)
        self._known = frozenset(self._names)
        self._pop_correlation = CORRELATION_FIELD not in self._known
        fields = self._names + (CORRELATION_FIELD,) * self._pop_correlation
        self._cid = fields.index(CORRELATION_FIELD)  # where `_fields` puts the correlation id
        # Every field of an event at once (a tuple), when the event has them all.
        self._fields = itemgetter(*fields) if len(fields) > 1 else None
        position = {name: i for i, name in enumerate(self._names)}
        self._ts = position[source.timestamp]
        self._eid = position[source.event_id]
        self._key = [position[k] for k in source.key]
        self._reader = columnar_reader(source, CORRELATION_FIELD)

    def validate(self, payloads: Sequence[Any]) -> tuple[list[Event], list[Rejected]]:
        """Split a batch into accepted events (input order) and rejects with every reason."""
        checked = self.validate_batch(payloads)
        return checked.events, checked.rejected

    def validate_batch(self, payloads: Sequence[Any], columnar: bool = True) -> Validated:
        """`validate`, also giving the accepted events' typed columns (built anyway).

        A batch of JSON objects that all pass is read in columns (`JsonBatchReader`) when
        `columnar`; any other batch is decoded and checked value by value, as every batch
        is without `columnar` (the same verdicts and values: a property test).
        """
        reader = self._reader
        if columnar and reader is not None and reader.wanted():
            read = reader.read(payloads)
            checked = None if read is None else self._from_columns(payloads, read)
            reader.taken(checked is not None)
            if checked is not None:
                return checked
        objs = json_objects(payloads)
        json = objs is not None  # every value is of a JSON type (no bytes, NaN or subclass)
        rejected: list[Rejected] = []
        if objs is not None:
            index = list(range(len(objs)))
        else:
            objs, index, rejected, owned = parse_each(payloads)
            if not owned:
                objs = list(map(dict, objs))  # the dicts become the rows: never the caller's
        if not objs:
            return Validated(rejected, [], [], [], None, [], [])
        raw, cids, complete = self._raw_columns(objs)
        held = complete and self._pop_correlation  # the rows still hold their correlation ids
        reasons: dict[int, list[_Reason]] = {}
        arrays = [
            self._check_column(state, values, objs, reasons, json)
            for state, values in zip(self._states, raw, strict=True)
        ]
        cid_array = None
        if json:
            try:  # JSON has no bytes: a string array is built only if all are str or None
                cid_array = pa.array(cids, pa.string())
            except (pa.ArrowException, UnicodeError):
                pass
        if cid_array is None and not set(map(type, cids)) <= {str, _NoneType}:
            cids = self._check_correlation_ids(cids, reasons)
        if not complete:
            self._fill_absent(objs, arrays)
        extras = self._extras(objs, held)
        keys = list(zip(*(raw[k] for k in self._key), strict=True))
        eids = list(raw[self._eid])
        if not reasons:
            finish = cache(partial(self._finish, objs, arrays, raw, held))
            return Validated(rejected, index, eids, keys, extras, cids, arrays, finish, cid_array)
        for row in sorted(reasons):
            texts = [text for _, _, text in sorted(reasons[row])]
            rejected.append(Rejected(index[row], payloads[index[row]], texts, cids[row]))
        rejected.sort(key=lambda r: r.index)
        keep = [row for row in range(len(objs)) if row not in reasons]
        taken = pa.array(keep, pa.int64())

        def pick(column: Sequence[Any]) -> list[Any]:
            return [column[row] for row in keep]

        rows, arrays = pick(objs), [a.take(taken) for a in arrays]
        return Validated(
            rejected,
            pick(index),
            pick(eids),
            pick(keys),
            None if extras is None else pick(extras),
            pick(cids),
            arrays,
            cache(partial(self._finish, rows, arrays, [pick(values) for values in raw], held)),
            None if cid_array is None else cid_array.take(taken),
        )

    def _from_columns(self, payloads: Sequence[Any], read: list[pa.Array]) -> Validated | None:
        """The batch from the arrays `JsonBatchReader` read (each field's, in `_fields`
        order), if every event passes; else None (the caller checks value by value)."""
        listed: dict[int, list[Any]] = {}

        def raw(pos: int) -> list[Any]:  # a field's values as JSON gave them (ms for times)
            if pos not in listed:
                listed[pos] = read[pos].to_pylist()
            return listed[pos]

        reasons: dict[int, list[_Reason]] = {}
        arrays: list[pa.Array] = []
        for state in self._states:
            array = read[state.pos]
            if array.null_count and not state.column.nullable:
                return None
            if state.column.dtype == "timestamp":
                try:
                    array = milliseconds_to_timestamps(array)
                except pa.ArrowException:
                    return None
            self._check_values(state, array, partial(raw, state.pos), reasons, True)
            if reasons:
                return None
            arrays.append(array)
        keys = list(zip(*map(raw, self._key), strict=True))
        cids = read[self._cid]
        finish = cache(partial(self._decode_rows, payloads, arrays))
        index = list(range(len(payloads)))
        return Validated(
            [], index, raw(self._eid), keys, None, cids.to_pylist(), arrays, finish, cids
        )

    def _decode_rows(self, payloads: Sequence[Any], arrays: list[pa.Array]) -> Finished:
        """The rows of a batch read in columns: its payloads decoded and finished as the
        value-by-value path does (each holds every schema field and nothing more)."""
        objs: list[dict[str, Any]] = list(map(orjson.loads, payloads))
        raw, _, complete = self._raw_columns(objs)
        if not complete:
            self._fill_absent(objs, arrays)
        return self._finish(objs, arrays, raw, complete and self._pop_correlation)

    def _raw_columns(
        self, objs: list[dict[str, Any]]
    ) -> tuple[list[Sequence[Any]], list[Any], bool]:
        """Each schema column's raw values (None: null or missing) and the correlation ids.

        Also tells whether every object holds every schema column (and a correlation id):
        then one `itemgetter` per object takes them all and the ids stay in the objects
        (`_finish` takes them out); else a column at a time, the ids popped.
        """
        if self._fields is not None:
            try:
                fields = list(map(self._fields, objs))
            except KeyError:
                pass
            else:
                columns: list[Sequence[Any]] = list(zip(*fields, strict=True))
                raw = columns[: len(self._names)]
                return raw, list(columns[self._cid]), True
        n = len(objs)
        get = dict.get  # `map` over C methods: a column costs ~40 ns per event, not ~100
        raw = [list(map(get, objs, repeat(name, n))) for name in self._names]
        if self._pop_correlation:
            return raw, list(map(dict.pop, objs, repeat(CORRELATION_FIELD, n), repeat(None))), False
        return raw, list(raw[self._cid]), False

    def _check_column(
        self,
        state: _ColumnState,
        values: Sequence[Any],
        objs: list[dict[str, Any]],
        reasons: dict[int, list[_Reason]],
        json: bool,
    ) -> pa.Array:
        """Type, nullability and pandera checks of one column; returns the typed array
        (`json`: the values are as JSON decodes, see `coerce_column`)."""
        column = state.column
        coerced = coerce_column(column.dtype, values, json)
        array = coerced.array
        for row, why in coerced.bad.items():
            reasons.setdefault(row, []).append((state.pos, -1, f"{column.name}: {why}"))
        if array.null_count > len(coerced.bad) and not column.nullable:
            for row in np.flatnonzero(pc.is_null(array).to_numpy(zero_copy_only=False)).tolist():
                if row not in coerced.bad:
                    what = "missing" if column.name not in objs[row] else "must not be null"
                    reasons.setdefault(row, []).append((state.pos, -1, f"{column.name}: {what}"))
        self._check_values(state, array, lambda: values, reasons, not coerced.bad)
        return array

    def _check_values(
        self,
        state: _ColumnState,
        array: pa.Array,
        values: Callable[[], Sequence[Any]],
        reasons: dict[int, list[_Reason]],
        memoize: bool,
    ) -> None:
        """The pandera checks of one typed column; `values` gives its raw values (only
        asked for when a memo is kept or a check fails); `memoize`: no value was bad."""
        column = state.column
        if not state.checks or array.null_count == len(array):
            return
        distinct: set[Any] | None = None
        memo = state.memo  # one read: another thread may retire it meanwhile
        if memo is not None and memoize:
            distinct = set(values())
            if distinct <= memo:
                return
        passed = state.bounded and within_bounds(state.checks, array)
        if not passed:
            series = to_series(column, array)
            passed = True
            for order, check in enumerate(state.checks):
                failing = failing_rows(check.check, series)
                if not failing:
                    continue
                passed = False
                shown_values = values()
                for row in failing:
                    text = check.reason(column.name, shown_values[row])
                    reasons.setdefault(row, []).append((state.pos, order, text))
        if passed and distinct is not None and memo is not None:
            grown = memo | distinct  # a new set: a reader in another thread never sees it change
            state.memo = grown if len(grown) <= MEMO_LIMIT else None  # None: too many to pay

    def _check_correlation_ids(
        self, cids: list[Any], reasons: dict[int, list[_Reason]]
    ) -> list[str | None]:
        """Reject events whose `correlation_id` is not a string (null is fine)."""
        out: list[str | None] = []
        for row, cid in enumerate(cids):
            if cid is None or isinstance(cid, str):
                out.append(cid)
            else:
                text = f"{CORRELATION_FIELD}: expected string (got {shown(cid)})"
                reasons.setdefault(row, []).append((len(self._names), 0, text))
                out.append(None)
        return out

    def _fill_absent(self, rows: list[dict[str, Any]], arrays: list[pa.Array]) -> None:
        """Set absent nullable columns to None in each row (only a null row may lack one)."""
        for state, array in zip(self._states, arrays, strict=True):
            if array.null_count:
                nulls = np.flatnonzero(pc.is_null(array).to_numpy(zero_copy_only=False))
                name = state.column.name
                _consume(map(dict.setdefault, map(rows.__getitem__, nulls.tolist()), repeat(name)))

    def _extras(self, rows: list[dict[str, Any]], held: bool) -> list[dict[str, Any]] | None:
        """Move each row's fields beyond the schema out of it; None if no row has any
        (`held`: each row also still holds its correlation id, which is no extra field)."""
        width = len(self._names) + held
        # Every schema column is now in every accepted row (a missing one is null, and a
        # null is filled above or rejects the row), so only a longer row has extra fields.
        if max(map(len, rows)) <= width:
            return None
        extras: list[dict[str, Any]] = []
        known = self._known | {CORRELATION_FIELD} if held else self._known
        for row in rows:
            if len(row) <= width:
                extras.append({})
                continue
            extra = {k: v for k, v in row.items() if k not in known}
            for k in extra:
                del row[k]
            extras.append(extra)
        return extras

    def _finish(
        self,
        rows: list[dict[str, Any]],
        arrays: list[pa.Array],
        raw: list[Sequence[Any]],
        held: bool,
    ) -> Finished:
        """Turn each event's own dict into its row in place; returns the rows and the event
        times (run once, on the first read of `Validated.rows` or `events`).

        Only what differs is written: timestamps (as µs) and floats given as ints (or NaN);
        correlation ids still `held` in the rows are taken out.
        """
        if held:
            _consume(map(dict.pop, rows, repeat(CORRELATION_FIELD)))
        event_times: list[int] = []
        for state, array, values in zip(self._states, arrays, raw, strict=True):
            name, dtype = state.column.name, state.column.dtype
            if dtype == "timestamp":
                times = array.cast(pa.int64()).to_pylist()
                _consume(map(setitem, rows, repeat(name), times))
                if state.pos == self._ts:
                    event_times = times
            elif dtype == "float" and (array.null_count or not set(map(type, values)) <= {float}):
                _consume(map(setitem, rows, repeat(name), array.to_pylist()))
        return rows, event_times
