"""Importing historical files into the offline log (`rillet backfill --import SOURCE FILE`).

The file (JSON lines or Parquet) is validated in batches with the source's schema; invalid
events go to the source's dead-letter stream with their reasons, accepted ones go straight
into the log with `_ingested_at = event_time` and no lateness rule (SPEC §3: history is old
by nature). File names derive from the file's content hash, so importing the same file
again rewrites the same files; readers deduplicate by (source key, event id) anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from features.model import Source

Progress = Callable[[int, int], None]  # (done, total) in the file's own unit


@dataclass
class ImportResult:
    """What an import wrote: accepted events, dead letters, files, and the entities touched."""

    accepted: int = 0
    invalid: int = 0
    files: list[Path] = field(default_factory=list)
    first_reasons: list[str] = field(default_factory=list)
    keys: dict[tuple[str, ...], list[pa.Table]] = field(default_factory=dict)

    def entities(self, join_keys: tuple[str, ...]) -> pa.Table | None:
        """The distinct join-key values of the accepted events for an entity's keys."""
        tables = self.keys.get(join_keys)
        return pa.concat_tables(tables) if tables else None


def _writer(path: Path) -> str:
    """A log writer name unique to a file's content (never a stream writer's `w<n>`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"import{digest.hexdigest()[:16]}"


def import_file(
    client: Any,
    project: str,
    source: Source,
    path: Path,
    root: Path,
    entity_keys: list[tuple[str, ...]],
    progress: Progress | None = None,
) -> ImportResult:
    """Validate `path` and append its accepted events to `source`'s log under `root`.

    `entity_keys` lists the join keys of the views to recompute; the result collects the
    entities of the accepted events for each, so only those need rebuilding.
    """
    from features.schema import SourceValidator
    from pipelines.push import iter_file
    from pipelines.sinks.dead_letters import write_rejected
    from pipelines.sinks.parquet_log import (
        events_to_table,
        file_name,
        log_dir,
        split_by_date,
        write_table_atomic,
    )

    validator = SourceValidator(source)
    writer = _writer(path)
    result = ImportResult()
    seq = 0
    for batch, done, total in iter_file(path):
        events, rejected = validator.validate(batch)
        if rejected:
            result.invalid += write_rejected(
                client,
                project,
                source.name,
                [(r.payload, r.reasons, r.correlation_id) for r in rejected],
            )
            for rej in rejected[: max(0, 3 - len(result.first_reasons))]:
                result.first_reasons.append(f"event {rej.index}: " + "; ".join(rej.reasons))
        if events:
            table = events_to_table(source, events, [e.ts for e in events])
            for day, part in sorted(split_by_date(table).items()):
                target = log_dir(root, source.name) / f"date={day}" / file_name(writer, seq)
                write_table_atomic(target, part)
                result.files.append(target)
            seq += 1
            result.accepted += len(events)
            for keys in entity_keys:
                result.keys.setdefault(keys, []).append(table.select(list(keys)))
        if progress is not None:
            progress(done, total)
    return result
