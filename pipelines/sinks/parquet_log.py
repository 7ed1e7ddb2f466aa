"""The offline event log (docs/storage.md): accepted events as zstd Parquet, by date.

Files are `<root>/<source>/date=YYYY-MM-DD/<writer>-<seq>.parquet`, written to a `.tmp`
name and renamed. The stream's sink is a `FixedPartitionedSink` whose partitions buffer
Arrow tables and write them at each epoch close; its recovery state is the next `seq`, and
on resume it deletes its files numbered at or above it (the replay writes them again), so
the log holds every accepted event once and never a partial file.

A buffer that fills mid-epoch is written by the sink's writer thread while the flow goes
on (compression and file I/O release the GIL); a partition's snapshot waits for its files,
so Bytewax never commits an epoch whose rows are not on disk.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from features.model import Source

TS_TYPE = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TS_TYPE,
}
FLUSH_ROWS = 50_000  # a partition's buffered rows written mid-epoch, in the background
MAX_WRITES = 2  # a partition's background writes in flight before the flow waits
COMPACT_TABLES = 256  # buffered tables of one source that are merged into one
Times = Sequence[int] | np.ndarray[Any, Any]  # µs
_FILE = re.compile(r"^(?P<writer>[^/]+)-(?P<seq>\d+)\.parquet$")


class LogEvent(Protocol):
    """What the log needs of a validated event (`features.schema.Event`, read-only)."""

    @property
    def ts(self) -> int: ...
    @property
    def eid(self) -> Any: ...
    @property
    def row(self) -> dict[str, Any]: ...
    @property
    def extra(self) -> dict[str, Any]: ...
    @property
    def correlation_id(self) -> str | None: ...


def log_dir(root: Path | str, source_name: str) -> Path:
    """The directory holding one source's log (its `date=` partitions below)."""
    return Path(root) / source_name


@functools.lru_cache(maxsize=256)
def log_schema(source: Source) -> pa.Schema:
    """The Arrow schema of a source's log: schema columns, then the underscore columns."""
    fields = [pa.field(c.name, ARROW_TYPES[c.dtype], nullable=c.nullable) for c in source.schema]
    eid_type = ARROW_TYPES[source.columns[source.event_id].dtype]
    fields += [
        pa.field("_event_id", eid_type, nullable=False),
        pa.field("_event_time", TS_TYPE, nullable=False),
        pa.field("_ingested_at", TS_TYPE, nullable=False),
        pa.field("_correlation_id", pa.string()),
        pa.field("_extra", pa.string(), nullable=False),
    ]
    return pa.schema(fields)


def events_to_table(
    source: Source, events: Sequence[LogEvent], ingested_at: Sequence[int]
) -> pa.Table:
    """Accepted events (timestamps in µs) as a table in the log schema, from their rows."""
    get = dict.get
    rows = [e.row for e in events]
    columns = [
        pa.array(list(map(get, rows, repeat(col.name))), type=ARROW_TYPES[col.dtype])
        for col in source.schema
    ]
    eid_type = ARROW_TYPES[source.columns[source.event_id].dtype]
    return _with_log_columns(
        source,
        columns,
        pa.array([e.eid for e in events], type=eid_type),
        pa.array([e.ts for e in events], type=TS_TYPE),
        ingested_at,
        [e.correlation_id for e in events],
        [e.extra for e in events],
    )


def columns_to_table(source: Source, checked: Any, ingested_at: Times) -> pa.Table:
    """The same table as `events_to_table` for a validated batch, from the typed schema
    columns the validator built (`features.schema.Validated`): no per-event gathering."""
    by_name = dict(zip((c.name for c in source.schema), checked.columns, strict=True))
    cids = checked.correlation_array  # built by the validator, or None
    return _with_log_columns(
        source,
        list(checked.columns),
        by_name[source.event_id],
        by_name[source.timestamp],
        ingested_at,
        checked.correlation_ids if cids is None else cids,
        checked.extras,
    )


def _with_log_columns(
    source: Source,
    columns: list[pa.Array],
    event_ids: pa.Array,
    event_times: pa.Array,
    ingested_at: Times,
    correlation_ids: Sequence[str | None] | pa.Array,
    extras: Sequence[dict[str, Any]] | None,
) -> pa.Table:
    """The schema columns plus the underscore columns, as a table in the log schema
    (`extras` None: no event has extra fields; `correlation_ids` a list or a string array)."""
    if extras is not None and any(extras):
        dumps = orjson.dumps
        extra = pa.array([dumps(x).decode() if x else "{}" for x in extras], type=pa.string())
    else:  # most events carry no extra columns: no encoding for those
        extra = pa.repeat(pa.scalar("{}", pa.string()), len(event_ids))
    columns += [
        event_ids,
        event_times,
        pa.array(ingested_at, type=TS_TYPE),
        correlation_ids
        if isinstance(correlation_ids, pa.Array)
        else pa.array(correlation_ids, type=pa.string()),
        extra,
    ]
    return pa.Table.from_arrays(columns, schema=log_schema(source))


def write_table_atomic(path: Path, table: pa.Table, durable: bool = False) -> None:
    """Write `table` as zstd Parquet at `path` via a `.tmp` sibling and an atomic rename.

    A killed process never leaves a partial file under the final name; `durable` adds an
    fsync before the rename for the same guarantee across an operating-system crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    if durable:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def split_by_date(table: pa.Table) -> dict[str, pa.Table]:
    """Rows grouped by the UTC date of `_event_time` (`YYYY-MM-DD`)."""
    days = pc.cast(pc.divide(pc.cast(table["_event_time"], pa.int64()), 86_400_000_000), pa.int64())
    if len(table) and pc.min(days).as_py() == pc.max(days).as_py():
        return {_day_name(pc.min(days).as_py()): table}
    out: dict[str, pa.Table] = {}
    for day in pc.unique(days).to_pylist():
        out[_day_name(day)] = table.filter(pc.equal(days, day))
    return out


def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")


def writer_files(root: Path, writer: str) -> list[tuple[int, Path]]:
    """Every file (and leftover `.tmp`) of one writer under `root`, with its sequence number."""
    out: list[tuple[int, Path]] = []
    if not root.exists():
        return out
    for path in root.glob(f"*/date=*/{writer}-*"):
        name = path.name.removesuffix(".tmp")
        match = _FILE.match(name)
        if match and match["writer"] == writer:
            out.append((int(match["seq"]), path))
    return out


def file_name(writer: str, seq: int) -> str:
    """The deterministic name of a writer's `seq`-th flush."""
    return f"{writer}-{seq:08d}.parquet"


class _LogPartition(StatefulSinkPartition[Any, int]):
    def __init__(
        self, root: Path, writer: str, resume_seq: int | None, executor: ThreadPoolExecutor
    ) -> None:
        self.root = root
        self.writer = writer
        self.executor = executor
        self.seq = resume_seq or 0
        for seq, path in writer_files(root, writer):
            if seq >= self.seq or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        self.buffer: dict[str, list[pa.Table]] = {}
        self.rows = 0
        self.writing: list[Future[None]] = []

    def write_batch(self, values: list[Any]) -> None:
        for batch in values:
            if batch.table is not None and len(batch.table):
                tables = self.buffer.setdefault(batch.source, [])
                tables.append(batch.table)
                self.rows += len(batch.table)
                if len(tables) >= COMPACT_TABLES:
                    # At a low rate the tables are a few rows each; thousands of chunks
                    # make the epoch's write several times slower, and it stalls the flow.
                    tables[:] = [pa.concat_tables(tables).combine_chunks()]
        if self.rows >= FLUSH_ROWS:
            self.flush()
        while self.writing and (self.writing[0].done() or len(self.writing) > MAX_WRITES):
            self.writing.pop(0).result()  # raises a failed write here

    def flush(self) -> None:
        """Hand the buffer to the writer thread as the files of the next `seq`."""
        if not self.rows:
            return
        job = functools.partial(_write_buffer, self.root, self.writer, self.seq, self.buffer)
        self.writing.append(self.executor.submit(job))
        self.seq += 1
        self.buffer = {}
        self.rows = 0

    def settle(self) -> None:
        """Wait for every file handed to the writer thread; raise if one failed."""
        writing, self.writing = self.writing, []
        for future in writing:
            future.result()

    def snapshot(self) -> int:
        self.flush()
        self.settle()
        return self.seq

    def close(self) -> None:
        self.flush()
        self.settle()


def _write_buffer(root: Path, writer: str, seq: int, buffer: dict[str, list[pa.Table]]) -> None:
    """Write one flush of a partition: a file per source and date, numbered `seq`."""
    for source, tables in sorted(buffer.items()):
        table = pa.concat_tables(tables).combine_chunks()
        for day, part in sorted(split_by_date(table).items()):
            path = log_dir(root, source) / f"date={day}" / file_name(writer, seq)
            write_table_atomic(path, part)


class ParquetLogSink(FixedPartitionedSink[Any, int]):
    """Exactly-once Parquet files from `(writer key, LogBatch)` items (`.source`, `.table`)."""

    def __init__(self, root: Path, writers: Sequence[str]) -> None:
        self.root = Path(root)
        self.writers = list(writers)
        # One thread writes every partition's files: compression runs beside the flow.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rillet-log")

    def list_parts(self) -> list[str]:
        return self.writers

    def part_fn(self, item_key: str) -> int:
        return self.writers.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _LogPartition:
        return _LogPartition(self.root, for_part, resume_state, self.executor)
