"""What validating a batch gives: the accepted events as aligned columns and as `Event`s.

`features.schema.SourceValidator` makes them; batch-wise callers (the stream) read the
columns, others (push, backfill, tests) the events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple, cast

import pyarrow as pa

from features.payloads import Rejected

Finished = tuple[list[dict[str, Any]], list[int]]  # the rows and the event times


class Event(NamedTuple):
    """One event that passed its source schema, normalized (times in µs UTC).

    A named tuple: a batch makes one per event, each in C (`_events`), at half the cost
    of a dataclass's `__init__`.
    """

    index: int  # type: ignore[assignment]  # position in the input batch (hides tuple.index)
    ts: int  # event time, µs UTC
    eid: Any  # event id (str or int, per the schema dtype)
    key: tuple[Any, ...]  # source key values, in Source.key order
    row: dict[str, Any]  # the schema columns; timestamp columns as µs ints; None for nulls
    extra: dict[str, Any]  # fields not in the schema (kept for the offline `_extra` column)
    correlation_id: str | None


@dataclass(slots=True)
class Validated:
    """A validated batch: the accepted events as aligned columns (input order), the rejects,
    and one typed Arrow array per schema column holding the accepted events' values.

    Batch-wise callers read the columns; `rows` and `events` finish each event's row first
    (timestamps as µs, floats given as ints as floats; for a batch read as columns, its
    payloads decoded first), work a caller of the columns alone never pays for.
    """

    rejected: list[Rejected]
    index: list[int]  # position in the input batch
    eids: list[Any]
    keys: list[tuple[Any, ...]]
    extras: list[dict[str, Any]] | None  # None: no event has fields beyond the schema
    correlation_ids: list[str | None]
    columns: list[pa.Array]
    # The rows and the event times (µs), made on the first call and then kept.
    finish: Callable[[], Finished] = field(repr=False, compare=False, default=lambda: ([], []))
    # The correlation ids as an Arrow string array when the validator built one (JSON
    # batches, where the conversion also checks their type); None: not built.
    correlation_array: pa.Array | None = None

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Each accepted event's row: its schema columns, timestamps as µs ints."""
        return self.finish()[0]

    @property
    def events(self) -> list[Event]:
        """The accepted events, in input order (their rows finished)."""
        rows, ts = self.finish()
        extras = self.extras if self.extras is not None else [{} for _ in self.index]
        return _events(self.index, ts, self.eids, self.keys, rows, extras, self.correlation_ids)


def _events(*columns: list[Any]) -> list[Event]:
    """Events from their fields' columns: `tuple.__new__` over `zip` runs in C (no
    Python `__new__` per event, as `Event(...)` or `Event._make` would call)."""
    made = map(tuple.__new__, repeat(Event), zip(*columns, strict=True))
    return cast(list[Event], list(made))
