"""`assemble` joins picks of small tables (ints' texts, short columns) with the constants
around them: the rows must still be the plain concatenation of their parts' items.

The reference is the row-by-row walk of tests/features/test_row_assembly.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from features.json_columns import FUSED, SMALL, Part, Picked, Piece, assemble, int_texts
from tests.features.test_row_assembly import BYTES, reference

Array = np.ndarray[Any, Any]
INTS = st.integers(0, 300) | st.integers(-3, SMALL + 3) | st.integers(0, 2**63 - 1)


@st.composite
def int_layouts(draw: st.DrawFn) -> tuple[int, list[Part]]:
    """Parts mixing constants, int texts (picks from the small ints' table, or a column
    when some are not small), picks from short and long tables, and columns."""
    n = draw(st.integers(1, 6))
    parts: list[Part] = []
    for _ in range(draw(st.integers(1, 4))):
        counts = draw(st.none() | st.lists(st.integers(0, 3), min_size=n, max_size=n))
        by_row = None if counts is None else np.array(counts, np.int64)
        items = n if by_row is None else int(by_row.sum())
        pieces: list[Piece | Picked] = []
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from(["const", "const", "ints", "ints", "table", "column"]))
            if kind == "const":
                pieces.append(draw(BYTES))
            elif kind == "ints":
                ints = draw(st.lists(INTS, min_size=items, max_size=items))
                pieces.append(int_texts(np.array(ints, np.int64)) if items else b"")
            elif kind == "table":
                size = draw(st.sampled_from([1, 3, FUSED, FUSED + 1]))
                table = pa.array([b"%d;" % i for i in range(size)], pa.binary())
                at = draw(st.lists(st.integers(0, size - 1), min_size=items, max_size=items))
                pieces.append((table, np.array(at, np.int64)))
            else:
                values = draw(st.lists(BYTES, min_size=items, max_size=items))
                pieces.append(pa.array(values, pa.binary()))
        parts.append((by_row, pieces))
    return n, parts


@settings(max_examples=300, deadline=None)
@given(int_layouts())
def test_fused_picks_give_the_rows_concatenation(layout: tuple[int, list[Part]]) -> None:
    n, parts = layout
    assert assemble(n, parts).to_pylist() == reference(n, parts)
