"""Columns of values as JSON text, as orjson writes them, with pyarrow string kernels.

The tiles step writes a batch's tile states as JSON without a Python call per value:
a column of floats or strings is dumped by orjson at once and split (a comma never occurs
in a float's text; the split of strings is checked), ints go through a lookup or an Arrow
cast, other values through `orjson.dumps` one by one, in C. The pieces are joined
row-wise by pyarrow.

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
_COMMA, _QUOTE = ord(","), ord('"')
SMALL = 4096  # ints below this are written by a lookup
_ESCAPED = r'["\\\x00-\x1f]'  # what orjson escapes in a string: quote, backslash, controls


def _dump(value: Any) -> bytes:
    """orjson's text of a value; Python's for ints beyond 64 bits (orjson refuses them)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def texts(values: Array) -> pa.Array:
    """The JSON text of each value, as orjson writes it: small ints by a lookup; other
    numbers and plain strings from one `orjson.dumps` of the whole column, cut apart with
    numpy; other values one by one.

    >>> texts(np.array([1.0, 2.5, 1e20])).to_pylist(), texts(np.array([-3, 7])).to_pylist()
    ([b'1.0', b'2.5', b'1e+20'], [b'-3', b'7'])
    """
    if not len(values):
        return pa.array([], pa.binary())
    if values.dtype.kind in "iu" and values.min() >= 0 and values.max() < SMALL:
        return _small_ints().take(pa.array(values))  # counts, lengths: a lookup, not a cut
    if values.dtype.kind in "iu" or values.dtype == np.float64:
        # No number's text holds a comma (NaN and infinities are written `null`).
        numbers = np.ascontiguousarray(values, values.dtype.newbyteorder("="))
        listed = orjson.dumps(numbers, option=orjson.OPT_SERIALIZE_NUMPY)
        text = np.frombuffer(listed, np.uint8)[1:-1]
        return _cut(text, np.flatnonzero(text == _COMMA), len(values))
    items = values.tolist()
    kinds = set(map(type, items))
    if kinds == {str}:
        split = _split_strings(items)
        if split is not None:
            return split
    if kinds <= _STRINGS:
        quoted = _quoted(items)
        if quoted is not None:
            return quoted
    try:
        return pa.array(list(map(orjson.dumps, items)), pa.binary())
    except TypeError:  # an int beyond 64 bits, or a string orjson refuses
        return pa.array(list(map(_dump, items)), pa.binary())


def _cut(text: Array, commas: Array, n: int) -> pa.Array:
    """The `n` values of `text` (bytes) separated by the single bytes at `commas`, as a
    binary array: the separators dropped, the values left in place (no copy per value)."""
    offsets = np.empty(n + 1, np.int32)
    offsets[0] = 0
    offsets[1:-1] = commas - np.arange(len(commas))
    offsets[-1] = len(text) - len(commas)
    keep = np.ones(len(text), dtype=bool)
    keep[commas] = False
    data = text[keep]
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _split_strings(items: list[str]) -> pa.Array | None:
    """Strings as orjson writes them, cut out of one dump of the list; None when a string
    holds a quote (its escaped quote could fake or hide a boundary) or orjson refuses one.

    >>> _split_strings(["a", "b,c"]).to_pylist(), _split_strings(['a",', 'b'])
    ([b'"a"', b'"b,c"'], None)
    """
    if not items:
        return None
    try:
        listed = orjson.dumps(items)
    except TypeError:  # a lone surrogate
        return None
    text = np.frombuffer(listed, np.uint8)[1:-1]
    quotes = np.flatnonzero(text == _QUOTE)
    if len(quotes) != 2 * len(items):
        return None  # a quote inside a string
    # With quotes only around each string, the byte after each closing quote but the
    # last is the comma between two.
    return _cut(text, quotes[1:-1:2] + 1, len(items))


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


def concat(*pieces: Piece) -> pa.Array:
    """Each row's concatenation of `pieces` (at least one a column); adjacent constant
    pieces are merged first, as the join costs a step per piece and row.

    >>> concat(b"[", b"1", pa.array([b"a", b"b"]), b"]").to_pylist()
    [b'[1a]', b'[1b]']
    """
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            if not piece:
                continue
            if merged and isinstance(merged[-1], bytes):
                merged[-1] += piece
                continue
        merged.append(piece)
    return _join(*merged, b"")


def triple(a: Array, b: Array, c: Array) -> pa.Array:
    """`[a,b,c]` per row, as JSON text."""
    return concat(*triple_pieces(a, b, c))


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


def grouped(values: pa.Array, counts: Array) -> pa.Array:
    """Runs of consecutive values joined: row i is the concatenation of the next `counts[i]`
    values ("" for none). The runs are adjacent in the data buffer, so nothing is copied.

    >>> grouped(pa.array([b"a", b"b", b"c"]), np.array([2, 0, 1])).to_pylist()
    [b'ab', b'', b'c']
    """
    values = values.cast(pa.binary())
    if len(values) == len(counts) and (counts == 1).all():
        return values
    if values.null_count or counts.sum() != len(values):
        msg = "grouped takes values without nulls, as many as the counts add up to"
        raise ValueError(msg)
    if not len(values):
        values = pa.array([b""], pa.binary())  # buffers to point into
    _, offsets, data = values.buffers()
    at = np.frombuffer(offsets, np.int32, len(values) + 1, 4 * values.offset)
    ends = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=ends[1:])
    return pa.Array.from_buffers(pa.binary(), len(counts), [None, pa.py_buffer(at[ends]), data])
