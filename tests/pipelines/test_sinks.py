"""Connectors in isolation against real Redis and files: replay guards, resume, lag, routing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from features import layout
from features.durations import now_us
from features.tiles import EntityTiles, ViewTiler
from pipelines.plan import PlanSource
from pipelines.producer import RedisStreamProducer
from pipelines.records import Counts, DeadLetter, DeadLetterBatch, LagReport, LogBatch, RawBatch
from pipelines.sinks.dead_letters import DeadLetterSink, read_letters
from pipelines.sinks.parquet_log import ParquetLogSink, events_to_table, log_schema
from pipelines.sinks.redis_tiles import write_tiles
from pipelines.sources.redis_streams import RedisStreamSource
from pipelines.stats import StatsSink
from tests.pipelines.scenario import PROJECT, definitions, stats

pytestmark = pytest.mark.timeout(60)


def _letters(start: int, n: int) -> DeadLetterBatch:
    return DeadLetterBatch(
        "txns",
        "schema:redis:0",
        "schema",
        [
            DeadLetter((1000 + i, 0), b'{"x":%d}' % i, ["bad"], f"c{i}")
            for i in range(start, start + n)
        ],
    )


def test_dead_letters_are_written_once_even_when_a_batch_is_replayed(
    redis_client: redis.Redis, redis_url: str
) -> None:
    part = DeadLetterSink(redis_url, PROJECT).build("dlq", 0, 1)
    part.write_batch([_letters(0, 3)])
    part.write_batch([_letters(0, 3), _letters(2, 3)])  # a replay, then one overlapping batch
    letters = read_letters(redis_client, PROJECT, "txns")
    assert [x.correlation_id for x in letters] == ["c0", "c1", "c2", "c3", "c4"]
    assert stats(redis_client, "txns")["invalid"] == 5
    late = DeadLetterBatch(
        "txns", "late:redis:0:03", "late", [DeadLetter((1000, 0), b"{}", ["late"], None)]
    )
    part.write_batch([late, late])  # another ordered stream: its own mark
    assert stats(redis_client, "txns")["late"] == 1
    part.close()


def test_counters_are_absolute_parts_so_replays_do_not_double_them(
    redis_client: redis.Redis, redis_url: str
) -> None:
    part = StatsSink(redis_url, PROJECT).build("stats", 0, 1)
    part.write_batch([Counts("txns", 0, 10, 1), Counts("txns", 1, 5, 0)])
    part.write_batch([Counts("txns", 0, 10, 1)])  # replayed after a crash: same absolute value
    part.write_batch([Counts("txns", 1, 7, 2), LagReport("txns", "redis:0", 4, 1.5)])
    part.write_batch([LagReport("txns", "redis:1", 6, 0.5)])
    raw = redis_client.hgetall(layout.source_stats_key(PROJECT, "txns"))
    assert int(raw[b"applied"]) == 17 and int(raw[b"duplicates"]) == 3
    assert int(raw[b"lag_messages"]) == 10 and float(raw[b"lag_seconds"]) == 1.5
    assert int(raw[b"updated_at"]) <= now_us()
    part.close()


def test_producer_routes_each_key_to_its_partition(redis_client: redis.Redis) -> None:
    source = definitions().sources["clicks"]
    payloads = [
        {"click_id": i, "user_id": f"u{i % 5}", "item_id": f"i{i % 3}", "ts": 1} for i in range(60)
    ]
    assert RedisStreamProducer(redis_client, PROJECT, 4).send(source, payloads) == 60
    for p in range(4):
        for _, fields in redis_client.xrange(layout.stream_key(PROJECT, "clicks", p)):
            event = orjson.loads(fields[b"d"])
            assert layout.partition_of([event["user_id"], event["item_id"]], 4) == p


def test_stream_source_resumes_after_its_snapshot_and_reports_lag(
    redis_client: redis.Redis, redis_url: str
) -> None:
    defs = definitions()
    key = layout.stream_key(PROJECT, "txns", 1)
    for i in range(30):
        redis_client.xadd(key, {"d": orjson.dumps({"i": i})})
    source = RedisStreamSource(redis_url, PROJECT, 4, PlanSource(defs), count=10)
    part = source.build_part("read", "1", None)
    first = part.next_batch()
    batches = [x for x in first if isinstance(x, RawBatch)]
    lags = {x.source: x for x in first if isinstance(x, LagReport)}
    assert [orjson.loads(p)["i"] for p in batches[0].payloads] == list(range(10))
    assert lags["txns"].messages == 20 and lags["txns"].seconds >= 0
    assert lags["clicks"].messages == 0
    state = part.snapshot()
    resumed = source.build_part("read", "1", state)
    rest = [x for x in resumed.next_batch() if isinstance(x, RawBatch)]
    assert [orjson.loads(p)["i"] for p in rest[0].payloads] == list(range(10, 20))
    assert rest[0].position(0) > batches[0].position(len(batches[0].payloads) - 1)
    assert rest[0].ingested[0] // 1000 == rest[0].major[0]


def test_log_sink_rewrites_its_files_from_the_resumed_sequence(tmp_path: Path) -> None:
    table = _txn_table(6)
    assert len(table) == 6
    assert table.schema == log_schema(definitions().sources["txns"])
    sink = ParquetLogSink(tmp_path, ["w0"])
    part = sink.build_part("log", "w0", None)
    part.write_batch([LogBatch("txns", table.slice(0, 2))])
    assert part.snapshot() == 1  # epoch 1 → file 0
    part.write_batch([LogBatch("txns", table.slice(2, 2))])
    assert part.snapshot() == 2  # epoch 2 → file 1, then a crash before epoch 2 commits
    (tmp_path / "txns" / "date=1970-01-01").mkdir(parents=True)
    (tmp_path / "txns" / "date=1970-01-01" / "w0-00000005.parquet.tmp").write_bytes(b"partial")
    resumed = sink.build_part("log", "w0", 1)  # resumes from epoch 1: file 1 is replayed
    files = sorted(p.name for p in tmp_path.rglob("w0-*"))
    assert files == ["w0-00000000.parquet"]
    resumed.write_batch([LogBatch("txns", table.slice(2, 4))])
    resumed.snapshot()
    ids = sorted(
        i for p in tmp_path.rglob("*.parquet") for i in pq.read_table(p)["_event_id"].to_pylist()
    )
    assert ids == [f"t{i}" for i in range(6)]
    assert pq.read_table(next(tmp_path.rglob("*.parquet")))["_event_time"].type == pa.timestamp(
        "us", tz="UTC"
    )


def test_write_tiles_queues_absolute_values_readers_can_evaluate(redis_client: redis.Redis) -> None:
    view = definitions().views["user_txn"]
    tiler, state = ViewTiler(view), EntityTiles()
    now = now_us()
    changed = set()
    for i, amount in enumerate([5.0, 7.0]):
        changed |= tiler.apply(
            state, now - i * 1_000_000, f"e{i}", {"amount": amount, "merchant": "m"}, now
        )
    pipe = redis_client.pipeline(transaction=False)
    write_tiles(pipe, PROJECT, view, ["u9"], state, changed, ())
    pipe.execute()
    fields = redis_client.hgetall(layout.view_key(PROJECT, view.name, "u9"))
    assert b"p" not in fields
    decoded = layout.decode_tiles(fields)
    assert decoded is not None
    assert tiler.evaluate(decoded, now)["amount_sum_1d"] == 12.0
    ttl_ms = redis_client.pexpiretime(layout.view_key(PROJECT, view.name, "u9"))
    assert ttl_ms == layout.expire_at_ms(now, view.ttl)


def test_prometheus_exports_the_totals_redis_returned(
    redis_client: redis.Redis, redis_url: str
) -> None:
    from prometheus_client import REGISTRY, generate_latest

    from pipelines.metrics import register_metrics

    register_metrics()
    part = StatsSink(redis_url, PROJECT).build("stats", 0, 1)
    part.write_batch([Counts("metrics_src", 0, 40, 2), LagReport("metrics_src", "redis:0", 7, 2.0)])
    part.write_batch([Counts("metrics_src", 0, 40, 2)])  # a replay: still 40, not 80
    text = generate_latest(REGISTRY).decode()
    assert 'rillet_pipeline_applied_total{source="metrics_src"} 40.0' in text
    assert 'rillet_pipeline_duplicates_total{source="metrics_src"} 2.0' in text
    assert 'rillet_pipeline_lag_messages{source="metrics_src"} 7.0' in text
    part.close()


def test_log_sink_keeps_every_row_in_order_through_buffer_compaction(tmp_path: Path) -> None:
    """At a low rate the sink gets thousands of tables of a row or two per epoch; it merges
    them as it goes (`COMPACT_TABLES`) and must still write each row once, in order."""
    from pipelines.sinks.parquet_log import COMPACT_TABLES

    count = 3 * COMPACT_TABLES + 7
    table = _txn_table(count)
    part = ParquetLogSink(tmp_path, ["w0"]).build_part("log", "w0", None)
    for i in range(count):
        part.write_batch([LogBatch("txns", table.slice(i, 1))])
    assert len(part.buffer["txns"]) < COMPACT_TABLES
    part.snapshot()
    (written,) = list(tmp_path.rglob("*.parquet"))
    assert pq.read_table(written)["_event_id"].to_pylist() == [f"t{i}" for i in range(count)]


def _txn_table(count: int) -> pa.Table:
    from features.schema import SourceValidator

    source = definitions().sources["txns"]
    now = now_us()
    payloads = [
        orjson.dumps(
            {"txn_id": f"t{i}", "user_id": "u", "amount": 1.0, "merchant": None, "ts": now // 1000}
        )
        for i in range(count)
    ]
    events, _ = SourceValidator(source).validate(payloads)
    return events_to_table(source, events, [now] * len(events))


def test_log_sink_writes_full_buffers_in_the_background_and_waits_at_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buffers past `FLUSH_ROWS` are written by the writer thread mid-epoch; the snapshot
    returns only once every file is on disk, each row written once, in order."""
    from pipelines.sinks import parquet_log

    monkeypatch.setattr(parquet_log, "FLUSH_ROWS", 10)
    table = _txn_table(57)
    part = ParquetLogSink(tmp_path, ["w0"]).build_part("log", "w0", None)
    for start in range(0, 57, 4):
        part.write_batch([LogBatch("txns", table.slice(start, 4))])
    seq = part.snapshot()
    assert not part.writing
    files = sorted(tmp_path.rglob("*.parquet"))
    assert [f.name for f in files] == [f"w0-{i:08d}.parquet" for i in range(seq)]
    assert seq == 5  # four full buffers of 12 rows, then the snapshot's 9
    written = [pq.read_table(f)["_event_id"].to_pylist() for f in files]
    assert [e for rows in written for e in rows] == [f"t{i}" for i in range(57)]


def test_log_sink_raises_a_failed_background_write_to_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background write that fails is raised by the partition's next call that finds it
    done, and at the latest by the snapshot: the epoch is never committed without it."""
    from pipelines.sinks import parquet_log

    monkeypatch.setattr(parquet_log, "FLUSH_ROWS", 10)
    blocked = tmp_path / "log"
    blocked.write_text("a file where the log's directory should be")
    part = ParquetLogSink(blocked, ["w0"]).build_part("log", "w0", None)
    with pytest.raises(OSError):
        part.write_batch([LogBatch("txns", _txn_table(12))])
        part.snapshot()
