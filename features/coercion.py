"""Raw JSON values of one schema column to one typed Arrow array (SPEC §2 dtypes, §3 events).

A batch is checked a column at a time: the set of Python types in the column decides in C
whether the whole column takes the fast path (one Arrow conversion); only a column holding
a wrong type is walked value by value to name each bad value. The rules: `int` accepts
ints only (never `bool`), `float` accepts ints and floats (NaN counts as null), `bool`
accepts booleans, `string` strings, and `timestamp` ISO-8601 strings (naive means UTC),
epoch milliseconds as a number, or datetimes; timestamps come out as µs UTC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.durations import to_us

NoneType = type(None)
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TIMESTAMP_TYPE,
}
_FAST_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str, NoneType}),
    "int": frozenset({int, NoneType}),
    "float": frozenset({float, int, NoneType}),
    "bool": frozenset({bool, NoneType}),
}
# Dtypes whose Arrow conversion rejects every JSON type but their own (and null), so a
# column of JSON values needs no type guard: Arrow takes bytes as strings, floats as
# ints and booleans as floats, none of which JSON gives for these two.
_ARROW_EXACT_FOR_JSON = frozenset({"string", "bool"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# ISO-8601 shapes that Arrow's parser reads exactly like `datetime.fromisoformat` (held
# equal by a property test); anything else goes through `durations.to_us` value by value.
_ISO_ZONED = r"^[12][0-9]{3}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"  # noqa: E501
_ISO_NAIVE = r"^[12][0-9]{3}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?$"


@dataclass(slots=True)
class Coerced:
    """A typed column: bad values are null in `array` and explained in `bad` (position → reason)."""

    array: pa.Array
    bad: dict[int, str] = field(default_factory=dict)


def coerce_column(dtype: str, values: Sequence[Any], json: bool = False) -> Coerced:
    """Convert the raw values of one column (None for null or missing) to a typed array.

    `json`: the values are as `orjson` decodes JSON (only `str`, `int`, `float`, `bool`,
    None, lists and dicts; never NaN), which spares some columns their type guard.

    >>> coerce_column("float", [1, 2.5, None]).array.to_pylist()
    [1.0, 2.5, None]
    >>> coerce_column("int", [1, True]).bad
    {1: 'expected int (got True)'}
    """
    if dtype == "timestamp":
        return _coerce_timestamps(values)
    arrow_type, allowed = ARROW_TYPES[dtype], _FAST_TYPES[dtype]
    if json and dtype in _ARROW_EXACT_FOR_JSON:
        try:  # a success means every value had the column's type (or was null)
            return Coerced(pa.array(values, arrow_type))
        except (pa.ArrowException, OverflowError, UnicodeError):
            pass  # a value of another type: the guarded path names it
    clean: Sequence[Any] = values
    bad: dict[int, str] = {}
    if not set(map(type, values)) <= allowed:
        clean, bad = _set_aside(values, allowed, _CONVERTERS[dtype])
    try:
        return Coerced(pa.array(clean, arrow_type, from_pandas=True), bad)
    except (pa.ArrowException, OverflowError, UnicodeError):
        pass  # e.g. an int beyond int64, a lone surrogate: name it value by value
    return _slow(values, arrow_type, _CONVERTERS[dtype])


def _set_aside(
    values: Sequence[Any], allowed: frozenset[type], convert: Callable[[Any], Any]
) -> tuple[list[Any], dict[int, str]]:
    """Only the values of an unexpected type are looked at one by one; bad ones become null."""
    clean = list(values)
    bad: dict[int, str] = {}
    for i in [i for i, kind in enumerate(map(type, values)) if kind not in allowed]:
        try:
            clean[i] = convert(values[i])  # a subclass (an IntEnum, numpy scalar) may fit
        except _Unfit as exc:
            clean[i] = None
            bad[i] = str(exc)
    return clean, bad


def _slow(values: Sequence[Any], arrow_type: pa.DataType, convert: Callable[[Any], Any]) -> Coerced:
    """Convert value by value, collecting a reason for each value that does not fit."""
    out: list[Any] = []
    bad: dict[int, str] = {}
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(convert(value))
        except _Unfit as exc:
            out.append(None)
            bad[i] = str(exc)
    return Coerced(pa.array(out, arrow_type, from_pandas=True), bad)


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters, for a reason that names a bad value.

    >>> shown("x" * 100, 10)
    "'xxxxxxxx…"
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Unfit(Exception):
    """A value that does not fit its column's dtype; the message is the reason."""


def _string(value: Any) -> str:
    if not isinstance(value, str):
        msg = f"expected string (got {shown(value)})"
        raise _Unfit(msg)
    try:
        value.encode()
    except UnicodeError:
        msg = f"not valid UTF-8 (got {shown(value)})"
        raise _Unfit(msg) from None
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        msg = f"expected int (got {shown(value)})"
        raise _Unfit(msg)
    if not _INT64_MIN <= value <= _INT64_MAX:
        msg = f"out of the int64 range (got {shown(value)})"
        raise _Unfit(msg)
    return int(value)


def _float(value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        msg = f"expected float (got {shown(value)})"
        raise _Unfit(msg)
    try:
        number = float(value)
    except OverflowError:
        msg = f"out of the float range (got {shown(value)})"
        raise _Unfit(msg) from None
    return None if math.isnan(number) else number


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        msg = f"expected bool (got {shown(value)})"
        raise _Unfit(msg)
    return value


def timestamp_us(value: Any) -> int:
    """One raw timestamp to µs UTC, or `_Unfit` naming it (the value-by-value reference).

    >>> timestamp_us("2026-01-01T00:00:01Z"), timestamp_us(1767225601000)
    (1767225601000000, 1767225601000000)
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float | datetime):
        msg = f"not a timestamp ({shown(value)})"
        raise _Unfit(msg)
    if isinstance(value, float) and not math.isfinite(value):
        msg = f"not a timestamp ({shown(value)})"
        raise _Unfit(msg)
    try:
        us = to_us(value)
    except (ValueError, TypeError, OverflowError):
        msg = f"not a timestamp ({shown(value)})"
        raise _Unfit(msg) from None
    if not _INT64_MIN <= us <= _INT64_MAX:
        msg = f"not a timestamp ({shown(value)}): out of range"
        raise _Unfit(msg)
    return us


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _string,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "timestamp": timestamp_us,
}


def _coerce_timestamps(values: Sequence[Any]) -> Coerced:
    """Timestamps: all epoch-ms ints, or all ISO strings of one Arrow-safe shape, in C."""
    types = set(map(type, values))
    try:
        if types <= {int, NoneType}:
            return Coerced(_milliseconds(values, NoneType in types))
        if types <= {str, NoneType}:
            parsed = _parse_iso(pa.array(values, pa.string()))
            if parsed is not None:
                return Coerced(parsed)
    except (pa.ArrowException, OverflowError, UnicodeError):
        pass
    return _timestamps_by_kind(values)


def _milliseconds(values: Sequence[Any], nulls: bool) -> pa.Array:
    """Epoch-ms ints (and None if `nulls`) to µs timestamps; raises if one overflows."""
    if nulls:
        ms = pa.array(values, pa.int64())
    else:  # numpy converts Python ints faster than Arrow does
        ms = pa.array(np.fromiter(values, np.int64, len(values)))
    return milliseconds_to_timestamps(ms)


def milliseconds_to_timestamps(ms: pa.Array) -> pa.Array:
    """An int64 array of epoch ms as µs UTC timestamps; raises if one overflows."""
    return pc.multiply_checked(ms, 1000).view(TIMESTAMP_TYPE)


def _timestamps_by_kind(values: Sequence[Any]) -> Coerced:
    """A mixed or partly bad column: ints and ISO strings still convert in bulk, by kind.

    What Arrow cannot convert in bulk (other types, unusual shapes, bad values) goes
    through `timestamp_us` value by value, which also names each bad value.
    """
    out: list[int | None] = [None] * len(values)
    done: set[int] = set()
    ints = [i for i, v in enumerate(values) if type(v) is int]
    strings = [i for i, v in enumerate(values) if type(v) is str]
    if ints:
        try:
            converted = _milliseconds([values[i] for i in ints], False).cast(pa.int64()).to_pylist()
            for i, us in zip(ints, converted, strict=True):
                out[i] = us
            done.update(ints)
        except (pa.ArrowException, OverflowError):
            pass
    if strings:
        try:
            text = pa.array([values[i] for i in strings], pa.string())
        except (pa.ArrowException, UnicodeError):
            text = None
        for pattern, arrow_type in ((_ISO_ZONED, TIMESTAMP_TYPE), (_ISO_NAIVE, pa.timestamp("us"))):
            if text is None:
                break
            mask = pc.match_substring_regex(text, pattern).to_pylist()
            chosen = [i for i, hit in zip(strings, mask, strict=True) if hit]
            try:
                parsed = pc.filter(text, mask).cast(arrow_type).cast(pa.int64()).to_pylist()
            except pa.ArrowException:
                continue  # e.g. February 30th: named value by value below
            for i, us in zip(chosen, parsed, strict=True):
                out[i] = us
            done.update(chosen)
    bad: dict[int, str] = {}
    for i, value in enumerate(values):
        if value is None or i in done:
            continue
        try:
            out[i] = timestamp_us(value)
        except _Unfit as exc:
            bad[i] = str(exc)
    return Coerced(pa.array(out, pa.int64()).cast(TIMESTAMP_TYPE), bad)


def _parse_iso(text: pa.Array) -> pa.Array | None:
    """Parse a string array if every value has a zone, or none has; else `None`."""
    valid = text.drop_null()
    if pc.all(pc.match_substring_regex(valid, _ISO_ZONED)).as_py() is not False:
        return text.cast(TIMESTAMP_TYPE)
    if pc.all(pc.match_substring_regex(valid, _ISO_NAIVE)).as_py() is not False:
        return text.cast(pa.timestamp("us")).cast(TIMESTAMP_TYPE)
    return None
