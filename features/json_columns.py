"""Columns of values as JSON text, as orjson writes them, with pyarrow string kernels.

The tiles step writes a batch's tile states as JSON without a Python call per value:
numbers go through Arrow casts; strings that need no escaping are quoted by a pyarrow
join (the usual case: ids, names); other values go through `orjson.dumps` one by one, in
C. The pieces are joined row-wise by pyarrow.

>>> import numpy as np
>>> triple(np.array([1, 2]), np.array(["a", "b"], object), np.array([0.5, 2.0])).to_pylist()
[b'[1,"a",0.5]', b'[2,"b",2.0]']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any, TypeAlias

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

Array = np.ndarray[Any, Any]
# A part of a row-wise join: the same bytes for every row, or a column.
Piece: TypeAlias = bytes | pa.Array
_join = pc.binary_join_element_wise
_STRINGS = {str, type(None)}
SMALL = 4096  # ints below this are written by a lookup
_ESCAPED = r'["\\\x00-\x1f]'  # what orjson escapes in a string: quote, backslash, controls


def _dump(value: Any) -> bytes:
    """orjson's text of a value; Python's for ints beyond 64 bits (orjson refuses them)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def texts(values: Array) -> pa.Array:
    """The JSON text of each value: numbers as shortest round-trip text, integral floats
    with `.0` (as orjson writes them, so they read back as floats), others through orjson.

    >>> texts(np.array([1.0, 2.5, 1e20])).to_pylist(), texts(np.array([-3, 7])).to_pylist()
    ([b'1.0', b'2.5', b'1e+20'], [b'-3', b'7'])
    """
    kind = values.dtype.kind
    if kind in "iu":
        if len(values) and values.min() >= 0 and values.max() < SMALL:
            return _small_ints().take(pa.array(values))  # counts, lengths: a lookup, not a cast
        return pc.cast(pa.array(values), pa.string()).cast(pa.binary())
    if kind == "f" and np.isfinite(values).all():
        text = pc.cast(pa.array(values), pa.string())
        if not (np.trunc(values) == values).any():
            return text.cast(pa.binary())  # no integral value: no `.0` to add
        integral = pc.match_substring_regex(text, r"^-?[0-9]+$")
        if pc.any(integral).as_py():
            text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
        return text.cast(pa.binary())
    items = values.tolist()
    if set(map(type, items)) <= _STRINGS:
        quoted = _quoted(items)
        if quoted is not None:
            return quoted
    try:
        return pa.array(list(map(orjson.dumps, items)), pa.binary())
    except TypeError:  # an int beyond 64 bits, or a string orjson refuses
        return pa.array(list(map(_dump, items)), pa.binary())


@cache
def _small_ints() -> pa.Array:
    """The text of each int in `range(SMALL)`, to take from."""
    return pa.array([str(i).encode() for i in range(SMALL)], pa.binary())


def _quoted(items: list[str | None]) -> pa.Array | None:
    """Strings (or None) as orjson writes them, when none needs an escape; else None.

    >>> _quoted(["a", None, "é"]).to_pylist(), _quoted(['say "hi"'])
    ([b'"a"', b'null', b'"\xc3\xa9"'], None)
    """
    try:
        strings = pa.array(items, pa.string())
    except (UnicodeEncodeError, pa.ArrowException):  # a lone surrogate: orjson decides
        return None
    if pc.any(pc.match_substring_regex(strings, _ESCAPED)).as_py():
        return None
    quoted = _join(b'"', strings.cast(pa.binary()), b'"', b"")
    return pc.fill_null(quoted, b"null") if strings.null_count else quoted


def triple(a: Array, b: Array, c: Array) -> pa.Array:
    """`[a,b,c]` per row, as JSON text."""
    return _join(*triple_pieces(a, b, c), b"")


def triple_pieces(a: Array, b: Array, c: Array) -> list[Piece]:
    """The pieces whose row-wise concatenation is `triple(a, b, c)` (to join with more)."""
    return [b"[", texts(a), b",", texts(b), b",", texts(c), b"]"]


def join_present(parts: Sequence[pa.Array], separator: bytes) -> pa.Array:
    """Element-wise join of the non-null parts with `separator` ("" where all are null).

    pyarrow's own `null_handling="skip"` drops the rows where every part is null (pyarrow
    26), so each part carries its separator and the first one is cut off (as UTF-8:
    `binary_slice` fails on some arrays with empty values; the texts are JSON, so UTF-8).
    """
    led = [_join(separator, part, b"") for part in parts]
    whole = _join(*led, b"", null_handling="replace", null_replacement="").cast(pa.string())
    return pc.utf8_slice_codeunits(whole, len(separator)).cast(pa.binary())
