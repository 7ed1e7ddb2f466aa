"""`json_columns.texts` writes each value as orjson does, whatever path it takes.

The reference is one `orjson.dumps` per value (Python's `json` for the values orjson
refuses: ints beyond 64 bits, strings with lone surrogates), independent of the Arrow
casts and joins under test.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from features.json_columns import texts

NO_DEADLINE = settings(deadline=None)  # the first call compiles regexes and builds tables


def reference(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def objects(items: list[Any]) -> np.ndarray[Any, Any]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


# Every code point, surrogates and controls included.
ANY_TEXT = st.text(st.characters(codec=None, categories=None))
# Few characters, each needing a different treatment: lists often hold one kind alone.
FEW = st.text(
    st.sampled_from(["a", "\u00e9", "\u2028", '"', "\\", "\x00", "\x1f", "\x7f", "\ud800"])
)
PLAIN_TEXT = st.text(st.characters(min_codepoint=0x20, exclude_characters='"\\'))


@NO_DEADLINE
@given(st.lists(st.none() | PLAIN_TEXT | ANY_TEXT | FEW, max_size=30))
def test_strings_and_nulls_are_written_as_orjson_writes_them(items: list[str | None]) -> None:
    assert texts(objects(items)).to_pylist() == [reference(v) for v in items]


@NO_DEADLINE
@given(st.lists(st.none() | PLAIN_TEXT, max_size=30))
def test_strings_without_escapes_are_written_as_orjson_writes_them(items: list[Any]) -> None:
    assert texts(objects(items)).to_pylist() == [reference(v) for v in items]


@NO_DEADLINE
@given(st.lists(st.integers() | st.booleans() | PLAIN_TEXT | st.none(), max_size=30))
def test_mixed_objects_are_written_as_orjson_writes_them(items: list[Any]) -> None:
    assert texts(objects(items)).to_pylist() == [reference(v) for v in items]


@NO_DEADLINE
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=30))
def test_ints_are_written_as_orjson_writes_them(items: list[int]) -> None:
    assert texts(np.array(items, dtype=np.int64)).to_pylist() == [reference(v) for v in items]


@NO_DEADLINE
@given(
    st.lists(
        st.floats() | st.integers(-(2**53), 2**53).map(float) | st.sampled_from([0.0, -0.0, 1e16]),
        min_size=1,
        max_size=30,
    )
)
def test_floats_are_written_as_orjson_writes_them(items: list[float]) -> None:
    written = texts(np.array(items, dtype=np.float64)).to_pylist()
    assert written == [reference(v) for v in items]
    finite = [(text, v) for text, v in zip(written, items, strict=True) if math.isfinite(v)]
    back = [orjson.loads(text) for text, _ in finite]
    assert all(type(v) is float for v in back)
    assert back == [v for _, v in finite]


@NO_DEADLINE
@given(st.lists(st.text(st.sampled_from([",", '"', "a", "\\"]), max_size=6), max_size=30))
def test_strings_holding_the_split_marker_are_written_as_orjson_writes_them(
    items: list[str],
) -> None:
    # Texts such as `x","y` put the marker the column's split cuts at inside a value.
    assert texts(objects(items)).to_pylist() == [reference(v) for v in items]
