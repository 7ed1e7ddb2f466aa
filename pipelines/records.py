"""The items that travel between the pipeline's steps: whole batches, never single events.

Per-event Python work is the cost that matters (notes §9), so every step handles one of
these batches per call. Positions (`(major, minor)`: a Redis entry id, a Kafka offset, a
line number) identify an event in its origin partition; the dead-letter writer uses them
to never write the same letter twice after a replay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Position = tuple[int, int]


@dataclass(slots=True)
class RawBatch:
    """Undecoded payloads of one source read from one origin partition, in broker order."""

    source: str
    part: str
    positions: list[Position]
    ingested: list[int]
    payloads: list[bytes]


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
class ShardBatch:
    """Validated events of one source for one ledger shard, in broker order per key."""

    source: str
    part: str
    shard: int
    events: list[Any]
    payloads: list[bytes]
    ingested: list[int]
    positions: list[Position]
    table: Any  # the events' Arrow table in the log schema (`parquet_log.columns_to_table`)


@dataclass(slots=True)
class AcceptedBatch:
    """Events accepted by the ledger (not late, not duplicates), with their ingest times and
    their positions in the origin partition `part` (the tiles' replay guard)."""

    source: str
    shard: int
    part: str
    events: list[Any]
    ingested: list[int]
    positions: list[Position]
    table: Any  # the events' Arrow table in the log schema (the decoder's, accepted rows)


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
    events: list[Any]
    positions: list[Position]

    def __len__(self) -> int:
        return len(self.events)

    @classmethod
    def of(cls, rows: Iterable[tuple[str, tuple[Any, ...], Any, Position]]) -> Entries:
        """Columns of (entity id, values, event, position) rows (tests build them so)."""
        table = list(rows)
        return cls(
            [row[0] for row in table],
            [row[1] for row in table],
            [row[2] for row in table],
            [row[3] for row in table],
        )


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
