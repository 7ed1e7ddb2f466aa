"""The items that travel between the pipeline's steps: whole batches, never single events.

Per-event Python work is the cost that matters (notes §9), so every step handles one of
these batches per call. Positions (`(major, minor)`: a Redis entry id, a Kafka offset, a
line number) identify an event in its origin partition; the dead-letter writer uses them
to never write the same letter twice after a replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

Position = tuple[int, int]
Array = np.ndarray[Any, Any]


def int_column(values: Iterable[int], n: int) -> Array:
    """An int64 column of `n` ints."""
    return np.fromiter(values, np.int64, n)


@dataclass(slots=True)
class RawBatch:
    """Undecoded payloads of one source read from one origin partition, in broker order:
    each payload's position `(major[i], minor[i])` and ingest time (µs) as int64 columns."""

    source: str
    part: str
    major: Array
    minor: Array
    ingested: Array
    payloads: list[bytes]

    @classmethod
    def of(
        cls,
        source: str,
        part: str,
        positions: Sequence[Position],
        ingested: Sequence[int],
        payloads: list[bytes],
    ) -> RawBatch:
        """A batch of (major, minor) position pairs (sources and tests hold them so)."""
        n = len(positions)
        return cls(
            source,
            part,
            int_column((p[0] for p in positions), n),
            int_column((p[1] for p in positions), n),
            int_column(ingested, n),
            payloads,
        )

    def position(self, i: int) -> Position:
        """The position of payload `i`."""
        return (int(self.major[i]), int(self.minor[i]))


@dataclass(slots=True)
class LagReport:
    """How far one origin partition is behind its broker head."""

    source: str
    part: str
    messages: int
    seconds: float


@dataclass(slots=True)
class DeadLetter:
    """One rejected event: where it came from, the original payload, why, and its id."""

    position: Position
    payload: bytes
    reasons: list[str]
    correlation_id: str | None


@dataclass(slots=True)
class DeadLetterBatch:
    """Dead letters of one source from one ordered stream (`mark`), counted as `stat`."""

    source: str
    mark: str
    stage: str
    letters: list[DeadLetter]


@dataclass(slots=True)
class EventColumns:
    """Validated events as aligned columns, in broker order: what the judge, the router and
    the tiles read of them. No per-event object is built, kept or freed on the way."""

    ts: Array  # event times, µs (int64)
    eids: list[Any]  # event ids
    keys: list[tuple[Any, ...]]  # source key values, in `Source.key` order
    ids: list[str]  # the keys' entity ids (`layout.entity_id`)
    cids: list[str | None]  # correlation ids
    major: Array  # origin position (int64)
    minor: Array
    ingested: Array  # broker accept times, µs (int64)
    table: Any  # the events' Arrow table in the log schema (`parquet_log.columns_to_table`)

    def __len__(self) -> int:
        return len(self.eids)

    def take(self, at: Sequence[int] | Array) -> EventColumns:
        """The events at positions `at`, in that order."""
        at = np.asarray(at, dtype=np.int64)
        rows = at.tolist()
        if len(rows) == 1:
            row = rows[0]
            pick: Any = lambda seq: [seq[row]]  # noqa: E731
        else:
            get = itemgetter(*rows)
            pick = lambda seq: list(get(seq))  # noqa: E731
        return EventColumns(
            self.ts[at],
            pick(self.eids),
            pick(self.keys),
            pick(self.ids),
            pick(self.cids),
            self.major[at],
            self.minor[at],
            self.ingested[at],
            self.table.take(at),
        )

    def slice(self, start: int, stop: int) -> EventColumns:
        """The events from `start` to `stop` (views and zero-copy slices where they can be)."""
        return EventColumns(
            self.ts[start:stop],
            self.eids[start:stop],
            self.keys[start:stop],
            self.ids[start:stop],
            self.cids[start:stop],
            self.major[start:stop],
            self.minor[start:stop],
            self.ingested[start:stop],
            self.table.slice(start, stop - start),
        )

    def position(self, i: int) -> Position:
        """The origin position of event `i`."""
        return (int(self.major[i]), int(self.minor[i]))


@dataclass(slots=True)
class ShardBatch:
    """Validated events of one source for one ledger shard, in broker order per key, and
    their payloads (for late letters)."""

    source: str
    part: str
    shard: int
    events: EventColumns
    payloads: list[bytes]


@dataclass(slots=True)
class AcceptedBatch:
    """Events accepted by the ledger (not late, not duplicates), with their positions in
    the origin partition `part` (the tiles' replay guard)."""

    source: str
    shard: int
    part: str
    events: EventColumns


@dataclass(slots=True)
class LogBatch:
    """Accepted events of one source as an Arrow table in the log schema."""

    source: str
    table: Any


@dataclass(slots=True)
class Entries:
    """Events of one group of views for one tile shard, as columns (aligned, arrival order):
    no per-event tuple to build in the router, take apart in the fold, or free after it."""

    eids: list[str]  # entity ids
    keys: list[tuple[Any, ...]]  # join-key values
    ts: Array  # event times, µs (int64)
    event_ids: list[Any]
    major: Array  # origin positions (int64)
    minor: Array
    values: dict[str, Array]  # column → the events' values (object arrays; None: null)

    def __len__(self) -> int:
        return len(self.eids)


@dataclass(slots=True)
class TileInput:
    """Accepted events of one origin partition for one tile shard, grouped by the views
    sharing one entity: `[(view names, entries), ...]`."""

    shard: int
    part: str
    groups: list[tuple[tuple[str, ...], Entries]]


@dataclass(slots=True)
class Counts:
    """Absolute counters of one ledger shard for one source (they survive replays)."""

    source: str
    shard: int
    applied: int
    duplicates: int
