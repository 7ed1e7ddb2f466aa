"""The pandera schema of a source, and the reason each of its checks gives (SPEC §2).

A validated batch holds Arrow-backed columns (`string[pyarrow]` or pandas' `str`,
`int64[pyarrow]`, `bool[pyarrow]`), `float64` (null is NaN) and `datetime64[us, UTC]` for
timestamps, each picked for the speed of its checks. A `regex` column is Python-backed so
the pattern runs with Python's `re` exactly as the loader compiled it; like pandera's
`str_matches`, it must match at the start of the value (write `$` to anchor the end).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandera.pandas import Check, DataFrameSchema
from pandera.pandas import Column as PanderaColumn

from features.coercion import ARROW_TYPES, shown
from features.model import Column, Source

PYTHON_STRING = pd.StringDtype("python")
TIMESTAMP_DTYPE = pd.DatetimeTZDtype("us", "UTC")
FLOAT_DTYPE = np.dtype("float64")  # numpy: checks run faster than on Arrow; null is NaN
# pandas' own Arrow-stored strings: their lengths are numpy ints, so `str_length` runs ~4x
# faster than on `string[pyarrow]`, while `isin` runs ~10x slower: chosen per column
LENGTH_STRING = pd.StringDtype("pyarrow", na_value=np.nan)


@dataclass(frozen=True)
class ColumnCheck:
    """One pandera check of a column and the reason a failing value gets."""

    check: Check
    text: str  # e.g. "must be one of [US, GB]"

    def reason(self, column: str, value: Any) -> str:
        """The dead-letter reason for `value` failing this check in `column`.

        >>> ColumnCheck(Check.ge(0), "must be >= 0").reason("amount", -3.0)
        'amount: must be >= 0 (got -3.0)'
        """
        return f"{column}: {self.text} (got {shown(value)})"


def pandas_dtype(column: Column) -> Any:
    """The pandas dtype a validated batch holds for `column`."""
    if column.dtype == "timestamp":
        return TIMESTAMP_DTYPE
    if column.dtype == "float":
        return FLOAT_DTYPE
    checks = column.checks
    if column.dtype == "string" and checks.regex is not None:
        return PYTHON_STRING
    if column.dtype == "string" and checks.isin is None and checks.notin is None:
        return LENGTH_STRING
    return pd.ArrowDtype(ARROW_TYPES[column.dtype])


def to_series(column: Column, array: pa.Array) -> pd.Series:
    """A typed Arrow column as the pandas Series pandera checks (dtype `pandas_dtype`)."""
    dtype = pandas_dtype(column)
    if dtype is TIMESTAMP_DTYPE:
        values: Any = array.to_pandas()
        return pd.Series(values, name=column.name)
    if dtype is FLOAT_DTYPE:
        values = array.to_numpy(zero_copy_only=False)
        return pd.Series(values, name=column.name)
    series: pd.Series = (
        pd.Series(array.to_pylist(), dtype=PYTHON_STRING, name=column.name)
        if dtype is PYTHON_STRING
        else pd.Series(array, dtype=dtype, name=column.name)
    )
    return series


def batch_frame(source: Source, arrays: Sequence[pa.Array]) -> pd.DataFrame:
    """The DataFrame of a batch's typed columns (one per schema column), as pandera sees it."""
    return pd.DataFrame(
        {c.name: to_series(c, a) for c, a in zip(source.schema, arrays, strict=True)}
    )


def pandera_schema(source: Source) -> DataFrameSchema:
    """The pandera schema of a source: dtype, nullability and checks of every column.

    >>> from features.model import Checks
    >>> src = Source("s", "s", ("k",), "k", "ts", 0, (Column("k", "string"),
    ...     Column("n", "int", checks=Checks(ge=0)), Column("ts", "timestamp")))
    >>> sorted(pandera_schema(src).columns)
    ['k', 'n', 'ts']
    """
    return DataFrameSchema(
        {
            c.name: PanderaColumn(
                pandas_dtype(c),
                checks=[cc.check for cc in column_checks(c)],
                nullable=c.nullable,
                name=c.name,
            )
            for c in source.schema
        },
        name=source.name,
    )


def column_checks(column: Column) -> list[ColumnCheck]:
    """The pandera checks of a column, in a fixed order (pandera's `check_number`).

    A lower and an upper bound together become one `in_range` check.
    """
    c = column.checks
    value: Callable[[Any], Any] = _timestamp if column.dtype == "timestamp" else _same
    text: Callable[[Any], str] = _timestamp_text if column.dtype == "timestamp" else shown
    out: list[ColumnCheck] = []
    lower = [(b, op) for b, op in ((c.ge, ">="), (c.gt, ">")) if b is not None]
    upper = [(b, op) for b, op in ((c.le, "<="), (c.lt, "<")) if b is not None]
    if len(lower) == 1 and len(upper) == 1:
        (low, low_op), (high, high_op) = lower[0], upper[0]
        check = Check.in_range(
            value(low), value(high), include_min=low_op == ">=", include_max=high_op == "<="
        )
        out.append(ColumnCheck(check, f"must be {low_op} {text(low)} and {high_op} {text(high)}"))
    else:
        factories: dict[str, Callable[[Any], Check]] = {
            ">=": Check.ge,
            ">": Check.gt,
            "<=": Check.le,
            "<": Check.lt,
        }
        for bound, op in lower + upper:
            out.append(ColumnCheck(factories[op](value(bound)), f"must be {op} {text(bound)}"))
    if c.isin is not None:
        listed = ", ".join(_listed(text, v) for v in c.isin)
        out.append(
            ColumnCheck(Check.isin([value(v) for v in c.isin]), f"must be one of [{listed}]")
        )
    if c.notin is not None:
        listed = ", ".join(_listed(text, v) for v in c.notin)
        out.append(
            ColumnCheck(Check.notin([value(v) for v in c.notin]), f"must not be one of [{listed}]")
        )
    if c.str_length_min is not None or c.str_length_max is not None:
        out.append(
            ColumnCheck(
                Check.str_length(c.str_length_min, c.str_length_max),
                _length_text(c.str_length_min, c.str_length_max),
            )
        )
    if c.regex is not None:
        out.append(ColumnCheck(Check.str_matches(c.regex), f"must match /{c.regex}/"))
    return out


def _same(value: Any) -> Any:
    return value


def _timestamp(us: Any) -> pd.Timestamp:
    return pd.Timestamp(int(us), unit="us", tz="UTC")


def _timestamp_text(us: Any) -> str:
    return str(_timestamp(us).isoformat()).replace("+00:00", "Z")


def _listed(text: Callable[[Any], str], value: Any) -> str:
    """A list item as a user would write it: bare words stay bare (`[US, GB]`)."""
    return value if isinstance(value, str) and value.isidentifier() else text(value)


def _length_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"length must be between {low} and {high}"
    if low is not None:
        return f"length must be at least {low}"
    return f"length must be at most {high}"
