"""The stream dataflow: broker → validate → judge (lateness, dedup) → tiles → Redis + Parquet.

```
read ─┬─ lag reports ─────────────────────────────────────────────┐
      └─ validate ─┬─ schema dead letters ──┐                     │
                   └─ judge (per source-key shard) ─┬─ late ──────┴→ dead_letters
                                                    ├─ counts ───────→ stats
                                                    └─ accepted ─┬─→ log (Parquet)
                                                                 └─ route → tiles ⇢ online
```
Every item is a batch (notes §9). The `tiles` step writes Redis itself (⇢) through its
worker's pipelined connection, drained before each epoch commits (pipelines/tiling.py). The
stateful step ids `judge` and `tiles` are the recovery state schema: renaming them silently
orphans state, so never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source

from pipelines.decoding import Decoder
from pipelines.judging import LedgerShard
from pipelines.plan import PlanSource
from pipelines.records import AcceptedBatch, Counts, DeadLetterBatch, LagReport, LogBatch
from pipelines.shard_keys import BALANCED
from pipelines.sinks.dead_letters import DeadLetterSink
from pipelines.sinks.parquet_log import ParquetLogSink
from pipelines.stats import StatsSink
from pipelines.tile_router import TILE_SHARDS, TileRouter
from pipelines.tiling import shard_builder

FLOW_ID = "rillet"
LOG_WRITERS = tuple(f"w{i}" for i in range(8))  # fixed: Parquet writer partitions


@dataclass(frozen=True)
class Outputs:
    """Where the flow writes: the Redis online store and the offline log root."""

    redis_url: str
    project: str
    offline_root: Path
    tile_cache: int = 500_000  # (view, entity) pairs the tile shards cache, in all


class ToLog:
    """The `to_log` step: accepted events → (writer, Arrow table) for the Parquet sink."""

    def __init__(self, plans: PlanSource) -> None:
        self.plans = plans

    def __call__(self, batch: AcceptedBatch) -> list[tuple[str, LogBatch]]:
        if batch.source not in self.plans.current().sources:
            return []
        return [
            (
                LOG_WRITERS[batch.shard % len(LOG_WRITERS)],
                LogBatch(batch.source, batch.events.table),
            )
        ]


def _is(kind: type) -> Any:
    return lambda item: isinstance(item, kind)


def build_flow(
    source: Source[Any],
    plans: PlanSource,
    outputs: Outputs,
    snapshots: bool,
    shard_keys: Sequence[str] = BALANCED,
) -> Dataflow:
    """The whole pipeline reading `source`; `snapshots` is whether recovery is on;
    `shard_keys` are the Bytewax state keys of the 16 shards (`pipelines.shard_keys`)."""
    flow = Dataflow(FLOW_ID)
    raw = op.input("read", flow, source)
    lag = op.filter("lag", raw, _is(LagReport))
    batches = op.filter("batches", raw, lambda item: not isinstance(item, LagReport))
    validated = op.flat_map("validate", batches, Decoder(plans, shard_keys))
    invalid = op.filter("invalid", validated, _is(DeadLetterBatch))
    keyed = op.filter("valid", validated, _is(tuple))
    judged = op.key_rm(
        "unkey_judge",
        op.stateful_batch("judge", keyed, lambda resume: LedgerShard(plans, resume, snapshots)),
    )
    late = op.filter("late", judged, _is(DeadLetterBatch))
    counts = op.filter("counts", judged, _is(Counts))
    accepted = op.filter("accepted", judged, _is(AcceptedBatch))

    op.output(
        "dead_letters",
        op.merge("all_dead", invalid, late),
        DeadLetterSink(outputs.redis_url, outputs.project),
    )
    op.output(
        "stats", op.merge("all_stats", counts, lag), StatsSink(outputs.redis_url, outputs.project)
    )
    op.output(
        "log",
        op.flat_map("to_log", accepted, ToLog(plans)),
        ParquetLogSink(outputs.offline_root, LOG_WRITERS),
    )
    import redis

    client = redis.Redis.from_url(outputs.redis_url)  # thread-safe pool for the tile cache
    per_shard = max(1, outputs.tile_cache // TILE_SHARDS)
    routed = op.flat_map("route", accepted, TileRouter(plans, shard_keys))
    op.stateful_batch(
        "tiles",
        routed,
        shard_builder(plans, outputs.project, client, per_shard),
    )
    return flow
