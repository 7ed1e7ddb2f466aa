"""Tile step inputs built from per-event rows, as tests write them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from pipelines.records import Entries, Position, int_column


def entries_of(
    rows: Iterable[tuple[str, tuple[Any, ...], Any, Position]],
    columns: Iterable[str] | None = None,
) -> Entries:
    """Columns of (entity id, values, event, position) rows, each event with the fields
    `ts`, `eid` and `row` of `features.schema.Event`; `values` holds `columns` (default:
    every column of a row), None where a row lacks one."""
    table = list(rows)
    n = len(table)
    events = [row[2] for row in table]
    names = dict.fromkeys(c for e in events for c in e.row) if columns is None else columns
    return Entries(
        [row[0] for row in table],
        [row[1] for row in table],
        int_column((e.ts for e in events), n),
        [e.eid for e in events],
        int_column((row[3][0] for row in table), n),
        int_column((row[3][1] for row in table), n),
        {c: np.fromiter((e.row.get(c) for e in events), object, n) for c in names},
    )
