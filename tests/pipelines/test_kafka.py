"""The Kafka path end to end against librdkafka's in-process mock cluster (a real Kafka
protocol broker started by the test): idempotent producer → KafkaSource → tiles + log."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from features.durations import now_us
from pipelines.plan import PlanSource
from pipelines.producer import KafkaEventProducer
from pipelines.sources.kafka import KafkaEventSource
from tests.pipelines.flows import run_until_idle
from tests.pipelines.scenario import (
    Workload,
    definitions,
    expected_stats,
    generate,
    mismatches,
    read_log,
    stats,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    from confluent_kafka import Producer

    cluster = Producer({"test.mock.num.brokers": 1})  # hosts the mock brokers while alive
    metadata = cluster.list_topics(timeout=10)
    yield ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())
    cluster.flush(5)


def push_kafka(bootstrap: str, work: Workload) -> None:
    """Produce in order; events lacking their key go raw to the topic (they are invalid)."""
    from confluent_kafka import Producer

    producer = KafkaEventProducer(bootstrap)
    raw = Producer({"bootstrap.servers": bootstrap})
    for sent in work.sent:
        source = work.defs.sources[sent.source]
        payload: Any = sent.payload
        if isinstance(payload, dict) and all(k in payload for k in source.key):
            assert producer.send(source, [payload]) == 1
        else:
            raw.produce(
                source.topic, payload if isinstance(payload, bytes) else orjson.dumps(payload)
            )
    raw.flush(10)


def test_kafka_end_to_end(
    kafka_bootstrap: str, redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    defs = definitions()
    work = generate(defs, now_us(), n_txns=300, n_clicks=300, seed=21)
    push_kafka(kafka_bootstrap, work)
    plans = PlanSource(defs)
    source = KafkaEventSource(kafka_bootstrap.split(","), plans, batch_size=200, until_idle=True)
    assert len(source.list_parts()) >= 2  # one Bytewax partition per topic partition
    run_until_idle(redis_url, plans, tmp_path / "offline", source=source)

    assert mismatches(redis_client, work, now_us()) == []
    for name, src in defs.sources.items():
        rows = read_log(tmp_path / "offline", name)
        assert Counter(r["_event_id"] for r in rows) == Counter(
            p[src.event_id] for p in work.accepted(name)
        )
        assert stats(redis_client, name) == expected_stats(work, name)
