"""Decode and validate one raw batch, then split the accepted events by ledger shard.

This is the pipeline's only schema step: JSON decoding with orjson, one batch validation
with the source's pandera schema, and a split of the accepted events by the ledger shard
of their source key (a stable crc32, never Python's `hash`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator, Sequence
from itertools import compress, repeat
from operator import is_, itemgetter
from typing import Any

import numpy as np

from features import layout
from features.model import Source
from pipelines.plan import PlanSource
from pipelines.records import DeadLetter, DeadLetterBatch, RawBatch, ShardBatch
from pipelines.shard_keys import BALANCED, SHARDS
from pipelines.sinks.parquet_log import columns_to_table

log = logging.getLogger(__name__)

LEDGER_SHARDS = SHARDS  # part of the recovery state schema (`pipelines.shard_keys`)
SHARD_CACHE = 500_000  # source keys whose shard the decoder remembers (then starts over)
SCHEMA_STAGE = "schema"
LATE_STAGE = "late"


def shard_of(values: Any, shards: int) -> int:
    """The shard of a key tuple: crc32 of its entity id (stable across processes)."""
    return zlib.crc32(layout.entity_id(values).encode()) % shards


def _picker(rows: list[int]) -> Callable[[Sequence[Any]], list[Any]]:
    """A function taking the items at `rows` of a sequence into a list (`itemgetter` in C)."""
    if len(rows) == 1:
        row = rows[0]
        return lambda seq: [seq[row]]
    get = itemgetter(*rows)
    return lambda seq: list(get(seq))


class Decoder:
    """The `validate` step: `RawBatch` → dead letters and `(shard, ShardBatch)` items.

    Each `ShardBatch` also carries its events' Parquet log table, cut from one table the
    decoder builds per batch out of the validator's typed columns.
    """

    def __init__(self, plans: PlanSource, shard_keys: Sequence[str] = BALANCED) -> None:
        self.plans = plans
        self.shard_keys = shard_keys  # Bytewax state key of each ledger shard
        self._shards: dict[str, dict[tuple[Any, ...], int]] = {}  # per source: key → shard

    def __call__(self, batch: RawBatch) -> Iterator[Any]:
        plan = self.plans.current()
        source_plan = plan.sources.get(batch.source)
        if source_plan is None:
            log.warning(
                "dropping a batch of a source no longer in the registry",
                extra={"source": batch.source, "events": len(batch.payloads)},
            )
            return
        checked = source_plan.validator.validate_batch(batch.payloads)
        events = checked.events  # in input order
        payloads, ingested, positions = batch.payloads, batch.ingested, batch.positions
        if checked.rejected:
            letters = [
                DeadLetter(
                    positions[rej.index], payloads[rej.index], list(rej.reasons), rej.correlation_id
                )
                for rej in checked.rejected
            ]
            letters.sort(key=lambda d: d.position)
            mark = f"{SCHEMA_STAGE}:{batch.part}"
            yield DeadLetterBatch(batch.source, mark, SCHEMA_STAGE, letters)
            if not events:
                return
            rows = [e.index for e in events]
            payloads = list(map(payloads.__getitem__, rows))
            ingested = list(map(ingested.__getitem__, rows))
            positions = list(map(positions.__getitem__, rows))
        table = columns_to_table(source_plan.source, checked, ingested)
        numbers = self._shards_of(source_plan.source, checked.keys)
        first = int(numbers[0])
        if (numbers == first).all():
            yield (
                self.shard_keys[first],
                ShardBatch(
                    batch.source, batch.part, first, events, payloads, ingested, positions, table
                ),
            )
            return
        order = np.argsort(numbers, kind="stable")  # keeps broker order within a shard
        table = table.take(order)  # one take; each shard's rows are then a zero-copy slice
        start = 0
        for chunk in np.split(order, np.flatnonzero(np.diff(numbers[order])) + 1):
            rows = chunk.tolist()
            shard = int(numbers[rows[0]])
            pick = _picker(rows)
            out = ShardBatch(
                batch.source,
                batch.part,
                shard,
                pick(events),
                pick(payloads),
                pick(ingested),
                pick(positions),
                table.slice(start, len(rows)),
            )
            start += len(rows)
            yield (self.shard_keys[shard], out)

    def _shards_of(self, source: Source, keys: list[tuple[Any, ...]]) -> np.ndarray[Any, Any]:
        """The ledger shard of each source key: column-wise for plain string keys, else
        remembered per key (`shard_of` costs ~0.6 µs).

        Not remembered for float keys: `0.0 == -0.0` as dict keys, yet their ids differ.
        """
        plain = layout.plain_entity_ids(keys)
        if plain is not None:
            crcs = np.fromiter(map(zlib.crc32, map(str.encode, plain)), np.int64, len(plain))
            return crcs % LEDGER_SHARDS
        if any(source.columns[k].dtype == "float" for k in source.key):
            return np.array([shard_of(key, LEDGER_SHARDS) for key in keys], np.int64)
        cache = self._shards.setdefault(source.name, {})
        if len(cache) > SHARD_CACHE:
            cache.clear()
        shards: list[Any] = list(map(cache.get, keys))
        if None in shards:
            for i in compress(range(len(keys)), map(is_, shards, repeat(None))):
                shards[i] = cache[keys[i]] = shard_of(keys[i], LEDGER_SHARDS)
        return np.array(shards, np.int64)
