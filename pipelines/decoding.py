"""Decode and validate one raw batch, then split the accepted events by ledger shard.

This is the pipeline's only schema step: JSON decoding with orjson, one batch validation
with the source's pandera schema, and a split of the accepted events by the ledger shard
of their source key (a stable crc32, never Python's `hash`).
"""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa

from features import layout
from pipelines.plan import PlanSource
from pipelines.records import DeadLetter, DeadLetterBatch, EventColumns, RawBatch, ShardBatch
from pipelines.shard_keys import BALANCED, SHARDS
from pipelines.sinks.parquet_log import columns_to_table

log = logging.getLogger(__name__)

LEDGER_SHARDS = SHARDS  # part of the recovery state schema (`pipelines.shard_keys`)
SCHEMA_STAGE = "schema"
LATE_STAGE = "late"


def shard_of(values: Any, shards: int) -> int:
    """The shard of a key tuple: crc32 of its entity id (stable across processes)."""
    return zlib.crc32(layout.entity_id(values).encode()) % shards


class Decoder:
    """The `validate` step: `RawBatch` → dead letters and `(shard, ShardBatch)` items.

    Each `ShardBatch` also carries its events' Parquet log table, cut from one table the
    decoder builds per batch out of the validator's typed columns.
    """

    def __init__(self, plans: PlanSource, shard_keys: Sequence[str] = BALANCED) -> None:
        self.plans = plans
        self.shard_keys = shard_keys  # Bytewax state key of each ledger shard

    def __call__(self, batch: RawBatch) -> Iterator[Any]:
        plan = self.plans.current()
        source_plan = plan.sources.get(batch.source)
        if source_plan is None:
            log.warning(
                "dropping a batch of a source no longer in the registry",
                extra={"source": batch.source, "events": len(batch.payloads)},
            )
            return
        source = source_plan.source
        checked = source_plan.validator.validate_batch(batch.payloads)
        payloads, major, minor, ingested = batch.payloads, batch.major, batch.minor, batch.ingested
        if checked.rejected:
            letters = [
                DeadLetter(
                    batch.position(rej.index),
                    payloads[rej.index],
                    list(rej.reasons),
                    rej.correlation_id,
                )
                for rej in checked.rejected
            ]
            letters.sort(key=lambda d: d.position)
            mark = f"{SCHEMA_STAGE}:{batch.part}"
            yield DeadLetterBatch(batch.source, mark, SCHEMA_STAGE, letters)
            if not checked.index:
                return
            rows = checked.index
            at = np.array(rows, dtype=np.int64)
            payloads = list(map(payloads.__getitem__, rows))
            major, minor, ingested = major[at], minor[at], ingested[at]
        ids, numbers = self._shards_of(checked.keys)
        ts_column = checked.columns[[c.name for c in source.schema].index(source.timestamp)]
        ts = ts_column.cast(pa.int64()).to_numpy()
        first = int(numbers[0])
        if (numbers == first).all():
            table = columns_to_table(source, checked, ingested)
            events = EventColumns(
                ts,
                checked.eids,
                checked.keys,
                ids,
                checked.correlation_ids,
                major,
                minor,
                ingested,
                table,
            )
            yield (
                self.shard_keys[first],
                ShardBatch(batch.source, batch.part, first, events, payloads),
            )
            return
        order = np.argsort(numbers, kind="stable")  # keeps broker order within a shard
        # The events in shard order, each column picked once; each shard's events are then
        # a slice (zero-copy for the table).
        pick = itemgetter(*order.tolist())  # two or more events: picks a tuple
        events = EventColumns(
            ts[order],
            list(pick(checked.eids)),
            list(pick(checked.keys)),
            list(pick(ids)),
            list(pick(checked.correlation_ids)),
            major[order],
            minor[order],
            ingested[order],
            columns_to_table(source, checked, ingested).take(order),
        )
        payloads = list(pick(payloads))
        shards = numbers[order]
        bounds = [0, *(np.flatnonzero(np.diff(shards)) + 1).tolist(), len(shards)]
        for start, stop in itertools.pairwise(bounds):
            shard = int(shards[start])
            out = ShardBatch(
                batch.source, batch.part, shard, events.slice(start, stop), payloads[start:stop]
            )
            yield (self.shard_keys[shard], out)

    def _shards_of(self, keys: list[tuple[Any, ...]]) -> tuple[list[str], np.ndarray[Any, Any]]:
        """The keys' entity ids and the ledger shard of each: a crc32 of the id, as
        `shard_of`. The ids travel on with the events (the judge and the router key by them),
        so they are worked out here once."""
        ids = layout.entity_ids(keys)
        crcs = np.fromiter(map(zlib.crc32, map(str.encode, ids)), np.int64, len(ids))
        return ids, crcs % LEDGER_SHARDS
