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
from functools import cache, lru_cache
from typing import Any, TypeAlias

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

Array = np.ndarray[Any, Any]
# A part of a row-wise join: the same bytes for every row, or a column.
Piece: TypeAlias = bytes | pa.Array
# A column's values at the given positions, one per item (`assemble`: no copy made first).
Picked: TypeAlias = tuple[pa.Array, Array]
# Items of `assemble`'s rows: `counts[i]` of them for row i (None: one each), each the
# concatenation of the pieces, whose columns have one value per item.
Part: TypeAlias = tuple[Array | None, Sequence[Piece | Picked]]
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
    numbers and plain strings (nulls among them) from one `orjson.dumps` of the whole
    column, cut apart with numpy; other values one by one.

    >>> texts(np.array([1.0, 2.5, 1e20])).to_pylist(), texts(np.array([-3, 7])).to_pylist()
    ([b'1.0', b'2.5', b'1e+20'], [b'-3', b'7'])
    """
    return _texts(values, False)


def comma_texts(values: Array) -> pa.Array:
    """`texts(values)`, each followed by a comma, as a list's values but the last are: cut
    from the same dump with the commas kept, so nothing is compacted, and `[a,b]` is the
    pieces `[`, `comma_texts(a)`, `texts(b)`, `]` (a row-wise join costs a step a piece).

    >>> comma_texts(np.array([1.5, 2.0])).to_pylist(), comma_texts(np.array([3])).to_pylist()
    ([b'1.5,', b'2.0,'], [b'3,'])
    """
    return _texts(values, True)


def _texts(values: Array, comma: bool) -> pa.Array:
    """`comma_texts(values)` if `comma`, else `texts(values)`."""
    if not len(values):
        return pa.array([], pa.binary())
    if _small(values):
        return _small_ints(comma).take(pa.array(values))  # a lookup, not a cut
    if values.dtype.kind in "iu" or values.dtype == np.float64:
        # No number's text holds a comma (NaN and infinities are written `null`).
        numbers = np.ascontiguousarray(values, values.dtype.newbyteorder("="))
        listed = orjson.dumps(numbers, option=orjson.OPT_SERIALIZE_NUMPY)
        return _cut(listed, None, len(values), comma)
    items = values.tolist()
    kinds = set(map(type, items))
    if kinds <= _STRINGS:
        nulls = items.count(None) if type(None) in kinds else 0
        split = _split_strings(items, nulls, comma) if nulls < len(items) else None
        if split is not None:
            return split
        quoted = _quoted(items)
        if quoted is not None:
            return _join(quoted, b",", b"") if comma else quoted
    try:
        each = pa.array(list(map(orjson.dumps, items)), pa.binary())
    except TypeError:  # an int beyond 64 bits, or a string orjson refuses
        each = pa.array(list(map(_dump, items)), pa.binary())
    return _join(each, b",", b"") if comma else each


def int_texts(values: Array) -> Piece | Picked:
    """`texts` of ints, as picks from a table of texts when all are small (nothing copied
    until the join that uses them).

    >>> int_texts(np.array([3, 12]))[0].take(pa.array([3, 12])).to_pylist()
    [b'3', b'12']
    """
    return (_small_ints(), values) if _small(values) else texts(values)


def _small(values: Array) -> bool:
    """Whether `values` are ints in `range(SMALL)` (at least one)."""
    return (
        values.dtype.kind in "iu" and len(values) > 0 and 0 <= values.min() <= values.max() < SMALL
    )


def _cut(listed: bytes, commas: Array | None, n: int, comma: bool) -> pa.Array:
    """The `n` values of a dumped list (`[a,b,…]`), split at the commas at `commas`
    (positions after the `[`; None: every comma), as a binary array: each value's comma
    kept (`comma`; the last given one) or dropped; the values left in place."""
    text = np.frombuffer(listed, np.uint8)[1:]
    if commas is None:
        commas = np.flatnonzero(text == _COMMA)
    offsets = np.empty(n + 1, np.int32)
    offsets[0] = 0
    if comma:
        data = text.copy()
        data[-1] = _COMMA  # for the `]`
        offsets[1:-1] = commas + 1
        offsets[-1] = len(data)
    else:
        offsets[1:-1] = commas - np.arange(len(commas))
        offsets[-1] = len(text) - 1 - len(commas)
        keep = np.ones(len(text), dtype=bool)
        keep[commas] = False
        keep[-1] = False
        data = text[keep]
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _split_strings(items: list[str | None], nulls: int, comma: bool = False) -> pa.Array | None:
    """Strings (and `nulls` Nones) as orjson writes them, cut out of one dump of the list
    (`_cut`: `comma`); None when a string holds a quote (its escaped quote could fake or
    hide a boundary) or orjson refuses one.

    >>> _split_strings(["a", "b,c"], 0).to_pylist(), _split_strings(['a",', 'b'], 0)
    ([b'"a"', b'"b,c"'], None)
    >>> _split_strings(["a,", None, "b"], 1, True).to_pylist()
    [b'"a,",', b'null,', b'"b",']
    """
    if not items:
        return None
    try:
        listed = orjson.dumps(items)
    except TypeError:  # a lone surrogate
        return None
    text = np.frombuffer(listed, np.uint8)[1:-1]
    quotes = np.flatnonzero(text == _QUOTE)
    if len(quotes) != 2 * (len(items) - nulls):
        return None  # a quote inside a string
    if not nulls:
        # With quotes only around each string, the byte after each closing quote but the
        # last is the comma between two.
        return _cut(listed, quotes[1:-1:2] + 1, len(items), comma)
    # The commas between values are those outside the quotes: after an even number.
    commas = np.flatnonzero(text == _COMMA)
    return _cut(listed, commas[np.searchsorted(quotes, commas) % 2 == 0], len(items), comma)


@cache
def _small_ints(comma: bool = False) -> pa.Array:
    """The text of each int in `range(SMALL)` (followed by a comma if `comma`), to take from."""
    end = "," if comma else ""
    return pa.array([f"{i}{end}".encode() for i in range(SMALL)], pa.binary())


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


def concat(*pieces: Piece | Picked) -> pa.Array:
    """Each row's concatenation of `pieces` (at least one a column); adjacent constant
    pieces are merged first, as the join costs a step per piece and row.

    >>> concat(b"[", b"1", pa.array([b"a", b"b"]), b"]").to_pylist()
    [b'[1a]', b'[1b]']
    """
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, tuple):
            piece = piece[0].take(pa.array(piece[1]))
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
    return [b"[", comma_texts(a), comma_texts(b), texts(c), b"]"]


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


def assemble(n: int, parts: Sequence[Part]) -> pa.Array:
    """Each of `n` rows as the concatenation of its items of every part, in part order.

    Every piece of every item is a segment, each copied once by one `take` from all the
    columns and constants: cheaper per segment than a join, and no item is joined first
    to be grouped and copied again.

    >>> keys = pa.array([b"a", b"b"])
    >>> pairs = (np.array([2, 0]), [(keys, np.array([1, 0])), b";"])
    >>> assemble(2, [(None, [keys, b"="]), pairs]).to_pylist()
    [b'a=b;a;', b'b=']
    """
    plan: list[tuple[Array | None, list[Piece | Picked]]] = []
    for counts, pieces in parts:
        if counts is not None and not counts.any():
            continue
        if counts is None and plan and plan[-1][0] is None:
            plan[-1][1].extend(pieces)  # adjacent one-per-row parts: constants may merge
        else:
            plan.append((counts, list(pieces)))
    columns: list[pa.Array] = []
    base: dict[int, int] = {}  # id of a column → where its values start in `columns`
    size = 0
    consts: list[bytes] = []
    merged: list[tuple[Array | None, list[bytes | Picked]]] = []
    for counts, pieces in plan:
        items = n if counts is None else int(counts.sum())
        segments: list[bytes | Picked] = []
        for piece in _fused(pieces):
            if isinstance(piece, bytes):
                segments.append(piece)
                continue
            values, at = piece if isinstance(piece, tuple) else (piece, None)
            if id(values) not in base:
                if values.null_count:
                    msg = "assemble takes columns without nulls"
                    raise ValueError(msg)
                base[id(values)] = size
                columns.append(values.cast(pa.binary()))
                size += len(values)
            start = base[id(values)]
            segments.append((values, start + (np.arange(items) if at is None else at)))
        merged.append((counts, segments))
    codes = []  # per part: its items' segments as dictionary positions
    for counts, segments in merged:
        items = n if counts is None else int(counts.sum())
        code = np.empty((len(segments), items), np.int64)  # segment by segment
        for j, segment in enumerate(segments):
            if isinstance(segment, bytes):
                code[j] = size + len(consts)
                consts.append(segment)
            else:
                code[j] = segment[1]
        codes.append((counts, code))
    if not codes:
        return pa.array([b""] * n, pa.binary())
    if len(codes) == 1 and codes[0][0] is None:
        flat, starts = codes[0][1].T.reshape(-1), np.arange(n + 1) * codes[0][1].shape[0]
    else:
        flat, starts = _placed(n, codes)
    dictionary = pa.concat_arrays([*columns, pa.array(consts, pa.binary())])
    out = pc.take(dictionary, pa.array(flat))
    offsets = np.frombuffer(out.buffers()[1], np.int32, len(out) + 1, 4 * out.offset)
    return pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets[starts]), out.buffers()[2]]
    )


FUSED = 64  # picks from tables this short take in the constants around them (`_fused`)


def _fused(pieces: Sequence[Piece | Picked]) -> list[Piece | Picked]:
    """`pieces` with adjacent constants merged, and each constant next to a pick from a
    short table or from the small ints' texts put into the table's values: one segment of
    `assemble` instead of two or three (a constant between two such picks goes to the first)."""
    out: list[Piece | Picked] = []
    around: dict[int, tuple[Picked, list[bytes]]] = {}  # place in `out` → pick, [before, after]
    for piece in pieces:
        if isinstance(piece, bytes):
            if not piece:
                continue
            if out and len(out) - 1 in around:
                around[len(out) - 1][1][1] += piece
            elif out and isinstance(out[-1], bytes):
                out[-1] += piece
            else:
                out.append(piece)
            continue
        if isinstance(piece, tuple) and (piece[0] is _small_ints() or len(piece[0]) <= FUSED):
            last = out[-1] if out else b""
            if isinstance(last, bytes) and last:
                out.pop()
            around[len(out)] = (piece, [last if isinstance(last, bytes) else b"", b""])
        out.append(piece)
    for i, ((values, at), (before, after)) in around.items():
        if values is _small_ints():
            top = int(at.max()) if len(at) else 0
            values = _int_table(before, after, max(FUSED, 1 << top.bit_length()))
        elif (before or after) and not values.null_count:  # (nulls: `assemble` refuses them)
            texts = values.cast(pa.binary()).to_pylist()
            values = pa.array([before + t + after for t in texts], pa.binary())
        else:
            continue
        out[i] = (values, at)
    return out


@lru_cache(maxsize=128)
def _int_table(before: bytes, after: bytes, size: int) -> pa.Array:
    """`before`, the text of the int and `after`, for each int in `range(size)`."""
    return pa.array([b"%b%d%b" % (before, i, after) for i in range(size)], pa.binary())


def _placed(n: int, codes: Sequence[tuple[Array | None, Array]]) -> tuple[Array, Array]:
    """The parts' segment codes (per part: segment by segment, item by item) in row order
    (row by row, part by part, item by item), and where each row's segments start (n + 1
    positions). One scatter per segment: faster than one of a whole part."""
    lengths = np.zeros(n, np.int64)
    for counts, code in codes:
        lengths += code.shape[0] if counts is None else counts * code.shape[0]
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=starts[1:])
    flat = np.empty(starts[-1], np.int64)
    at = starts[:-1].copy()  # where each row's next item goes
    for counts, code in codes:
        width, items = code.shape
        if not width:
            continue
        if counts is None:
            where = at
        elif counts.max() <= 1:
            where = at[counts > 0]
        else:
            owner = np.repeat(np.arange(n), counts)
            first = at - (np.cumsum(counts) - counts) * width  # where item 0 would go
            where = first[owner] + np.arange(0, items * width, width)
        for j in range(width):
            flat[j:][where] = code[j]
        at += width if counts is None else counts * width
    return flat, starts
