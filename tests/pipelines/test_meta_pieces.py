"""The `m` field's pieces are its RESP bytes whichever way they are built: the fixed-width
tail (`fixed_rows`) when the times have one digit count, texts joined otherwise; and
`fixed_rows` writes constants and ints of one width, or declines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from features.json_columns import SMALL, assemble
from pipelines.sinks import tile_commands as cmd
from pipelines.sinks.redis_tiles import bulk, meta_head
from pipelines.sinks.tile_commands import fixed_rows
from tests.features.test_row_assembly import BYTES

Array = np.ndarray[Any, Any]
INTS = st.integers(0, 300) | st.integers(-3, SMALL + 3) | st.integers(0, 2**63 - 1)

TIMES = st.integers(1_795_716_000_000_000, 1_795_716_099_999_999) | st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.text(max_size=6), TIMES, TIMES, st.booleans()), min_size=1, max_size=8)
)
def test_meta_pieces_are_the_m_field(rows: list[tuple[str, int, int, bool]]) -> None:
    heads = pa.array([meta_head([key], "v1") for key, _, _, _ in rows], pa.binary())
    max_ts = np.array([t for _, t, _, _ in rows], np.int64)
    folded = np.array([t if same else f for _, t, f, same in rows], np.int64)
    expected = [
        b"$1\r\nm\r\n" + bulk(head + b',"max_ts":%d,"folded":%d}' % (t, f))
        for head, t, f in zip(heads.to_pylist(), max_ts.tolist(), folded.tolist(), strict=True)
    ]
    pieces = cmd.meta_pieces(heads, max_ts, folded)
    assert assemble(len(rows), [(None, pieces)]).to_pylist() == expected


@st.composite
def fixed_layouts(draw: st.DrawFn) -> list[bytes | Array]:
    """Constants and int columns, most of one digit count, some of mixed counts or signs."""
    n = draw(st.integers(1, 8))
    pieces: list[bytes | Array] = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            pieces.append(draw(BYTES))
            continue
        digits = draw(st.integers(1, 19))
        low = 0 if digits == 1 else 10 ** (digits - 1)
        high = min(10**digits - 1, 2**63 - 1)
        values = st.integers(low, high) | (
            st.integers(-(2**63), 2**63 - 1) if draw(st.booleans()) else st.nothing()
        )
        ints = draw(st.lists(values, min_size=n, max_size=n))
        dtype = draw(st.sampled_from([np.int64, np.uint64, ">i8"]))
        pieces.append(
            np.array(ints, np.int64).astype(dtype) if min(ints) >= 0 else np.array(ints, np.int64)
        )
    if all(isinstance(p, bytes) for p in pieces):
        pieces.append(np.array(draw(st.lists(INTS, min_size=n, max_size=n)), np.int64))
    return pieces


@settings(max_examples=300, deadline=None)
@given(fixed_layouts())
def test_fixed_rows_are_the_texts_joined_when_widths_agree(pieces: list[bytes | Array]) -> None:
    """The rows as `%d` writes them, or None exactly when a column's widths differ or it
    holds a negative int."""
    n = next(len(p) for p in pieces if not isinstance(p, bytes))
    texts = [[p] * n if isinstance(p, bytes) else [b"%d" % v for v in p.tolist()] for p in pieces]
    rows = [b"".join(column[i] for column in texts) for i in range(n)]
    columns = [t for p, t in zip(pieces, texts, strict=True) if not isinstance(p, bytes)]
    uniform = all(len(set(map(len, t))) == 1 and b"-" not in b"".join(t) for t in columns)
    fixed = fixed_rows(pieces)
    assert (fixed is not None) == uniform
    if fixed is not None:
        assert fixed.to_pylist() == rows


def test_fixed_rows_of_one_column_twice_and_of_nothing() -> None:
    ts = np.array([1_795_716_070_000_000, 1_795_716_070_000_001])
    assert fixed_rows([ts, b",", ts]).to_pylist() == [b"%d,%d" % (t, t) for t in ts.tolist()]
    assert fixed_rows([b"x", np.zeros(0, np.int64)]) is None
