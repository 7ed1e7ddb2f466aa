"""Pipeline counters, lag and freshness in Redis (docs/storage.md), as absolute values.

Every ledger shard reports its own absolute `applied`/`duplicates` (kept in recovery
state) and every origin partition its lag; a Lua script stores each part in
`stats:<source>:parts` and rewrites the totals in `stats:<source>` (sums; the maximum for
`lag_seconds`), so replays rewrite the same numbers instead of adding them again.
Freshness only ever moves forward (`HSET` if greater).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from features import layout
from features.durations import now_us
from pipelines.metrics import METRICS
from pipelines.records import Counts, LagReport

if TYPE_CHECKING:
    import redis

SET_PARTS = """
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[2], ARGV[i] .. '@' .. ARGV[i + 1], ARGV[i + 2])
end
local parts = redis.call('HGETALL', KEYS[2])
local totals = {}
for i = 1, #parts, 2 do
  local at = string.find(parts[i], '@', 1, true)
  if at then
    local name = string.sub(parts[i], 1, at - 1)
    local value = tonumber(parts[i + 1])
    if totals[name] == nil then
      totals[name] = value
    elseif name == 'lag_seconds' then
      totals[name] = math.max(totals[name], value)
    else
      totals[name] = totals[name] + value
    end
  end
end
local out = {}
for name, value in pairs(totals) do
  local text = (name == 'lag_seconds') and string.format('%.3f', value)
    or string.format('%.0f', value)
  redis.call('HSET', KEYS[1], name, text)
  table.insert(out, name)
  table.insert(out, text)
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return out
"""

SET_IF_NEWER = """
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if (not cur) or tonumber(cur) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""


class StatsWriter:
    """Queues counter parts and freshness on a Redis pipeline."""

    def __init__(self, client: redis.Redis, project: str) -> None:
        self.project = project
        self.set_parts = client.register_script(SET_PARTS)

    def queue_parts(self, pipe: Any, source: str, parts: Mapping[tuple[str, str], Any]) -> None:
        """Queue `{(name, part): value}` for one source; the reply lists the new totals."""
        args: list[Any] = [now_us()]
        for (name, part), value in sorted(parts.items()):
            args += [name, part, value]
        keys = [
            layout.source_stats_key(self.project, source),
            layout.source_stats_parts_key(self.project, source),
        ]
        self.set_parts(keys=keys, args=args, client=pipe)

    def freshness_commands(self, freshness: Mapping[str, int]) -> list[tuple[Any, ...]]:
        """Raw commands storing `view → newest event time` where newer (empty if none)."""
        if not freshness:
            return []
        args: list[Any] = []
        for view, ts in sorted(freshness.items()):
            args += [view, ts]
            METRICS.set_freshness(view, ts)
        return [("EVAL", SET_IF_NEWER, 1, layout.freshness_key(self.project), *args)]


def record_totals(source: str, reply: list[Any]) -> None:
    """Feed the totals a `queue_parts` call returned into the Prometheus metrics."""
    totals = {
        (k.decode() if isinstance(k, bytes) else k): float(v)
        for k, v in zip(reply[::2], reply[1::2], strict=True)
    }
    for name in ("applied", "duplicates"):
        if name in totals:
            METRICS.set_counter(source, name, int(totals[name]))
    if "lag_messages" in totals:
        METRICS.set_lag(source, int(totals["lag_messages"]), totals.get("lag_seconds", 0.0))


class _StatsPartition(StatelessSinkPartition[Any]):
    def __init__(self, client: redis.Redis, project: str) -> None:
        self.client = client
        self.writer = StatsWriter(client, project)

    def write_batch(self, items: list[Any]) -> None:
        by_source: dict[str, dict[tuple[str, str], Any]] = {}
        for item in items:
            parts = by_source.setdefault(item.source, {})
            if isinstance(item, Counts):
                shard = f"s{item.shard:02d}"
                parts[("applied", shard)] = item.applied
                parts[("duplicates", shard)] = item.duplicates
            elif isinstance(item, LagReport):
                parts[("lag_messages", item.part)] = item.messages
                parts[("lag_seconds", item.part)] = round(item.seconds, 3)
        pipe = self.client.pipeline(transaction=False)
        sources = sorted(by_source)
        for source in sources:
            self.writer.queue_parts(pipe, source, by_source[source])
        for source, reply in zip(sources, pipe.execute(), strict=True):
            record_totals(source, reply)

    def close(self) -> None:
        self.client.close()


class StatsSink(DynamicSink[Any]):
    """Writes `Counts` and `LagReport` items as parts and totals, one round trip per batch."""

    def __init__(self, redis_url: str, project: str) -> None:
        self.redis_url = redis_url
        self.project = project

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StatsPartition:
        import redis as redis_lib

        return _StatsPartition(redis_lib.Redis.from_url(self.redis_url), self.project)
