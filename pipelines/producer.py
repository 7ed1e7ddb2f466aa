"""Producers: append validated events to the broker, routed by a stable hash of the source key.

Used by `rillet push`, the API's `POST /v1/events/{source}` and `rillet dlq --replay`.
Routing by source key (SPEC §4) keeps one key's events in one partition, so the order the
pipeline judges lateness and duplicates in is the same on every replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from features import layout
from features.errors import StorageError
from features.model import Source

if TYPE_CHECKING:
    import redis

    from pipelines.settings import PipelineSettings

CHUNK = 1000


class EventProducer(Protocol):
    """Anything that appends validated payloads of a source to the broker."""

    def send(self, source: Source, payloads: Sequence[Mapping[str, Any]]) -> int:
        """Append `payloads`; returns how many the broker acknowledged."""
        ...


def key_values(source: Source, payload: Mapping[str, Any]) -> list[Any]:
    """The source-key values of a payload, in key order."""
    try:
        return [payload[k] for k in source.key]
    except KeyError as exc:
        msg = f"event for source {source.name!r} lacks key column {exc.args[0]!r}"
        raise StorageError(msg) from None


class RedisStreamProducer:
    """Appends events to the partitioned Redis streams of a source's topic.

    One pipelined round trip per chunk of 1000; the count returned is what Redis acknowledged.
    """

    def __init__(
        self,
        client: redis.Redis,
        project: str,
        partitions: int,
        maxlen: int | None = None,
    ) -> None:
        self.client = client
        self.project = project
        self.partitions = partitions
        self.maxlen = maxlen

    def send(self, source: Source, payloads: Sequence[Mapping[str, Any]]) -> int:
        """XADD every payload (field `d` = its JSON) to its partition's stream."""
        import redis as redis_lib

        keys = [layout.stream_key(self.project, source.topic, p) for p in range(self.partitions)]
        sent = 0
        try:
            for start in range(0, len(payloads), CHUNK):
                pipe = self.client.pipeline(transaction=False)
                for payload in payloads[start : start + CHUNK]:
                    part = layout.partition_of(key_values(source, payload), self.partitions)
                    pipe.xadd(
                        keys[part],
                        {"d": orjson.dumps(payload)},
                        maxlen=self.maxlen,
                        approximate=True,
                    )
                sent += sum(1 for reply in pipe.execute() if reply)
        except redis_lib.RedisError as exc:
            msg = (
                f"could not append events of source {source.name!r} to Redis "
                f"after {sent} acknowledged: {exc}"
            )
            raise StorageError(msg) from exc
        return sent


class KafkaEventProducer:
    """Produces events to the source's Kafka topic with idempotence on.

    The message key is the source key's entity id, so Kafka's partitioner keeps one key in
    one partition; `send` flushes and raises if any delivery failed.
    """

    def __init__(self, bootstrap: str, extra_config: Mapping[str, Any] | None = None) -> None:
        from confluent_kafka import Producer

        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
        }
        config.update(extra_config or {})
        self.producer = Producer(config)

    def send(self, source: Source, payloads: Sequence[Mapping[str, Any]]) -> int:
        """Produce every payload, flush, and return the acknowledged count."""
        acked = 0
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            nonlocal acked
            if err is None:
                acked += 1
            else:
                errors.append(str(err))

        for payload in payloads:
            key = layout.entity_id(key_values(source, payload))
            while True:
                try:
                    self.producer.produce(
                        source.topic, orjson.dumps(payload), key=key, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
        remaining = self.producer.flush(30)
        if remaining or errors:
            first = errors[0] if errors else f"{remaining} message(s) still queued"
            msg = (
                f"Kafka did not acknowledge {len(payloads) - acked} event(s) of source "
                f"{source.name!r} (topic {source.topic!r}): {first}"
            )
            raise StorageError(msg)
        return acked


def make_producer(settings: PipelineSettings, client: redis.Redis | None = None) -> EventProducer:
    """The producer for the configured broker (`RILLET_BROKER`)."""
    if settings.broker == "kafka":
        return KafkaEventProducer(settings.kafka_bootstrap)
    if client is None:
        import redis as redis_lib

        client = redis_lib.Redis.from_url(settings.redis_url)
    return RedisStreamProducer(
        client, settings.project, settings.stream_partitions, settings.stream_maxlen
    )
