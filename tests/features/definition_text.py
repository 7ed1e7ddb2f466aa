"""A small valid definition repository and the helpers that break it, for the loader tests.

Tests start from `BASE` and break it with text replacements (`edit`); `position` finds
where a marker sits in the broken text, so a test states "the problem is reported here".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from features.errors import DefinitionError, Problem
from features.loader import load_definitions

BASE = """\
entities:
  - name: user
    join_keys: [user_id]
  - name: user_item
    join_keys: [user_id, item_id]
sources:
  - name: txns
    topic: txns
    key: [user_id]
    event_id: txn_id
    timestamp: ts
    allowed_lateness: 1h
    schema:
      txn_id: {dtype: string}
      user_id: {dtype: string}
      item_id: {dtype: string}
      amount: {dtype: float, checks: {ge: 0}}
      merchant: {dtype: string, nullable: true}
      quantity: {dtype: int}
      flagged: {dtype: bool}
      ts: {dtype: timestamp}
feature_views:
  - name: user_txn
    entity: user
    source: txns
    ttl: 7d
    owner: risk
    tags: {tier: gold}
    features:
      - {name: n_1h, function: count, window: 1h}
      - {name: amount_sum_1d, function: sum, column: amount, window: 1d}
      - {name: last_merchant, function: last, column: merchant}
      - {name: last_3, function: last_n, column: amount, n: 3, window: 1h}
"""

SUM = "{name: amount_sum_1d, function: sum, column: amount, window: 1d}"
LAST_N = "{name: last_3, function: last_n, column: amount, n: 3, window: 1h}"
Edit = tuple[str, str]


def edit(*edits: Edit, base: str = BASE) -> str:
    """`base` with each `(old, new)` replacement applied once; `old` must be present."""
    text = base
    for old, new in edits:
        assert old in text, f"test bug: {old!r} not in the text"
        text = text.replace(old, new, 1)
    return text


def position(text: str, marker: str) -> tuple[int, int]:
    """1-based line and column of the first occurrence of `marker` in `text`.

    A `«` inside the marker moves the point to that place (`"source: «txn"` → `txn`).
    """
    before, point, after = marker.partition("«")
    index = text.index(before + after) + (len(before) if point else 0)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def problems_of(path: Path) -> list[Problem]:
    """The problems `load_definitions(path)` raises (it must raise)."""
    with pytest.raises(DefinitionError) as info:
        load_definitions(path)
    return info.value.problems


def write(directory: Path, name: str, text: str) -> Path:
    """Write `text` to `directory/name` and return the path."""
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
