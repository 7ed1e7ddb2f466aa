"""Dead letters (docs/storage.md): the source's dead-letter stream, written once per event.

Each `DeadLetterBatch` comes from one ordered stream of the pipeline (schema rejects of one
origin partition, or late events of one partition in one ledger shard), in origin order.
A Lua script appends only letters past the newest origin position already written for
that stream (`dlq:<source>:marks`) and bumps the `invalid`/`late` counter by what it
appended, so a replay after a crash neither repeats letters nor doubles counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from features import layout
from features.durations import iso, now_us
from pipelines.metrics import METRICS
from pipelines.records import DeadLetterBatch

if TYPE_CHECKING:
    import redis

STAT_OF_STAGE = {"schema": "invalid", "late": "late"}

APPEND_ONCE = """
local mark = redis.call('HGET', KEYS[2], ARGV[1])
local m_major, m_minor = -1, -1
if mark then
  local dash = string.find(mark, '-', 1, true)
  m_major = tonumber(string.sub(mark, 1, dash - 1))
  m_minor = tonumber(string.sub(mark, dash + 1))
end
local added, last = 0, nil
for i = 5, #ARGV, 5 do
  local major, minor = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if major > m_major or (major == m_major and minor > m_minor) then
    redis.call('XADD', KEYS[1], '*', 'payload', ARGV[i + 2], 'reasons', ARGV[i + 3],
      'correlation_id', ARGV[i + 4], 'time', ARGV[2], 'stage', ARGV[3])
    m_major, m_minor = major, minor
    last = ARGV[i] .. '-' .. ARGV[i + 1]
    added = added + 1
  end
end
if last then
  redis.call('HSET', KEYS[2], ARGV[1], last)
end
local total = redis.call('HINCRBY', KEYS[3], ARGV[4], added)
return {added, total}
"""


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter as read back from its stream."""

    id: str
    payload: str
    reasons: list[str]
    correlation_id: str | None
    time: str
    stage: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form for `rillet dlq --json`."""
        return {
            "id": self.id,
            "payload": self.payload,
            "reasons": self.reasons,
            "correlation_id": self.correlation_id,
            "time": self.time,
            "stage": self.stage,
        }


class DeadLetterWriter:
    """Queues dead-letter batches on a Redis pipeline through the append-once script."""

    def __init__(self, client: redis.Redis, project: str) -> None:
        self.project = project
        self.script = client.register_script(APPEND_ONCE)

    def queue(self, pipe: Any, batch: DeadLetterBatch, when: str) -> None:
        """Queue one batch (its letters in origin order) on `pipe`."""
        args: list[Any] = [batch.mark, when, batch.stage, STAT_OF_STAGE[batch.stage]]
        for letter in batch.letters:
            args += [
                letter.position[0],
                letter.position[1],
                letter.payload,
                orjson.dumps(letter.reasons),
                letter.correlation_id or "",
            ]
        keys = [
            layout.dead_letter_key(self.project, batch.source),
            layout.dead_letter_marks_key(self.project, batch.source),
            layout.source_stats_key(self.project, batch.source),
        ]
        self.script(keys=keys, args=args, client=pipe)


class _DeadLetterPartition(StatelessSinkPartition[DeadLetterBatch]):
    def __init__(self, client: redis.Redis, project: str) -> None:
        self.client = client
        self.writer = DeadLetterWriter(client, project)

    def write_batch(self, items: list[DeadLetterBatch]) -> None:
        pipe = self.client.pipeline(transaction=False)
        when = iso(now_us())
        for batch in items:
            self.writer.queue(pipe, batch, when)
        for batch, (_added, total) in zip(items, pipe.execute(), strict=True):
            METRICS.set_counter(batch.source, STAT_OF_STAGE[batch.stage], int(total))

    def close(self) -> None:
        self.client.close()


class DeadLetterSink(DynamicSink[DeadLetterBatch]):
    """Appends dead letters once each and keeps `invalid`/`late` counters in step."""

    def __init__(self, redis_url: str, project: str) -> None:
        self.redis_url = redis_url
        self.project = project

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        import redis as redis_lib

        return _DeadLetterPartition(redis_lib.Redis.from_url(self.redis_url), self.project)


def write_rejected(
    client: redis.Redis,
    project: str,
    source: str,
    letters: Iterable[tuple[Any, Sequence[str], str | None]],
) -> int:
    """Dead-letter events rejected before reaching the broker (`rillet push`); returns count.

    A payload may be the original bytes or text, or a decoded value (encoded as JSON here).
    """
    key = layout.dead_letter_key(project, source)
    when = iso(now_us())
    pipe = client.pipeline(transaction=False)
    count = 0
    for payload, reasons, correlation_id in letters:
        fields = {
            "payload": _payload_bytes(payload),
            "reasons": orjson.dumps(list(reasons)),
            "correlation_id": correlation_id or "",
            "time": when,
            "stage": "schema",
        }
        pipe.xadd(key, fields)  # type: ignore[arg-type]
        count += 1
    if count:
        pipe.hincrby(layout.source_stats_key(project, source), "invalid", count)
        pipe.execute()
    return count


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return orjson.dumps(payload)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def read_letters(
    client: redis.Redis, project: str, source: str, limit: int | None = None
) -> list[StoredLetter]:
    """The oldest `limit` dead letters of a source (all when `limit` is None)."""
    key = layout.dead_letter_key(project, source)
    entries: Any = client.xrange(key, count=limit)
    out = []
    for entry_id, fields in entries:
        f = {_text(k): _text(v) for k, v in fields.items()}
        out.append(
            StoredLetter(
                id=_text(entry_id),
                payload=f.get("payload", ""),
                reasons=orjson.loads(f.get("reasons") or "[]"),
                correlation_id=f.get("correlation_id") or None,
                time=f.get("time", ""),
                stage=f.get("stage", ""),
            )
        )
    return out


def delete_letters(client: redis.Redis, project: str, source: str, ids: Sequence[str]) -> int:
    """Remove dead letters by entry id (after a successful replay); returns how many."""
    if not ids:
        return 0
    return int(client.xdel(layout.dead_letter_key(project, source), *ids))
