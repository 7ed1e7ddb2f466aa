"""Running a column's pandera checks over a whole batch, faster than pandera's own dispatch.

`failing_rows` runs what pandera's pandas backend runs for a plain builtin check, without
its failure-case report (which costs more than the check); `within_bounds` first runs a
float column's bound checks as the same numpy comparisons, so a batch that passes them all
skips pandas. `features.schema` holds both equal to pandera (property tests).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandera.pandas import Check

from features.source_schema import ColumnCheck


def failing_rows(check: Check, series: pd.Series) -> list[int]:
    """The rows of `series` that fail `check`, exactly as pandera's `Check` finds them.

    For a plain builtin check this runs what pandera's pandas backend runs (drop nulls for
    `ignore_na`, then the builtin function over the column) without its failure-case
    report, which costs more than the check itself.
    """
    name = getattr(check._check_fn, "__name__", None)
    if (
        name is None
        or not check.is_builtin_check(name)
        or check.groupby is not None
        or check.element_wise
        or not check.ignore_na
    ):
        result = check(series)
        if result.check_passed:
            return []
        output = result.check_output
        return list(output.index[~output.to_numpy(dtype=bool)].tolist())
    checked = series.dropna() if series.hasnans else series
    passed = check.get_builtin_check_fn(name)(checked, **check._check_kwargs).to_numpy(dtype=bool)
    if passed.all():
        return []
    return list(checked.index[~passed].tolist())


# pandera's builtin bound checks (`pandera.backends.pandas.builtin_checks`), the same
# comparisons over a numpy array, which pandera's own dispatch does not take.
_BOUNDS: dict[str, Callable[..., Any]] = {
    "greater_than_or_equal_to": lambda data, min_value: data >= min_value,
    "greater_than": lambda data, min_value: data > min_value,
    "less_than_or_equal_to": lambda data, max_value: data <= max_value,
    "less_than": lambda data, max_value: data < max_value,
    "in_range": lambda data, min_value, max_value, include_min=True, include_max=True: (
        (operator.le if include_min else operator.lt)(min_value, data)
        & (operator.ge if include_max else operator.gt)(max_value, data)
    ),
}


def is_bound(check: Check) -> bool:
    """Whether `check` is a plain builtin bound check, which `failing_rows` runs directly."""
    name = getattr(check._check_fn, "__name__", None)
    return (
        name in _BOUNDS
        and check.is_builtin_check(name)
        and check.groupby is None
        and not check.element_wise
        and check.ignore_na
    )


def within_bounds(checks: list[ColumnCheck], array: pa.Array) -> bool:
    """Whether every non-null value of a float column passes every bound check, each run as
    pandera's builtin over the numpy values pandas would hold; False (check as usual) if unsure."""
    values = array.to_numpy(zero_copy_only=False)  # what `to_series` wraps; null is NaN
    try:
        for check in checks:
            bound = _BOUNDS[check.check._check_fn.__name__]
            passed = np.asarray(bound(values, **check.check._check_kwargs), dtype=bool)
            if not (passed | np.isnan(values)).all():  # NaN: dropped before pandera's check
                return False
    except (TypeError, ValueError, OverflowError):
        return False
    return True
