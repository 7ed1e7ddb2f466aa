"""`rillet backfill` against real Redis: rebuilt tiles serve the reference values, idempotently.

The log is written with the pipeline's writer; expected values come from `ViewTiler` over
the deduplicated events (tests/pipelines/offline_fixtures.py); online values are read the
way the API reads them (HGETALL → `layout.decode_tiles` → `ViewTiler.evaluate`).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from features import layout
from features.durations import iso, now_us
from features.tiles import ViewTiler
from pipelines.backfill import Backfill, EntityFilter, pipeline_running
from pipelines.offline.history import import_file
from tests.pipelines.offline_fixtures import (
    DEFS,
    SOURCE,
    LogEvent,
    reference,
    same,
    write_log,
)

pytestmark = pytest.mark.timeout(120)
S = 1_000_000
PROJECT = "bf"


def events_near(now: int, n: int, seed: int) -> list[LogEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = now - rng.randrange(0, 400) * S + rng.choice([0, 0, 250_000])
        if i % 50 == 0:
            ts = now + 30 * S  # later than the clock: pending
        row = {
            "eid": f"e{i}",
            "user_id": rng.choice(["u1", "u2", "u3", "u|4"]),
            "shop": rng.choice([1, 2]),
            "amount": rng.choice([None, rng.randrange(-400, 400) / 8]),
            "qty": rng.choice([None, rng.randrange(0, 9)]),
            "merchant": rng.choice([None, "a", "b", "c"]),
            "flag": rng.choice([None, True, False]),
            "at": rng.choice([None, now - rng.randrange(0, 10**9)]),
            "ts": ts,
        }
        out.append(LogEvent(ts, row["eid"], row, ts))
    out.append(LogEvent(out[3].ts, out[3].eid, dict(out[3].row), out[3].ingested + S))  # a copy
    return out


def online(
    client: redis.Redis, view_name: str, entity: dict[str, Any], as_of: int
) -> dict[str, Any]:
    view = DEFS.views[view_name]
    keys = DEFS.entities[view.entity].join_keys
    fields = client.hgetall(
        layout.view_key(PROJECT, view_name, layout.entity_id([entity[k] for k in keys]))
    )
    tiler = ViewTiler(view)
    state = layout.decode_tiles(fields)
    return tiler.empty_values() if state is None else tiler.evaluate(state, as_of)


def check_online(client: redis.Redis, events: list[LogEvent], now: int) -> int:
    """Every entity of both views, now and later, equals the reference; returns checks made."""
    checked = 0
    for view in DEFS.views:
        keys = DEFS.entities[DEFS.views[view].entity].join_keys
        entities = {tuple(e.row[k] for k in keys) for e in events} | {
            tuple("zz" if k == "user_id" else 9 for k in keys)
        }
        for values in entities:
            entity = dict(zip(keys, values, strict=True))
            for as_of in (now, now + 45 * S):
                want = reference(DEFS, view, events, entity, as_of, "event_time")
                got = online(client, view, entity, as_of)
                for name, value in want.items():
                    assert same(got[name], value), (view, entity, as_of, name, got[name], value)
                    checked += 1
    return checked


def test_rebuild_serves_reference_values_and_is_idempotent(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    now = now_us()
    events = events_near(now, 400, seed=3)
    write_log(tmp_path / "log", SOURCE, events, files=3)
    # a stale field and an old-version hash must not survive a rebuild
    stale_key = layout.view_key(PROJECT, "by_user", "u1")
    redis_client.hset(
        stale_key,
        mapping={
            "t:60000000:0": b"{}",
            "o:x#2": b"[1,2]",
            "m": orjson.dumps({"v": "old", "pos": {"x#1": [1, 2]}}),
        },
    )

    backfill = Backfill(redis_client, PROJECT, DEFS, tmp_path / "log", now=now, batch_entities=3)
    report = backfill.run(sorted(DEFS.views))
    # events older than the view's ttl can reach no window: they are not read
    unique = {e.eid: e for e in events}.values()
    assert {v.view: v.events for v in report.views} == {
        name: sum(1 for e in unique if e.ts >= now - view.ttl) for name, view in DEFS.views.items()
    }
    assert check_online(redis_client, events, now) > 300
    assert b"t:60000000:0" not in redis_client.hkeys(stale_key)
    assert b"o:x#2" not in redis_client.hkeys(stale_key)
    meta = orjson.loads(redis_client.hget(stale_key, "m"))
    assert meta["v"] == backfill.versions["by_user"] and meta["pos"] == {}
    expire = layout.expire_at_ms(meta["max_ts"], DEFS.views["by_user"].ttl)
    assert redis_client.execute_command("PEXPIRETIME", stale_key) == expire
    assert int(redis_client.hget(layout.freshness_key(PROJECT), "by_user")) == now + 30 * S

    keys = sorted(redis_client.scan_iter(f"rillet:{PROJECT}:{{*"))
    before = {k: redis_client.hgetall(k) for k in keys}
    Backfill(redis_client, PROJECT, DEFS, tmp_path / "log", now=now).run(sorted(DEFS.views))
    assert {k: redis_client.hgetall(k) for k in keys} == before


def test_stream_replay_marks_of_the_same_version_are_kept(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    now = now_us()
    events = events_near(now, 50, seed=4)
    write_log(tmp_path / "log", SOURCE, events)
    backfill = Backfill(redis_client, PROJECT, DEFS, tmp_path / "log", now=now)
    key = layout.view_key(PROJECT, "by_user", layout.entity_id([events[0].row["user_id"]]))
    marks = {"redis:0#3": [123, 4]}
    redis_client.hset(key, "m", orjson.dumps({"v": backfill.versions["by_user"], "pos": marks}))
    redis_client.hset(key, "o:redis:1#3", b"[125,0]")
    backfill.run(["by_user"])
    assert orjson.loads(redis_client.hget(key, "m"))["pos"] == marks
    assert redis_client.hget(key, "o:redis:1#3") == b"[125,0]"


def test_time_range_rebuilds_only_entities_with_events_in_it(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    now = now_us()
    events = [e for e in events_near(now, 200, seed=5) if e.ts <= now]
    write_log(tmp_path / "log", SOURCE, events)
    mid = now - 200 * S
    touched = {e.row["user_id"] for e in events if mid <= e.ts <= now}
    untouched = {e.row["user_id"] for e in events} - touched
    Backfill(redis_client, PROJECT, DEFS, tmp_path / "log", now=now).run(
        ["by_user"], EntityFilter(mid, now)
    )
    for user in touched:
        got = online(redis_client, "by_user", {"user_id": user}, now)
        assert got == reference(DEFS, "by_user", events, {"user_id": user}, now, "event_time")
    for user in untouched:
        assert not redis_client.exists(
            layout.view_key(PROJECT, "by_user", layout.entity_id([user]))
        )


def test_import_writes_the_log_dead_letters_and_entities(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    now = now_us()
    good = [
        e.row | {"ts": iso(e.ts), "at": None if e.row["at"] is None else iso(e.row["at"])}
        for e in events_near(now, 30, seed=6)
    ]
    bad = [
        {"eid": "x1", "user_id": "u1", "shop": "not a number", "ts": iso(now)},
        {"eid": "x2", "ts": "soon"},
    ]
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in [*good[:10], bad[0], *good[10:], bad[1]]))
    result = import_file(
        redis_client, PROJECT, SOURCE, path, tmp_path / "log", [("user_id",), ("user_id", "shop")]
    )
    assert (result.accepted, result.invalid) == (31, 2)
    letters = redis_client.xrange(layout.dead_letter_key(PROJECT, SOURCE.name))
    assert len(letters) == 2 and b"shop" in letters[0][1][b"reasons"]
    assert all(
        p.name.startswith("import") and p.parent.name.startswith("date=") for p in result.files
    )
    log = pa.concat_tables(pq.read_table(p) for p in result.files)
    assert log.column("_ingested_at").to_pylist() == log.column("_event_time").to_pylist()
    again = import_file(redis_client, PROJECT, SOURCE, path, tmp_path / "log", [])
    assert sorted(again.files) == sorted(result.files)  # the same file rewrites the same names
    users = result.entities(("user_id",))
    assert users is not None and set(users.column("user_id").to_pylist()) == {
        r["user_id"] for r in good
    }


def test_cli_import_then_rebuild(redis_client: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    from features.registry import apply_registry

    apply_registry(redis_client, PROJECT, DEFS)
    now = now_us()
    events = [e for e in events_near(now, 60, seed=8) if e.ts <= now]
    rows = [
        e.row | {"ts": iso(e.ts), "at": None if e.row["at"] is None else iso(e.row["at"])}
        for e in events
    ]
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in [*rows, {"eid": "bad"}]))
    env = os.environ | {
        "RILLET_REDIS_URL": redis_url,
        "RILLET_PROJECT": PROJECT,
        "RILLET_OFFLINE_ROOT": str(tmp_path / "log"),
        "RILLET_METRICS_PORT": "0",
    }
    cli = [
        sys.executable,
        "-m",
        "serving.cli.main",
        "backfill",
        "--import",
        SOURCE.name,
        str(path),
        "--json",
    ]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert (out["import"]["accepted"], out["import"]["invalid"]) == (len(rows), 1)
    assert {v["view"] for v in out["views"]} == {"by_user", "by_user_shop"}
    as_of = now_us()
    for user in {e.row["user_id"] for e in events}:
        assert same(
            list(online(redis_client, "by_user", {"user_id": user}, as_of).values()),
            list(
                reference(DEFS, "by_user", events, {"user_id": user}, as_of, "event_time").values()
            ),
        )
    unknown = subprocess.run(
        [*cli[:4], "nope", "--force"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1 and "nope" in unknown.stderr


def test_running_pipeline_is_detected_by_its_moving_counters(redis_client: redis.Redis) -> None:
    key = layout.source_stats_key(PROJECT, SOURCE.name)
    redis_client.hset(key, "updated_at", now_us() - 3_600_000_000)
    assert not pipeline_running(redis_client, PROJECT, [SOURCE.name], wait_s=0.5)
    redis_client.hset(key, "updated_at", now_us())
    assert not pipeline_running(redis_client, PROJECT, [SOURCE.name], wait_s=0.5)  # just stopped
    stop = threading.Event()

    def report_lag() -> None:  # what the running pipeline's stats sink does every second
        while not stop.is_set():
            redis_client.hset(key, "updated_at", now_us())
            time.sleep(0.1)

    thread = threading.Thread(target=report_lag)
    thread.start()
    try:
        assert pipeline_running(redis_client, PROJECT, [SOURCE.name], wait_s=0.5)
    finally:
        stop.set()
        thread.join()
