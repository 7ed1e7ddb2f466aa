"""No training/serving skew: online, historical, export and a brute force agree.

A generated event set — duplicates, late events, invalid ones, out-of-order arrival, events
later than the clock — goes through the real pipeline (Bytewax, in-process) into Redis and
the Parquet log. Then, for random entities and times:

- the online value (HTTP, as of now) equals the historical value and the exported value at
  the `as_of` the server answered with, in both modes;
- historical values (HTTP) and exported values (the `rillet export` console script) equal
  a brute-force scan, in `event_time` mode over the oracle's accepted events and in
  `known_time` mode over those ingested by T (ingest times as the log recorded them).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from features import layout
from features.durations import iso, now_us, to_us
from features.registry import apply_registry
from pipelines.plan import PlanSource
from serving.settings import Settings
from tests.pipelines.flows import run_until_idle
from tests.pipelines.scenario import (
    PROJECT,
    H,
    M,
    Workload,
    brute_force,
    close,
    definitions,
    entities_of,
    generate,
    read_log,
)
from tests.serving.conftest import running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
MODES = ("event_time", "known_time")


def push_arriving(client: redis.Redis, work: Workload, partitions: int = 4) -> None:
    """Append every event in order with broker entry ids that spread ingest times out.

    An event arrives when it happened or, if it comes after a later one (out of order, or
    a redelivery), when its predecessor arrived: so ingest times trail event times by
    seconds to hours and `known_time` differs from `event_time` for past T. Routing is the
    producers' (`layout.partition_of` of the source key).
    """
    last_ms, seq = 0, 0
    now_ms = now_us() // 1000
    pipe = client.pipeline(transaction=False)
    for sent in work.sent:
        source = work.defs.sources[sent.source]
        payload = sent.payload
        if isinstance(payload, dict) and all(k in payload for k in source.key):
            part = layout.partition_of([payload[k] for k in source.key], partitions)
            try:
                happened = to_us(payload[source.timestamp]) // 1000
            except (KeyError, TypeError, ValueError):
                happened = last_ms
            raw = orjson.dumps(payload)
        else:
            part, happened = 0, last_ms
            raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        arrival = max(last_ms, min(happened, now_ms))
        seq = seq + 1 if arrival == last_ms else 0
        last_ms = arrival
        pipe.xadd(layout.stream_key(PROJECT, source.topic, part), {"d": raw}, id=f"{arrival}-{seq}")
    pipe.execute()


def known_by(work: Workload, ingested: dict[tuple[str, Any], int], as_of: int) -> Workload:
    """The accepted events ingested by `as_of` (what online serving knew then)."""
    keep = [
        s
        for s in work.sent
        if s.verdict == "accept"
        and ingested[(s.source, s.payload[work.defs.sources[s.source].event_id])] <= as_of
    ]
    return Workload(work.defs, keep)


def export(
    env: dict[str, str], rows: list[dict[str, Any]], tmp: Path, mode: str
) -> list[dict[str, Any]]:
    """Run `rillet export` on a Parquet spine of `rows`; the output rows in order."""
    spine = pa.table(
        {
            "user_id": [r["user_id"] for r in rows],
            "item_id": [r["item_id"] for r in rows],
            "timestamp": pa.array([r["t"] for r in rows], pa.timestamp("us", tz="UTC")),
            "label": list(range(len(rows))),
        }
    )
    pq.write_table(spine, tmp / "spine.parquet")
    out = tmp / f"train-{mode}.parquet"
    cli = [
        sys.executable, "-m", "serving.cli.main", "export", "--spine", str(tmp / "spine.parquet"),
        "--features", "user_txn:*,user_clicks:*", "--features", "user_item_clicks:*",
        "--out", str(out), "--mode", mode,
    ]  # fmt: skip
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out).to_pylist()
    assert [r["label"] for r in table] == list(range(len(rows)))
    return table


def test_online_historical_export_and_brute_force_agree(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    defs = definitions()
    now0 = now_us()
    work = generate(defs, now0, n_txns=700, n_clicks=600, seed=21, users=25)
    assert {s.verdict for s in work.sent} >= {"accept", "late", "duplicate", "invalid"}
    apply_registry(redis_client, PROJECT, defs)
    root = tmp_path / "offline"
    push_arriving(redis_client, work)
    run_until_idle(redis_url, PlanSource(defs), root)

    # The log holds exactly the accepted events; their ingest times drive known_time.
    ingested: dict[tuple[str, Any], int] = {}
    for name, source in defs.sources.items():
        rows = read_log(root, name)
        assert sorted(map(str, (r["_event_id"] for r in rows))) == sorted(
            str(p[source.event_id]) for p in work.accepted(name)
        )
        for r in rows:
            ingested[(name, r["_event_id"])] = to_us(r["_ingested_at"])

    rng = random.Random(4)
    users = sorted({e[0] for v in defs.views.values() for e in entities_of(work, v)})
    items = sorted({e[1] for e in entities_of(work, defs.views["user_item_clicks"])})
    accepted_times = [to_us(s.payload["ts"]) for s in work.sent if s.verdict == "accept"]
    sample = [*rng.sample(users, 12), "nobody"]
    entities = [{"user_id": u, "item_id": rng.choice(items)} for u in sample]
    features = ["user_txn:*", "user_clicks:*", "user_item_clicks:*"]
    settings = Settings(
        redis_url=redis_url, project=PROJECT, offline_root=root, log_level="WARNING"
    )
    env = os.environ | {
        "RILLET_REDIS_URL": redis_url,
        "RILLET_PROJECT": PROJECT,
        "RILLET_OFFLINE_ROOT": str(root),
    }

    with running(settings) as api:
        online = api.http.post(
            "/v1/features/online", json={"features": features, "entities": entities}
        )
        assert online.status_code == 200, online.text
        body = online.json()
        as_of = to_us(body["as_of"])
        names = body["features"]

        rows = [dict(e, t=as_of) for e in entities]
        for e in entities:  # random past times, event times (±1 µs), window edges, the future
            arrivals = list(ingested.values())
            for t in (
                now0 - rng.randrange(0, 4 * H),
                now0 - rng.randrange(0, 2 * H),
                rng.choice(accepted_times),
                rng.choice(arrivals),
                now0 + 25 * M,
            ):
                rows.append(dict(e, t=t + rng.choice([-1, 0, 0, 1])))
        historical = {}
        asked = [
            {"user_id": r["user_id"], "item_id": r["item_id"], "timestamp": iso(r["t"])}
            for r in rows
        ]
        for mode in MODES:
            answer = api.http.post(
                "/v1/features/historical", json={"features": features, "mode": mode, "rows": asked}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["features"] == names
            historical[mode] = [r["values"] for r in answer.json()["results"]]

    exported = {mode: export(env, rows, tmp_path, mode) for mode in MODES}

    checked = 0
    for i, row in enumerate(rows):
        for mode in MODES:
            oracle = work if mode == "event_time" else known_by(work, ingested, row["t"])
            want: dict[str, Any] = {}
            for view_name, view in defs.views.items():
                keys = defs.entities[view.entity].join_keys
                values = brute_force(oracle, view, tuple(row[k] for k in keys), row["t"])
                want.update({f"{view_name}:{k}": v for k, v in values.items()})
            for name in names:
                assert close(historical[mode][i][name], want[name]), (mode, row, name)
                assert close(exported[mode][i][name], want[name]), (mode, row, name)
                if i < len(entities):  # as of the online answer's own time
                    assert close(body["results"][i]["values"][name], want[name]), (mode, row, name)
                checked += 1
    assert checked > 2000
    nonzero = [r for r in historical["event_time"] if r["user_txn:count_1h"]]
    assert len(nonzero) > 5
    differ = sum(
        a != b for a, b in zip(historical["known_time"], historical["event_time"], strict=True)
    )
    assert differ > 5  # late arrivals do change point-in-time values
