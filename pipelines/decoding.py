"""Decode and validate one raw batch, then split the accepted events by ledger shard.

This is the pipeline's only schema step: JSON decoding with orjson, one batch validation
with the source's pandera schema, and a single pass that routes each event to the ledger
shard of its source key (a stable crc32, never Python's `hash`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from typing import Any

from features import layout
from pipelines.plan import PlanSource
from pipelines.records import DeadLetter, DeadLetterBatch, RawBatch, ShardBatch

log = logging.getLogger(__name__)

LEDGER_SHARDS = 16  # part of the recovery state schema: never change on a live recovery dir
SCHEMA_STAGE = "schema"
LATE_STAGE = "late"


def shard_of(values: Any, shards: int) -> int:
    """The shard of a key tuple: crc32 of its entity id (stable across processes)."""
    return zlib.crc32(layout.entity_id(values).encode()) % shards


def _index(event: Any) -> int:
    return int(event.index)


def shard_name(shard: int) -> str:
    """The Bytewax state key of a shard."""
    return f"{shard:02d}"


class Decoder:
    """The `validate` step: `RawBatch` → dead letters and `(shard, ShardBatch)` items."""

    def __init__(self, plans: PlanSource) -> None:
        self.plans = plans

    def __call__(self, batch: RawBatch) -> Iterator[Any]:
        plan = self.plans.current()
        source_plan = plan.sources.get(batch.source)
        if source_plan is None:
            log.warning(
                "dropping a batch of a source no longer in the registry",
                extra={"source": batch.source, "events": len(batch.payloads)},
            )
            return
        events, rejected = source_plan.validator.validate(batch.payloads)
        events.sort(key=_index)
        letters = [
            DeadLetter(
                batch.positions[rej.index],
                batch.payloads[rej.index],
                list(rej.reasons),
                rej.correlation_id,
            )
            for rej in rejected
        ]
        if letters:
            letters.sort(key=lambda d: d.position)
            mark = f"{SCHEMA_STAGE}:{batch.part}"
            yield DeadLetterBatch(batch.source, mark, SCHEMA_STAGE, letters)
        if not events:
            return
        shards: dict[int, ShardBatch] = {}
        crc32, entity_id = zlib.crc32, layout.entity_id
        for event in events:
            i = event.index
            shard = crc32(entity_id(event.key).encode()) % LEDGER_SHARDS
            out = shards.get(shard)
            if out is None:
                out = shards[shard] = ShardBatch(batch.source, batch.part, shard)
            out.events.append(event)
            out.payloads.append(batch.payloads[i])
            out.ingested.append(batch.ingested[i])
            out.positions.append(batch.positions[i])
        for shard, out in shards.items():
            yield (shard_name(shard), out)
