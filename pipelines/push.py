"""Pushing files and replaying dead letters into the broker (`rillet push`, `rillet dlq --replay`).

Both validate in batches with the source's schema before anything is sent, so the broker
only receives events that pass; the pipeline validates again (the schema may have changed
in between) and keeps lateness and duplicates to itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from features.model import Source
from pipelines.producer import make_producer
from pipelines.sinks.dead_letters import StoredLetter, delete_letters, write_rejected

if TYPE_CHECKING:
    import redis

    from pipelines.settings import PipelineSettings

CHUNK = 5000


@dataclass
class PushResult:
    """What a push did: events sent, invalid events dead-lettered (or refused)."""

    sent: int = 0
    invalid: int = 0
    refused: bool = False
    first_reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for `--json`."""
        return {
            "sent": self.sent,
            "invalid": self.invalid,
            "refused": self.refused,
            "first_reasons": self.first_reasons,
        }


def iter_file(path: Path, chunk: int = CHUNK) -> Iterator[tuple[list[bytes], int, int]]:
    """Batches of JSON records of a JSON-lines or Parquet file with (done, total) progress."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        total, done = pf.metadata.num_rows, 0
        for rb in pf.iter_batches(batch_size=chunk):
            rows = rb.to_pylist()
            done += len(rows)
            yield [orjson.dumps(row) for row in rows], done, total
        return
    total = path.stat().st_size
    with open(path, "rb") as fh:
        batch: list[bytes] = []
        for line in fh:
            stripped = line.strip()
            if stripped:
                batch.append(stripped)
            if len(batch) >= chunk:
                yield batch, fh.tell(), total
                batch = []
        yield batch, total, total


def push_file(
    settings: PipelineSettings,
    client: redis.Redis,
    source: Source,
    path: Path,
    *,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PushResult:
    """Validate and send a file's events; invalid ones are dead-lettered (or, strict, refused)."""
    from features.schema import SourceValidator

    validator = SourceValidator(source)
    result = PushResult()
    if strict:
        for batch, _, _ in iter_file(path):
            _, rejected = validator.validate(batch)
            result.invalid += len(rejected)
            for rej in rejected[: 3 - len(result.first_reasons)]:
                result.first_reasons.append("; ".join(rej.reasons))
        if result.invalid:
            result.refused = True
            return result
    producer = make_producer(settings, client)
    for batch, done, _ in iter_file(path):
        events, rejected = validator.validate(batch)
        if events:
            result.sent += producer.send(source, [orjson.loads(batch[e.index]) for e in events])
        if rejected:
            result.invalid += write_rejected(
                client,
                settings.project,
                source.name,
                [(r.payload, r.reasons, r.correlation_id) for r in rejected],
            )
            for rej in rejected[: max(0, 3 - len(result.first_reasons))]:
                result.first_reasons.append("; ".join(rej.reasons))
        if progress is not None:
            progress(done)
    return result


def replay_letters(
    settings: PipelineSettings,
    client: redis.Redis,
    source: Source,
    letters: Sequence[StoredLetter],
    *,
    include_late: bool = False,
) -> dict[str, int]:
    """Re-send the letters that now validate and remove them from the dead-letter stream."""
    from features.schema import SourceValidator

    candidates = [x for x in letters if x.stage != "late" or include_late]
    skipped_late = len(letters) - len(candidates)
    if not candidates:
        return {"replayed": 0, "still_invalid": 0, "skipped_late": skipped_late}
    events, rejected = SourceValidator(source).validate([x.payload.encode() for x in candidates])
    valid = [candidates[e.index] for e in events]
    sent = 0
    if valid:
        producer = make_producer(settings, client)
        sent = producer.send(source, [orjson.loads(x.payload) for x in valid])
        delete_letters(client, settings.project, source.name, [x.id for x in valid])
    return {"replayed": sent, "still_invalid": len(rejected), "skipped_late": skipped_late}
