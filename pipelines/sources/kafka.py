"""The Kafka source: Bytewax's `KafkaSource`, one partition per topic-partition, batched.

Offsets live in Bytewax recovery state (no consumer group). Each poll becomes one
`RawBatch` per source of the topic; `_ingested_at` is the message's broker timestamp
(log-append time when the topic is configured for it). Lag comes from librdkafka's cached
high watermark. The topic list is fixed when the flow starts: a source on a new topic
needs a restart (new views on existing sources do not).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bytewax.connectors.kafka import KafkaSource
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from pipelines.plan import PlanSource
from pipelines.records import LagReport, RawBatch

LAG_EVERY_S = 1.0


class _KafkaPartition(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: Any, topic: str, index: int, plans: PlanSource) -> None:
        self.inner = inner
        self.topic = topic
        self.index = index
        self.label = f"kafka:{index}"
        self.plans = plans
        self.next_lag = 0.0
        self.last_ts_ms: float | None = None

    def next_batch(self) -> list[Any]:
        messages = self.inner.next_batch()  # raises StopIteration at EOF when not tailing
        plan = self.plans.current()
        sources = plan.topics.get(self.topic, [])
        out: list[Any] = []
        if messages:
            positions, ingested, payloads = [], [], []
            now_us = int(time.time() * 1_000_000)
            for msg in messages:
                if not hasattr(msg, "offset"):  # a KafkaError item: raise_on_errors is on
                    continue
                positions.append((msg.offset, 0))
                kind, ts_ms = msg.timestamp
                ingested.append(ts_ms * 1000 if kind and ts_ms >= 0 else now_us)
                payloads.append(msg.value or b"")
            if positions:
                self.last_ts_ms = ingested[-1] / 1000
                for source in sources:
                    out.append(RawBatch.of(source, self.label, positions, ingested, payloads))
        now = time.monotonic()
        if now >= self.next_lag:
            self.next_lag = now + LAG_EVERY_S
            out.extend(self._lag(sources))
        return out

    def _lag(self, sources: Sequence[str]) -> list[LagReport]:
        from confluent_kafka import TopicPartition

        try:
            low, high = self.inner._consumer.get_watermark_offsets(
                TopicPartition(self.topic, self.index), timeout=0.5, cached=True
            )
        except Exception:  # no watermark known yet
            return []
        offset = self.inner._offset
        behind = max(0, high - (offset if offset >= 0 else low)) if high >= 0 else 0
        seconds = 0.0
        if behind and self.last_ts_ms is not None:
            seconds = max(0.0, time.time() - self.last_ts_ms / 1000)
        return [LagReport(s, self.label, behind, seconds) for s in sources]

    def next_awake(self) -> datetime | None:
        awake: datetime | None = self.inner.next_awake()
        return awake

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class KafkaEventSource(FixedPartitionedSource[Any, Any]):
    """Every topic of the current registry; `until_idle` stops at each partition's end."""

    def __init__(
        self,
        brokers: Sequence[str],
        plans: PlanSource,
        batch_size: int = 2000,
        until_idle: bool = False,
        add_config: dict[str, str] | None = None,
    ) -> None:
        self.plans = plans
        topics = sorted(plans.current().topics)
        self.inner = KafkaSource(
            list(brokers),
            topics,
            tail=not until_idle,
            batch_size=batch_size,
            add_config=add_config,
        )

    def list_parts(self) -> list[str]:
        return list(self.inner.list_parts())

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _KafkaPartition:
        index, topic = for_part.split("-", 1)
        inner = self.inner.build_part(step_id, for_part, resume_state)
        return _KafkaPartition(inner, topic, int(index), self.plans)
