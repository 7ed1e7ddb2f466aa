"""The Redis Streams source: one Bytewax partition per stream partition number.

Partition `p` reads `rillet:<project>:stream:<topic>:p` of every topic in the current
registry with one non-blocking `XREAD` (up to `count` entries per stream) and emits one
`RawBatch` per source. Its recovery state is the last entry id read per topic (XREAD is
exclusive of it), so a resume continues exactly where the last committed epoch ended.
Once a batch is emitted, the next `XREAD` is sent ahead (`read_ahead`): Redis builds it
while the flow works, and the next call reads the reply if it asked for the same thing.
About once a second it also reports its lag from `XINFO STREAM`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from features import layout
from pipelines.plan import PlanSource
from pipelines.records import LagReport, RawBatch
from pipelines.sinks.redis_bulk import call_raw
from pipelines.sources.read_ahead import MISSED, ReadAhead

if TYPE_CHECKING:
    import redis

IDLE_WAIT = timedelta(milliseconds=20)
LAG_EVERY_S = 1.0

State = dict[str, dict[str, Any]]
Array = np.ndarray[Any, Any]


def _field(fields: list[bytes], name: bytes) -> bytes:
    """A field of a raw stream entry (`[name, value, ...]`), empty if absent."""
    if len(fields) == 2 and fields[0] == name:
        return fields[1]
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            return fields[i + 1]
    return b""


def _columns(entries: list[Any]) -> tuple[Array, Array, Array, list[bytes]]:
    """Positions `(major, minor)`, ingest times (µs) and payloads of raw XREAD entries,
    column by column: the positions come from one split of all ids; the payload is the
    `d` field."""
    n = len(entries)
    ids = pa.array(list(map(itemgetter(0), entries)), pa.binary()).cast(pa.string())
    # `<ms>-<seq>` split and parsed by Arrow (strict: anything else raises).
    parts = pc.split_pattern(ids, "-", max_splits=1).flatten().cast(pa.int64()).to_numpy()
    if len(parts) != 2 * n:
        msg = f"stream entry ids are not all <ms>-<seq>: {entries[0][0]!r}…"
        raise ValueError(msg)
    major, minor = parts[0::2].copy(), parts[1::2].copy()
    ingested = major * 1000
    fields = list(map(itemgetter(1), entries))
    # Redis keeps at least one field-value pair per entry: lengths adding up to 2n are all 2.
    if sum(map(len, fields)) == 2 * n and set(map(itemgetter(0), fields)) == {b"d"}:
        payloads = list(map(itemgetter(1), fields))  # the producers' only field
    else:
        payloads = [_field(f, b"d") for f in fields]
    return major, minor, ingested, payloads


def _ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


class _StreamPartition(StatefulSourcePartition[Any, State]):
    def __init__(
        self,
        client: redis.Redis,
        project: str,
        partition: int,
        plans: PlanSource,
        count: int,
        until_idle: bool,
        resume: State | None,
    ) -> None:
        self.client = client
        self.project = project
        self.partition = partition
        self.label = f"redis:{partition}"
        self.plans = plans
        self.count = count
        self.until_idle = until_idle
        state = resume or {"ids": {}, "read": {}}
        self.ids: dict[str, str] = dict(state["ids"])
        self.read: dict[str, int] = dict(state["read"])
        self.wake: datetime | None = None
        self.next_lag = 0.0
        self.done = False
        self.ahead = ReadAhead(client)

    def next_batch(self) -> list[Any]:
        if self.done:
            raise StopIteration
        plan = self.plans.current()
        topics = sorted(plan.topics)
        streams = {layout.stream_key(self.project, t, self.partition): t for t in topics}
        out: list[Any] = []
        reply = None
        if streams:
            command = self._xread(streams)
            reply = self.ahead.take(command)
            if reply is MISSED or not reply:  # an empty read ahead is read again: it is old
                reply = call_raw(self.client, *command)
        # RESP3 (redis-py's default here) answers a map, RESP2 a list of pairs.
        pairs = reply.items() if isinstance(reply, dict) else (reply or [])
        for stream, entries in pairs:
            if not entries:
                continue
            topic = streams[stream.decode()]
            major, minor, ingested, payloads = _columns(entries)
            last = entries[-1][0]
            self.ids[topic] = last.decode() if isinstance(last, bytes) else last
            self.read[topic] = self.read.get(topic, 0) + len(entries)
            for source in plan.topics[topic]:
                out.append(RawBatch(source, self.label, major, minor, ingested, payloads))
        now = time.monotonic()
        if now >= self.next_lag or (not out and self.until_idle):
            self.next_lag = now + LAG_EVERY_S
            out.extend(self._lag(plan, streams))
        if out and any(isinstance(item, RawBatch) for item in out):
            self.wake = None
            # Redis builds the next batch's reply while the flow works on this one.
            self.ahead.send(self._xread(streams))
        elif self.until_idle:
            self.done = True
        else:
            self.wake = datetime.now(UTC) + IDLE_WAIT
        return out

    def _xread(self, streams: dict[str, str]) -> tuple[Any, ...]:
        """The `XREAD` of every stream of `streams` after the position read so far."""
        keys = list(streams)
        ids = [self.ids.get(streams[k], "0-0") for k in keys]
        return ("XREAD", "COUNT", self.count, "STREAMS", *keys, *ids)

    def _lag(self, plan: Any, streams: dict[str, str]) -> list[LagReport]:
        """Entries behind each stream head and the age of our position when behind."""
        pipe = self.client.pipeline(transaction=False)
        keys = list(streams)
        for key in keys:
            pipe.xinfo_stream(key)
        replies = pipe.execute(raise_on_error=False)
        now_ms = time.time() * 1000
        out = []
        for key, info in zip(keys, replies, strict=True):
            topic = streams[key]
            messages, seconds = 0, 0.0
            if isinstance(info, dict):
                added = int(info.get("entries-added") or info.get("length") or 0)
                last_generated = info.get("last-generated-id")
                last_generated = (
                    last_generated.decode() if isinstance(last_generated, bytes) else last_generated
                )
                mine = self.ids.get(topic, "0-0")
                if last_generated is None or last_generated == mine or added == 0:
                    self.read[topic] = added  # caught up: resync the count (trims, restarts)
                else:
                    messages = max(0, added - self.read.get(topic, 0))
                    since = _ms(mine) if mine != "0-0" else _first_ms(info)
                    seconds = max(0.0, (now_ms - since) / 1000) if messages else 0.0
            for source in plan.topics[topic]:
                out.append(LagReport(source, self.label, messages, seconds))
        return out

    def next_awake(self) -> datetime | None:
        return self.wake

    def snapshot(self) -> State:
        return {"ids": dict(self.ids), "read": dict(self.read)}

    def close(self) -> None:
        self.ahead.close()
        self.client.close()


def _first_ms(info: dict[str, Any]) -> float:
    first = info.get("first-entry")
    if first:
        return float(_ms(first[0]))
    return time.time() * 1000


class RedisStreamSource(FixedPartitionedSource[Any, State]):
    """Reads every topic's stream partitions; `until_idle` ends each partition once drained."""

    def __init__(
        self,
        redis_url: str,
        project: str,
        partitions: int,
        plans: PlanSource,
        count: int = 2000,
        until_idle: bool = False,
    ) -> None:
        self.redis_url = redis_url
        self.project = project
        self.partitions = partitions
        self.plans = plans
        self.count = count
        self.until_idle = until_idle

    def list_parts(self) -> list[str]:
        return [str(p) for p in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: State | None
    ) -> _StreamPartition:
        import redis as redis_lib

        client = redis_lib.Redis.from_url(self.redis_url)
        return _StreamPartition(
            client,
            self.project,
            int(for_part),
            self.plans,
            self.count,
            self.until_idle,
            resume_state,
        )
