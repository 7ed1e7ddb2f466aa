"""`_by_row_time`, the order `OrderedColumns.fold` picks its winners by, is the lexsort it
stands for, for rows and times of any span (packed in one int64 only when they fit)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.column_states import _by_row_time

SCALES = st.sampled_from([1, 1_000_000, 2**40, 2**58])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(-4, 4)), min_size=1, max_size=50),
    SCALES,
    st.sampled_from([0, 2**20, 2**40, 2**62]),
    st.integers(-(2**62), 2**62),
    st.booleans(),
)
def test_packed_order_is_the_lexsort(
    pairs: list[tuple[int, int]], scale: int, row_base: int, time_base: int, latest: bool
) -> None:
    rows = np.array([row_base + r for r, _ in pairs], dtype=np.int64)
    ts = np.array([time_base + t * scale for _, t in pairs], dtype=np.int64)
    arrival = np.arange(len(rows))
    expected = np.lexsort((-arrival if latest else arrival, ts, rows))
    assert _by_row_time(rows, ts, latest).tolist() == expected.tolist()
