"""`rillet push`, `rillet dlq` (list, replay) and `rillet run` (replay files, registry pickup)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from features import layout
from features.durations import from_us, iso, now_us
from features.model import Checks, Definitions, FeatureView
from features.registry import apply
from serving.cli.main import main
from tests.pipelines.scenario import (
    PROJECT,
    H,
    Workload,
    definitions,
    feature,
    generate,
    judge,
    mismatches,
    push,
    stats,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "RILLET_REDIS_URL": redis_url,
        "RILLET_PROJECT": PROJECT,
        "RILLET_OFFLINE_ROOT": str(tmp_path / "offline"),
        "RILLET_RECOVERY_DIR": str(tmp_path / "recovery"),
        "RILLET_RECOVERY_PARTITIONS": "4",
        "RILLET_EPOCH_SECONDS": "1",
        "RILLET_METRICS_PORT": "0",
        "RILLET_REGISTRY_POLL_SECONDS": "0.2",
        "RILLET_LOG_LEVEL": "WARNING",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def _txn(i: int, amount: float = 10.0, user: str = "u1") -> dict[str, object]:
    return {
        "txn_id": f"t{i}",
        "user_id": user,
        "amount": amount,
        "merchant": "m1",
        "ts": iso(now_us() - i * 1_000_000),
        "correlation_id": f"c{i}",
    }


def _stream_entries(client: redis.Redis, topic: str) -> dict[int, list[dict[str, object]]]:
    return {
        p: [orjson.loads(f[b"d"]) for _, f in client.xrange(layout.stream_key(PROJECT, topic, p))]
        for p in range(4)
    }


def test_push_validates_routes_and_dead_letters_then_dlq_lists_and_replays(
    env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    defs = definitions()
    apply(redis_client, PROJECT, defs, None)
    events = [_txn(i, user=f"u{i % 7}") for i in range(40)]
    events += [_txn(100, amount=-5.0), {"txn_id": "t101", "amount": 1.0}]
    path = tmp_path / "txns.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n\n")

    # --strict refuses the whole file and sends nothing.
    with pytest.raises(SystemExit) as exit_info:
        main(["push", "txns", str(path), "--strict"])
    assert exit_info.value.code == 1
    assert "2 invalid event(s)" in capsys.readouterr().err
    assert sum(map(len, _stream_entries(redis_client, "txns").values())) == 0

    main(["push", "txns", str(path)])
    assert "pushed 40 event(s)" in capsys.readouterr().out
    entries = _stream_entries(redis_client, "txns")
    assert sum(map(len, entries.values())) == 40
    for partition, payloads in entries.items():
        for payload in payloads:  # routed by the source key, in file order per key
            assert layout.partition_of([payload["user_id"]], 4) == partition
    assert stats(redis_client, "txns")["invalid"] == 2

    # Parquet input (timestamps as a timestamp column) goes the same way.
    table = pa.Table.from_pylist([{**_txn(200 + i), "ts": from_us(now_us())} for i in range(5)])
    pq.write_table(table, tmp_path / "more.parquet")
    main(["push", "txns", str(tmp_path / "more.parquet"), "--json"])
    assert orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])["sent"] == 5

    main(["dlq", "txns", "--json"])
    letters = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["correlation_id"] for x in letters] == ["c100", None]
    assert any("amount" in r for r in letters[0]["reasons"])
    assert any("user_id" in r for r in letters[1]["reasons"])
    assert {x["stage"] for x in letters} == {"schema"}
    main(["dlq", "txns"])
    assert "amount" in capsys.readouterr().out

    # After a fix (negative amounts allowed), --replay re-submits what now validates.
    source = defs.sources["txns"]
    schema = tuple(
        replace(c, checks=Checks(ge=-10)) if c.name == "amount" else c for c in source.schema
    )
    fixed = Definitions(
        defs.entities, {**defs.sources, "txns": replace(source, schema=schema)}, defs.views
    )
    apply(redis_client, PROJECT, fixed, None, allow_breaking=True)
    main(["dlq", "txns", "--replay", "--json"])
    result = orjson.loads(capsys.readouterr().out)
    assert result == {"replayed": 1, "still_invalid": 1, "skipped_late": 0}
    assert redis_client.xlen(layout.dead_letter_key(PROJECT, "txns")) == 1
    assert sum(map(len, _stream_entries(redis_client, "txns").values())) == 46


def test_run_replays_a_file_through_the_pipeline(
    env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    defs = definitions()
    apply(redis_client, PROJECT, defs, None)
    work = generate(defs, now_us(), n_txns=300, n_clicks=0, seed=4)
    work.sent = [s for s in work.sent if s.source == "txns"]
    judge(work)
    path = tmp_path / "txns.jsonl"
    path.write_bytes(
        b"\n".join(
            s.payload if isinstance(s.payload, bytes) else orjson.dumps(s.payload)
            for s in work.sent
        )
    )
    main(["run", "--replay", "txns", str(path), "--until-idle"])
    assert mismatches(redis_client, work, now_us(), views=["user_txn"]) == []
    assert stats(redis_client, "txns")["applied"] == work.count("txns", "accept")
    assert stats(redis_client, "txns")["invalid"] == work.count("txns", "invalid")


def test_a_newly_applied_view_is_picked_up_without_restart(
    env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    defs = definitions()
    apply(redis_client, PROJECT, defs, None)
    work = generate(defs, now_us(), n_txns=400, n_clicks=100, seed=8)
    half = len(work.sent) // 2
    first = Workload(defs, work.sent[:half])
    push(redis_client, first)
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.cli.main", "run"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def wait_applied(n: int) -> None:
            deadline = time.monotonic() + 60
            while sum(stats(redis_client, s).get("applied", 0) for s in defs.sources) < n:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                assert time.monotonic() < deadline
                time.sleep(0.05)

        wait_applied(sum(1 for s in first.sent if s.verdict == "accept"))
        new_view = FeatureView(
            "user_txn_new", "user", "txns", 6 * H, (feature("count_6h", "count", None, 6 * H),)
        )
        extended = definitions([new_view])
        apply(redis_client, PROJECT, extended, None)
        time.sleep(1.0)  # > the poll interval: the running pipeline now has the new view
        push(redis_client, Workload(defs, work.sent[half:]))
        wait_applied(sum(1 for s in work.sent if s.verdict == "accept"))
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    assert mismatches(redis_client, work, now_us()) == []  # old views: every event
    later = Workload(extended, work.sent[half:])  # the new view: only events after apply
    assert mismatches(redis_client, later, now_us(), views=["user_txn_new"]) == []
    assert redis_client.pfcount(layout.entity_count_key(PROJECT, "user_txn_new")) > 0
