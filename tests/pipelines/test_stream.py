"""The whole stream pipeline in-process against real Redis, checked against a brute force."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis

from features import layout
from features.durations import now_us, to_us
from pipelines.plan import PlanSource
from tests.pipelines.flows import run_until_idle
from tests.pipelines.scenario import (
    PROJECT,
    M,
    definitions,
    expected_stats,
    generate,
    mismatches,
    push,
    read_log,
    stats,
)

pytestmark = pytest.mark.timeout(120)


def test_a_tiny_tile_cache_evicts_and_reloads_without_losing_an_event(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """One cached entity per shard: nearly every batch evicts entities whose writes may be
    in flight and reads them back, so a stale read would show as a wrong value."""
    defs = definitions()
    now = now_us()
    work = generate(defs, now, n_txns=800, n_clicks=800, seed=7, users=120)
    push(redis_client, work)
    run_until_idle(redis_url, PlanSource(defs), tmp_path / "offline", tile_cache=16, read_count=40)
    assert mismatches(redis_client, work, now_us()) == []
    assert mismatches(redis_client, work, now + 30 * M) == []
    for name in defs.sources:
        assert stats(redis_client, name) == expected_stats(work, name)


@pytest.mark.parametrize("workers", [1, 2])
def test_online_tiles_log_dead_letters_and_counters_match_brute_force(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path, workers: int
) -> None:
    defs = definitions()
    now = now_us()
    work = generate(defs, now, n_txns=1200, n_clicks=1200, seed=workers)
    before = now_us()
    push(redis_client, work)
    after = now_us()
    assert {s.verdict for s in work.sent} == {"accept", "late", "duplicate", "invalid"}

    run_until_idle(redis_url, PlanSource(defs), tmp_path / "offline", workers=workers)

    # Online values now and once the two future events are due, against the brute force.
    assert mismatches(redis_client, work, now_us()) == []
    assert mismatches(redis_client, work, now + 30 * M) == []

    # The offline log holds exactly the accepted events, with the extra columns.
    for name, source in defs.sources.items():
        rows = read_log(tmp_path / "offline", name)
        accepted = {p[source.event_id]: p for p in work.accepted(name)}
        assert Counter(r["_event_id"] for r in rows) == Counter(list(accepted))
        for row in rows:
            payload = accepted[row["_event_id"]]
            assert int(row["_event_time"].timestamp() * 1e6) == to_us(payload["ts"])
            assert row["_correlation_id"] == payload["correlation_id"]
            assert before // 1000 * 1000 <= int(row["_ingested_at"].timestamp() * 1e6) <= after
            extra = orjson.loads(row["_extra"])
            assert extra == ({"channel": "web"} if "channel" in payload else {})
            assert row["user_id"] == payload["user_id"]
        assert sorted(p.parent.name for p in (tmp_path / "offline" / name).glob("*/*.parquet"))
        assert not list((tmp_path / "offline").rglob("*.tmp"))

    # Counters: absolute, each event counted once.
    for name in defs.sources:
        assert stats(redis_client, name) == expected_stats(work, name)

    # Dead letters: every invalid and late event, with reasons, correlation id, time, stage.
    for name in defs.sources:
        entries = redis_client.xrange(layout.dead_letter_key(PROJECT, name))
        letters = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
        wanted = [s for s in work.sent if s.source == name and s.verdict in {"invalid", "late"}]
        assert len(letters) == len(wanted)
        assert Counter((x["stage"], x["correlation_id"]) for x in letters) == Counter(
            (
                "schema" if s.verdict == "invalid" else "late",
                s.payload.get("correlation_id", "") if isinstance(s.payload, dict) else "",
            )
            for s in wanted
        )
        for letter in letters:
            assert letter["time"].endswith("Z")
            reasons = orjson.loads(letter["reasons"])
            assert reasons
            if letter["stage"] == "late":
                assert reasons == ["late"]
                assert orjson.loads(letter["payload"])["correlation_id"] == letter["correlation_id"]
    txn_letters = {
        fields[b"correlation_id"].decode(): orjson.loads(fields[b"reasons"])
        for _, fields in redis_client.xrange(layout.dead_letter_key(PROJECT, "txns"))
    }
    assert any("amount" in r and ">= 0" in r for r in txn_letters["c-bad1"])
    assert any("user_id" in r for r in txn_letters["c-bad2"])
    assert len(txn_letters["c-bad3"]) >= 3  # every reason, not just the first
    assert any("JSON" in r for r in txn_letters[""])  # garbage bytes: no correlation id

    # Freshness: the newest event time applied per view; entity counts per view.
    fresh = redis_client.hgetall(layout.freshness_key(PROJECT))
    for view in defs.views.values():
        newest = max(to_us(p["ts"]) for p in work.accepted(view.source))
        assert int(fresh[view.name.encode()]) == newest
        join_keys = defs.entities[view.entity].join_keys
        entities = {tuple(p[k] for k in join_keys) for p in work.accepted(view.source)}
        assert redis_client.pfcount(layout.entity_count_key(PROJECT, view.name)) == pytest.approx(
            len(entities), rel=0.02
        )

    # Keys expire ttl after the entity's newest event (rounded up by at most one bucket).
    view = defs.views["user_txn"]
    some = work.accepted("txns")[0]["user_id"]
    newest = max(to_us(p["ts"]) for p in work.accepted("txns") if p["user_id"] == some)
    expire_ms = redis_client.pexpiretime(layout.view_key(PROJECT, view.name, some))
    assert (
        layout.expire_at_ms(newest, view.ttl)
        <= expire_ms
        <= layout.expire_at_ms(newest, view.ttl) + 3_600_000
    )


def test_a_second_run_continues_where_the_first_stopped(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """With recovery, stream positions, ledgers, tiles and counters carry over between runs."""
    defs = definitions()
    now = now_us()
    work = generate(defs, now, n_txns=600, n_clicks=600, seed=11)
    half = len(work.sent) // 2
    first, second = work.sent[:half], work.sent[half:]
    work.sent = first
    push(redis_client, work)
    run_until_idle(redis_url, PlanSource(defs), tmp_path / "offline", recovery_dir=tmp_path / "rec")
    work.sent = second
    push(redis_client, work)
    run_until_idle(redis_url, PlanSource(defs), tmp_path / "offline", recovery_dir=tmp_path / "rec")
    work.sent = first + second
    assert mismatches(redis_client, work, now_us()) == []
    for name, source in defs.sources.items():
        rows = read_log(tmp_path / "offline", name)
        assert Counter(r["_event_id"] for r in rows) == Counter(
            p[source.event_id] for p in work.accepted(name)
        )
        assert stats(redis_client, name) == expected_stats(work, name)
