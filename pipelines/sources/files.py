"""The files source: replay JSON-lines or Parquet files of events through the stream pipeline.

One partition per file; the recovery state is the number of records already emitted, so
a resumed replay continues after them. Records get `_ingested_at` = the time they were
read (there is no broker); positions are record numbers, which keeps the dead-letter
replay guard working.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from features.errors import RilletError
from pipelines.records import RawBatch


def read_records(path: Path, batch_size: int, skip: int = 0) -> Iterator[list[bytes]]:
    """A file's records as JSON bytes, in batches, skipping the first `skip`."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        seen = 0
        for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            rows = rb.to_pylist()
            if seen + len(rows) <= skip:
                seen += len(rows)
                continue
            start = max(0, skip - seen)
            seen += len(rows)
            yield [orjson.dumps(row) for row in rows[start:]]
        return
    with open(path, "rb") as fh:
        batch: list[bytes] = []
        n = 0
        for line in fh:
            line = line.strip()
            if not line:
                continue
            n += 1
            if n <= skip:
                continue
            batch.append(line)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


class _FilePartition(StatefulSourcePartition[RawBatch, int]):
    def __init__(self, source: str, path: Path, index: int, batch_size: int, done: int) -> None:
        self.source = source
        self.label = f"file:{index}"
        self.done = done
        self.batches = read_records(path, batch_size, skip=done)

    def next_batch(self) -> list[RawBatch]:
        payloads = next(self.batches)  # StopIteration ends the partition
        start = self.done
        self.done += len(payloads)
        now = int(time.time() * 1_000_000)
        positions = [(start + i, 0) for i in range(len(payloads))]
        return [RawBatch.of(self.source, self.label, positions, [now] * len(payloads), payloads)]

    def snapshot(self) -> int:
        return self.done


class FileEventSource(FixedPartitionedSource[RawBatch, int]):
    """`{source: [files]}` replayed once each, one partition per file."""

    def __init__(self, files: Mapping[str, Sequence[Path]], batch_size: int = 2000) -> None:
        self.files = [(source, Path(p)) for source, paths in sorted(files.items()) for p in paths]
        for _, path in self.files:
            if not path.exists():
                msg = f"replay file {str(path)!r} does not exist"
                raise RilletError(msg)
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [str(i) for i in range(len(self.files))]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        source, path = self.files[int(for_part)]
        return _FilePartition(source, path, int(for_part), self.batch_size, resume_state or 0)
