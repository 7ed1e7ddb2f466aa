"""The cut of a dumped list of strings and nulls (`texts`' fast path) writes each value
as `orjson.dumps` of it alone, whatever commas, quotes and nulls the values hold."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from features.json_columns import comma_texts, texts

# Values built of the bytes the cut looks at, and nulls among them.
MARKERS = st.lists(st.sampled_from([",", '"', "a", "\\", "null", "é"]), max_size=5).map("".join)


def _objects(items: list[Any]) -> np.ndarray[Any, Any]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | MARKERS, max_size=30))
def test_strings_and_nulls_are_cut_where_orjson_writes_them(items: list[str | None]) -> None:
    assert texts(_objects(items)).to_pylist() == [orjson.dumps(v) for v in items]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | st.text(st.sampled_from([",", "a"]), max_size=4), min_size=1))
def test_strings_with_commas_and_nulls_are_cut_between_values(items: list[str | None]) -> None:
    # No quotes inside: the split itself answers (no fallback hides a wrong cut).
    assert texts(_objects(items)).to_pylist() == [orjson.dumps(v) for v in items]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-9, 9) | st.booleans() | MARKERS, max_size=12))
def test_strings_among_other_values_are_written_as_orjson_writes_them(items: list[Any]) -> None:
    # Strings with quotes beside numbers can balance the quote count the cut checks.
    assert texts(_objects(items)).to_pylist() == [orjson.dumps(v) for v in items]


VALUES = st.lists(
    st.integers(-(2**63), 2**63 - 1) | st.floats() | st.none() | MARKERS | st.booleans(),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(VALUES, st.sampled_from([None, np.int64, np.float64, np.uint8]))
def test_comma_texts_are_the_texts_each_followed_by_a_comma(items: list[Any], dtype: Any) -> None:
    if dtype is not None:
        numbers = [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]
        try:
            values = np.array(numbers, dtype)
        except (OverflowError, ValueError):  # out of range for the dtype
            return
    else:
        values = _objects(items)
    assert comma_texts(values).to_pylist() == [t + b"," for t in texts(values).to_pylist()]
    assert texts(values).to_pylist() == [_reference(v) for v in values.tolist()]


def _reference(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()
