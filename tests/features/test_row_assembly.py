"""`json_columns.assemble` builds each row as the plain concatenation of its parts' items.

The reference walks the rows in Python: for each row, each part in order, each of the
row's items, each piece (a constant, the item's value of a column, or a picked value).
Columns are shared between parts and picked from, as the tile writes do with the keys;
picks of short tables and of the small ints' texts take in the constants around them
(`json_columns._fused`), which must not change a row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.json_columns import (
    FUSED,
    SMALL,
    Part,
    Picked,
    Piece,
    assemble,
    concat,
    int_texts,
    texts,
)

Array = np.ndarray[Any, Any]
BYTES = st.binary(max_size=6)
INTS = st.integers(0, 300) | st.integers(-3, SMALL + 3) | st.integers(0, 2**63 - 1)


def reference(n: int, parts: list[Part]) -> list[bytes]:
    """Each row's bytes, one value at a time."""
    rows = [b""] * n
    for counts, pieces in parts:
        per_row = np.ones(n, np.int64) if counts is None else counts
        item = 0
        for row in range(n):
            for _ in range(int(per_row[row])):
                for piece in pieces:
                    rows[row] += _value(piece, item)
                item += 1
    return rows


def _value(piece: Piece | Picked, item: int) -> bytes:
    if isinstance(piece, bytes):
        return piece
    if isinstance(piece, tuple):
        values, at = piece
        return bytes(values[int(at[item])].as_py())
    return bytes(piece[item].as_py())


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, list[Part]]:
    """Rows and parts: one-per-row parts (adjacent ones too) and parts of 0-3 items a row,
    with constants (empty ones too), columns, columns shared across parts, picks of short
    and long tables, and int texts (picks of the small ints' table, or a column when some
    are not small)."""
    n = draw(st.integers(1, 6))
    shared = pa.array(draw(st.lists(BYTES, min_size=n, max_size=n)), pa.binary())
    parts: list[Part] = []
    for _ in range(draw(st.integers(1, 5))):
        counts = draw(st.none() | st.lists(st.integers(0, 3), min_size=n, max_size=n))
        by_row = None if counts is None else np.array(counts, np.int64)
        items = n if by_row is None else int(by_row.sum())
        owners = np.arange(n) if by_row is None else np.repeat(np.arange(n), by_row)
        pieces: list[Piece | Picked] = []
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from(["const", "const", "column", "shared", "pick", "ints"]))
            if kind == "const":
                pieces.append(draw(BYTES))
            elif kind == "column":
                values = draw(st.lists(BYTES, min_size=items, max_size=items))
                pieces.append(pa.array(values, pa.binary()))
            elif kind == "shared":
                pieces.append((shared, owners))  # each item takes its row's value
            elif kind == "ints":
                ints = draw(st.lists(INTS, min_size=items, max_size=items))
                pieces.append(int_texts(np.array(ints, np.int64)) if items else b"")
            else:
                size = draw(st.sampled_from([1, 4, FUSED, FUSED + 1]))
                table = pa.array(draw(st.lists(BYTES, min_size=size, max_size=size)), pa.binary())
                at = draw(st.lists(st.integers(0, size - 1), min_size=items, max_size=items))
                pieces.append((table, np.array(at, np.int64)))
        if by_row is None and draw(st.booleans()):
            pieces.append(shared)  # the same column object as the picks: put in once
        parts.append((by_row, pieces))
    return n, parts


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_assemble_is_the_rows_concatenation(layout: tuple[int, list[Part]]) -> None:
    n, parts = layout
    assert assemble(n, parts).to_pylist() == reference(n, parts)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(BYTES, min_size=1, max_size=3), min_size=1, max_size=5))
def test_assemble_of_one_item_each_is_concat(columns: list[list[bytes]]) -> None:
    """One-per-row parts only (the single-matrix path): the same rows as `concat`."""
    n = len(columns[0])
    arrays = [pa.array([c[i % len(c)] for i in range(n)], pa.binary()) for c in columns]
    pieces: list[Piece | Picked] = [b"<", arrays[0]]
    for array in arrays[1:]:
        pieces += [b",", array]
    half = len(pieces) // 2
    parts: list[Part] = [(None, pieces[:half]), (None, [*pieces[half:], b">"])]
    assert assemble(n, parts).to_pylist() == concat(*pieces, b">").to_pylist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-5, 2 * SMALL) | st.integers(-(2**63), 2**63 - 1), max_size=8))
def test_int_texts_are_texts(values: list[int]) -> None:
    """Picks from the table of small ints read as `texts` writes them (any ints)."""
    ints = np.array(values, np.int64)
    if len(ints):
        assert concat(int_texts(ints), b"").to_pylist() == texts(ints).to_pylist()


def test_assemble_refuses_nulls() -> None:
    with pytest.raises(ValueError, match="without nulls"):
        assemble(1, [(None, [pa.array([None], pa.binary())])])
