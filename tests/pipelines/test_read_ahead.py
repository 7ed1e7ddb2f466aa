"""The stream source sends its next `XREAD` ahead (`pipelines.sources.read_ahead`): a reply
is used only for the very command it answers, a stale or empty one is read again, and the
recovery state never runs ahead of what was emitted."""

from __future__ import annotations

import orjson
import pytest
import redis

from features import layout
from features.errors import StorageError
from pipelines.plan import PlanSource
from pipelines.records import RawBatch
from pipelines.sources.read_ahead import MISSED, ReadAhead
from pipelines.sources.redis_streams import RedisStreamSource
from tests.pipelines.scenario import PROJECT, definitions


def test_a_reply_is_taken_only_for_the_command_sent(redis_client: redis.Redis) -> None:
    redis_client.set("k", b"v")
    ahead = ReadAhead(redis_client)
    assert ahead.take(("GET", "k")) is MISSED  # nothing sent
    ahead.send(("GET", "k"))
    assert ahead.take(("GET", "k")) == b"v"
    ahead.send(("GET", "k"))
    assert ahead.take(("GET", "other")) is MISSED  # read and dropped: still in step
    ahead.send(("ECHO", "x"))
    ahead.send(("GET", "k"))  # the pending ECHO is read first
    assert ahead.take(("GET", "k")) == b"v"
    ahead.send(("INCR", "k"))  # not an integer: an error reply
    with pytest.raises(StorageError, match="INCR"):
        ahead.take(("INCR", "k"))
    ahead.send(("GET", "k"))
    ahead.close()  # a reply pending: the connection is dropped, not reused mid-reply
    assert ahead.conn is None and ahead.sent is None
    ahead.send(("GET", "k"))
    assert ahead.take(("GET", "k")) == b"v"
    ahead.close()


def _values(batches: list[object]) -> list[int]:
    return [orjson.loads(p)["i"] for b in batches if isinstance(b, RawBatch) for p in b.payloads]


def test_reads_ahead_give_every_entry_once_through_snapshots_and_new_entries(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """Entries arrive between reads (a read ahead sent before them is empty or short), the
    partition is rebuilt from its snapshot mid-stream (dropping its read ahead): every
    entry comes out once, in order."""
    key = layout.stream_key(PROJECT, "txns", 0)
    plans = PlanSource(definitions())
    source = RedisStreamSource(redis_url, PROJECT, 1, plans, count=7)
    part = source.build_part("read", "0", None)
    added, got = 0, []
    for step in range(12):
        for _ in range(5 if step % 3 else 11):
            redis_client.xadd(key, {"d": orjson.dumps({"i": added})})
            added += 1
        got += _values(part.next_batch())
        if step % 4 == 3:  # a restart from the last snapshot, with a read ahead in flight
            state = part.snapshot()
            assert part.ahead.sent is not None
            part.close()
            part = source.build_part("read", "0", state)
    while len(got) < added:
        batch = part.next_batch()
        assert any(isinstance(b, RawBatch) for b in batch)
        got += _values(batch)
    assert got == list(range(added))
    part.close()


def test_an_empty_read_ahead_is_read_again_so_an_idle_end_misses_nothing(
    redis_client: redis.Redis, redis_url: str
) -> None:
    key = layout.stream_key(PROJECT, "txns", 0)
    redis_client.xadd(key, {"d": orjson.dumps({"i": 0})})
    plans = PlanSource(definitions())
    part = RedisStreamSource(redis_url, PROJECT, 1, plans, count=10, until_idle=True).build_part(
        "read", "0", None
    )
    assert _values(part.next_batch()) == [0]  # and a read ahead goes out: it finds nothing
    redis_client.xadd(key, {"d": orjson.dumps({"i": 1})})
    assert _values(part.next_batch()) == [1]
    assert _values(part.next_batch()) == []  # drained: the partition ends
    with pytest.raises(StopIteration):
        part.next_batch()
    part.close()
