"""`rillet export` end to end (console script, real Redis registry) and spine handling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import redis

from features.durations import iso
from features.errors import ValidationError
from features.registry import apply_registry
from pipelines.offline.export import export_training_set
from tests.pipelines.offline_fixtures import (
    BASE,
    DEFS,
    SOURCE,
    LogEvent,
    as_us,
    reference,
    same,
    write_log,
)

pytestmark = pytest.mark.timeout(120)
S = 1_000_000
PROJECT = "cli"


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    events = []
    for i in range(40):
        ts = BASE + (i * 37 % 500) * S
        row = {
            "eid": f"e{i}",
            "user_id": ["u1", "u2"][i % 2],
            "shop": 1 + i % 3 // 2,
            "amount": float(i),
            "qty": i % 4,
            "merchant": "abc"[i % 3],
            "flag": i % 5 == 0,
            "at": None,
            "ts": ts,
        }
        events.append(LogEvent(ts, row["eid"], row, ts + (i % 7) * 10 * S))
    write_log(tmp_path / "log", SOURCE, events)
    (tmp_path / "events.json").write_bytes(
        orjson.dumps([[e.ts, e.eid, e.row, e.ingested] for e in events])
    )
    return tmp_path / "log"


def _events(root: Path) -> list[LogEvent]:
    return [
        LogEvent(ts, eid, row, ing)
        for ts, eid, row, ing in orjson.loads((root.parent / "events.json").read_bytes())
    ]


def test_cli_export_csv_spine_with_iso_times(
    redis_client: redis.Redis, redis_url: str, log_root: Path, tmp_path: Path
) -> None:
    apply_registry(redis_client, PROJECT, DEFS)
    times = [BASE + k * 61 * S for k in range(9)]
    lines = ["label,timestamp,shop,user_id"] + [
        f"{k % 2},{iso(t)},{1 + k % 2},u{1 + k % 3}" for k, t in enumerate(times)
    ]
    (tmp_path / "spine.csv").write_text("\n".join(lines) + "\n")
    env = os.environ | {
        "RILLET_REDIS_URL": redis_url,
        "RILLET_PROJECT": PROJECT,
        "RILLET_OFFLINE_ROOT": str(log_root),
    }
    cli = [
        sys.executable,
        "-m",
        "serving.cli.main",
        "export",
        "--spine",
        str(tmp_path / "spine.csv"),
        "--features",
        "by_user_shop:sum_qty,by_user_shop:last3_amount",
        "--features",
        "by_user:*",
        "--out",
        str(tmp_path / "out" / "train.parquet"),
        "--mode",
        "known_time",
        "--json",
    ]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 9 and summary["mode"] == "known_time"
    table = pq.read_table(tmp_path / "out" / "train.parquet")
    assert table.column_names[:4] == ["label", "timestamp", "shop", "user_id"]
    assert table.column_names[4:] == [
        "by_user_shop:sum_qty",
        "by_user_shop:last3_amount",
        "by_user:n_events",
        "by_user:last_amount",
        "by_user:first_merchant",
        "by_user:sum_qty",
    ]
    events = _events(log_root)
    for k, row in enumerate(table.to_pylist()):
        assert row["label"] == k % 2  # labels as given; CSV text times come back typed
        assert as_us(row["timestamp"]) == times[k]
        entity = {"user_id": row["user_id"], "shop": row["shop"]}
        shop = reference(DEFS, "by_user_shop", events, entity, times[k], "known_time")
        user = reference(DEFS, "by_user", events, entity, times[k], "known_time")
        assert same(row["by_user_shop:sum_qty"], shop["sum_qty"])
        assert same(row["by_user_shop:last3_amount"], shop["last3_amount"])
        assert same([row[f"by_user:{n}"] for n in user], list(user.values()))
    assert not list((tmp_path / "out").glob("*.tmp"))

    missing = [*cli[:5], str(tmp_path / "nokey.csv"), *cli[6:]]
    (tmp_path / "nokey.csv").write_text("user_id,timestamp\nu1,2026-01-01T00:00:00Z\n")
    bad = subprocess.run(missing, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "'shop'" in bad.stderr and "nokey.csv" in bad.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("user_id,shop\nu1,1\n", "'timestamp'"),
        ("user_id,shop,timestamp\nu1,1,2026-01-01T00:00:00Z\nu2,1,\n", "row 2 has no timestamp"),
        ("user_id,shop,timestamp\nu1,1,2026-01-01T00:00:00Z\nu2,1,soon\n", "'soon'"),
    ],
)
def test_spine_problems_are_one_clear_error(
    log_root: Path, tmp_path: Path, text: str, needle: str
) -> None:
    (tmp_path / "spine.csv").write_text(text)
    with pytest.raises(ValidationError, match=needle):
        export_training_set(
            DEFS,
            ["by_user_shop:n_events"],
            tmp_path / "spine.csv",
            tmp_path / "o.parquet",
            log_root,
        )
    assert not (tmp_path / "o.parquet").exists()


def test_spine_forms_give_the_same_values(log_root: Path, tmp_path: Path) -> None:
    """Timestamps as tz-aware, naive (UTC), ISO text and epoch ms; keys kept as text."""
    import pyarrow as pa

    times = [BASE + k * 77 * S for k in range(6)]
    base = {"user_id": ["u1", "u2"] * 3, "shop": [1, 2, 1, 2, 1, 2]}
    forms = {
        "aware": pa.array(times, pa.timestamp("us", tz="UTC")),
        "naive": pa.array(times, pa.timestamp("us")),
        "iso": pa.array([iso(t) for t in times]),
        "ms": pa.array([t // 1000 for t in times], pa.int64()),
    }
    results = []
    for name, column in forms.items():
        pq.write_table(pa.table({**base, "timestamp": column}), tmp_path / f"{name}.parquet")
        export_training_set(
            DEFS,
            ["by_user_shop:*"],
            tmp_path / f"{name}.parquet",
            tmp_path / f"{name}.out.parquet",
            log_root,
        )
        results.append(
            pq.read_table(tmp_path / f"{name}.out.parquet").drop(["timestamp"]).to_pylist()
        )
    assert all(r == results[0] for r in results)
    events = _events(log_root)
    for row, t in zip(results[0], times, strict=True):
        want = reference(DEFS, "by_user_shop", events, row, t, "event_time")
        assert all(same(as_us(row[f"by_user_shop:{k}"]), v) for k, v in want.items())


def test_a_column_added_to_the_schema_later_reads_as_null(log_root: Path, tmp_path: Path) -> None:
    """Log files written before a schema column existed: its features see empty windows."""
    import dataclasses

    from features.model import Column, Feature

    source = dataclasses.replace(
        SOURCE, schema=(*SOURCE.schema, Column("tip", "float", nullable=True))
    )
    view = dataclasses.replace(
        DEFS.views["by_user"],
        features=(
            Feature("tips", "sum", "tip", 600 * S, 60 * S),
            Feature("n", "count", None, 600 * S, 60 * S),
        ),
    )
    defs = dataclasses.replace(DEFS, sources={SOURCE.name: source}, views={"by_user": view})
    (tmp_path / "spine.csv").write_text(f"user_id,timestamp\nu1,{iso(BASE + 600 * S)}\n")
    export_training_set(
        defs, ["by_user:*"], tmp_path / "spine.csv", tmp_path / "o.parquet", log_root
    )
    row = pq.read_table(tmp_path / "o.parquet").to_pylist()[0]
    assert row["by_user:tips"] == 0 and row["by_user:n"] > 0
