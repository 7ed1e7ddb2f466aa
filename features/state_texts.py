"""Feature states as JSON text, a batch of tiles at a time (the encoding side of
`features.column_states`).

`state_pieces` gives the pieces whose row-wise concatenation (`json_columns.concat`) is
each row's state as `orjson.dumps(columns.state(row))` writes it; `TileColumns` joins them
with its own parts in one pass.

>>> from features.model import Feature
>>> from features.tiles import CompiledFeature
>>> from features.column_states import feature_columns
>>> mean = feature_columns(CompiledFeature.of(Feature("m", "mean", "x", 60, 60)), "float")
>>> mean.grow(1)
>>> eids = np.array(["a", "b"], object)
>>> mean.fold(np.array([0, 0]), np.array([1, 2]), eids, np.array([1.0, 2.5]))
>>> concat(*state_pieces(mean, np.array([0]))).to_pylist()
[b'[2,3.5]']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.column_states import (
    CountColumns,
    ExtremeColumns,
    LastNColumns,
    MeanColumns,
    OrderedColumns,
    StddevColumns,
    SumColumns,
)
from features.json_columns import (
    Picked,
    Piece,
    concat,
    grouped,
    int_texts,
    texts,
    triple_pieces,
)

Array = np.ndarray[Any, Any]


def state_pieces(columns: CountColumns, rows: Array) -> list[Piece | Picked]:
    """The pieces whose row-wise concatenation is each row's state as JSON text (rows
    holding a state), for the caller's own join: small ints as picks (`int_texts`), which
    `json_columns.assemble` joins with the constants around them."""
    if isinstance(columns, MeanColumns):
        return [b"[", int_texts(columns.n[rows]), b",", texts(columns.s[rows]), b"]"]
    if isinstance(columns, SumColumns):
        return [int_texts(columns.s[rows])]
    if isinstance(columns, ExtremeColumns):
        return [int_texts(columns.v[rows])]
    if isinstance(columns, OrderedColumns):
        return triple_pieces(columns.ts[rows], columns.e[rows], columns.v[rows])
    if isinstance(columns, LastNColumns):
        return _last_n_pieces(columns, rows)
    if isinstance(columns, StddevColumns):
        return triple_pieces(columns.n[rows], columns.mean[rows], columns.m2[rows])
    return [int_texts(columns.n[rows])]


def _last_n_pieces(columns: LastNColumns, rows: Array) -> list[Piece]:
    """last_n's entries row after row, newest first: one triple each, grouped into rows."""
    k = columns.k[rows]
    total = int(k.sum())
    if not total:
        return [pa.array([b"[]"] * len(rows), pa.binary())]
    ends = np.cumsum(k)
    slot = np.arange(total) - np.repeat(ends - k, k)
    at = np.repeat(rows, k)
    ts, e, v = np.empty(total, np.int64), np.empty(total, object), np.empty(total, columns.kind)
    for j in range(columns.size):
        pick = np.flatnonzero(slot == j)
        ts[pick] = getattr(columns, f"ts{j}")[at[pick]]
        e[pick] = getattr(columns, f"e{j}")[at[pick]]
        v[pick] = getattr(columns, f"v{j}")[at[pick]]
    last = np.zeros(total, dtype=bool)
    last[ends[k > 0] - 1] = True
    comma = pc.if_else(pa.array(last), b"", b",")
    return [b"[", grouped(concat(*triple_pieces(ts, e, v), comma), k), b"]"]
