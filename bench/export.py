"""Training export benchmark: `rillet export`'s engine on a 10M-event log and a 1M-row spine.

Generates (with DuckDB, once per run, in a temporary directory) an offline log laid out as
docs/storage.md says — 10M transactions of 100,000 users over 30 days, Hive-partitioned by
date, zstd — and a 1M-row spine, then measures in separate processes (wall time and peak
RSS of each process):

- `engine-10`: the point-in-time engine with 10 windowed features (count, sum, mean, min,
  max, stddev, count of a column, last, last_n) over 1h / 24h / 7d windows;
- `engine-last`: the engine with one last-value feature (window 30d);
- `pandas-asof`: the baseline, pandas `merge_asof` of the spine on the log for the last
  value (read with pyarrow, sorted, merged), on the same data.

Each is run `--repeat` times, interleaved; medians are reported with the ratios. Targets on
a 2-core machine: engine-10 within 60 s and 4 GiB peak RSS.

    python bench/export.py                  # full size, 3 rounds
    python bench/export.py --events 1000000 --spine 100000 --repeat 1   # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAY_US = 86_400_000_000
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
USERS = 100_000
DAYS = 30

RUNNER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from features.durations import parse_duration as d
from features.model import Column, Definitions, Entity, Feature, FeatureView, Source
from features.tiles import default_granularity

def f(name, fn, col, window, n=None):
    return Feature(name, fn, col, d(window), default_granularity(d(window)), n)

source = Source("transactions", "transactions", ("user_id",), "txn_id", "ts", d("1h"), (
    Column("txn_id", "string"), Column("user_id", "string"), Column("amount", "float"),
    Column("merchant", "string", nullable=True), Column("ts", "timestamp")))
features = {
    "engine-10": (
        f("txn_count_1h", "count", None, "1h"), f("txn_count_24h", "count", None, "24h"),
        f("amount_sum_24h", "sum", "amount", "24h"), f("amount_mean_7d", "mean", "amount", "7d"),
        f("amount_max_7d", "max", "amount", "7d"), f("amount_min_24h", "min", "amount", "24h"),
        f("amount_std_7d", "stddev", "amount", "7d"),
        f("merchant_count_24h", "count", "merchant", "24h"),
        f("last_merchant_7d", "last", "merchant", "7d"),
        f("last_5_amounts_24h", "last_n", "amount", "24h", 5)),
    "engine-last": (f("last_amount", "last", "amount", "30d"),),
}[sys.argv[2]]
view = FeatureView("user_txn", "user", "transactions", d("30d"), features)
defs = Definitions(
    {"user": Entity("user", ("user_id",))}, {"transactions": source}, {"user_txn": view})
from pipelines.offline.export import export_training_set
work = Path(sys.argv[3])
started = time.perf_counter()
result = export_training_set(
    defs, ["user_txn:*"], work / "spine.parquet", work / (sys.argv[2] + ".parquet"),
    work / "log", memory_limit=sys.argv[4], threads=2)
print(time.perf_counter() - started, result.rows)
"""

BASELINE = r"""
import sys, time
import pandas as pd, pyarrow.parquet as pq, pyarrow.dataset as ds
work = sys.argv[1]
started = time.perf_counter()
log = ds.dataset(work + "/log/transactions", format="parquet").to_table(
    columns=["user_id", "_event_time", "amount"]).to_pandas()
spine = pq.read_table(work + "/spine.parquet").to_pandas()
spine["_row"] = range(len(spine))
log = log.sort_values("_event_time")
spine = spine.sort_values("timestamp")
out = pd.merge_asof(spine, log, left_on="timestamp", right_on="_event_time", by="user_id",
                    direction="backward").sort_values("_row")
out.drop(columns=["_row", "_event_time"]).to_parquet(work + "/pandas-asof.parquet")
print(time.perf_counter() - started, len(out))
"""


def generate(work: Path, events: int, spine: int) -> None:
    """The log (storage.md layout) and the spine, written by DuckDB."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    (work / "log" / "transactions").mkdir(parents=True)
    span = DAYS * DAY_US
    con.execute(f"""
        COPY (
          SELECT 't' || i AS txn_id, 'u' || (hash(i) % {USERS}) AS user_id,
                 round((hash(i * 7) % 100000) / 100.0, 2) AS amount,
                 CASE WHEN hash(i * 3) % 10 = 0 THEN NULL ELSE 'm' || (hash(i * 5) % 1000) END
                   AS merchant,
                 make_timestamptz({START_US} + (hash(i * 11) % {span})::BIGINT) AS ts,
                 txn_id AS _event_id, ts AS _event_time,
                 ts + to_microseconds((hash(i * 13) % 5000000)::BIGINT) AS _ingested_at,
                 NULL::VARCHAR AS _correlation_id, '{{}}' AS _extra,
                 strftime(ts, '%Y-%m-%d') AS date
          FROM range({events}) r(i)
        ) TO '{work / "log" / "transactions"}'
        (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date), FILENAME_PATTERN 'w0-{{i}}')
    """)
    con.execute(f"""
        COPY (
          SELECT 'u' || (hash(i + 99) % {USERS}) AS user_id,
                 make_timestamptz({START_US} + (hash(i * 17 + 1) % {span})::BIGINT) AS timestamp,
                 (hash(i) % 2)::INTEGER AS label
          FROM range({spine}) r(i)
        ) TO '{work / "spine.parquet"}' (FORMAT parquet)
    """)


def agreement(work: Path) -> float:
    """Share of spine rows where the engine's last value equals merge_asof's."""
    import duckdb

    row = duckdb.sql(f"""
        SELECT avg(CASE WHEN a."user_txn:last_amount" IS NOT DISTINCT FROM b.amount THEN 1.0
                        ELSE 0.0 END)
        FROM (SELECT *, row_number() OVER () AS r FROM '{work}/engine-last.parquet') a
        JOIN (SELECT *, row_number() OVER () AS r FROM '{work}/pandas-asof.parquet') b USING (r)
    """).fetchall()
    return float(row[0][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--spine", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-limit", default="2500MB", help="DuckDB memory limit")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rillet-bench-export-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        generate(work, opts.events, opts.spine)
        size = sum(p.stat().st_size for p in (work / "log").rglob("*.parquet")) / 2**20
        print(
            f"generated {opts.events:,} events ({size:.0f} MiB zstd Parquet, {DAYS} date"
            f" partitions) and a {opts.spine:,}-row spine in {time.perf_counter() - started:.1f} s"
        )
        runs: dict[str, list[tuple[float, float]]] = {}
        cases = {
            "engine-10": [sys.executable, "-c", RUNNER, str(ROOT), "engine-10"],
            "engine-last": [sys.executable, "-c", RUNNER, str(ROOT), "engine-last"],
            "pandas-asof": [sys.executable, "-c", BASELINE],
        }
        for round_ in range(opts.repeat):
            for name, base in cases.items():
                extra = [str(work), opts.memory_limit] if name.startswith("engine") else [str(work)]
                wall, rss = measure_isolated([*base, *extra])
                runs.setdefault(name, []).append((wall, rss))
                print(f"  round {round_ + 1} {name:12s} {wall:7.1f} s  peak RSS {rss:7.0f} MiB")
        print(f"\nmedians over {opts.repeat} round(s), 2 DuckDB threads:")
        med = {
            n: (statistics.median(w for w, _ in r), statistics.median(m for _, m in r))
            for n, r in runs.items()
        }
        for name, (wall, rss) in med.items():
            print(f"  {name:12s} {wall:7.1f} s  peak RSS {rss:7.0f} MiB")
        print(
            f"engine-last / pandas-asof wall: {med['engine-last'][0] / med['pandas-asof'][0]:.2f}x;"
            f" engine-10 / pandas-asof wall: {med['engine-10'][0] / med['pandas-asof'][0]:.2f}x"
        )
        print(f"last value agreement engine vs merge_asof: {agreement(work):.4%} of rows")
        ok = med["engine-10"][0] <= 60 and med["engine-10"][1] <= 4096
        print(f"targets (engine-10 <= 60 s, <= 4 GiB): {'met' if ok else 'NOT met'}")


def measure_isolated(args: list[str]) -> tuple[float, float]:
    """Wall time and peak RSS of one child, measured by a fresh helper process."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "w = time.perf_counter() - t\n"
        "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)\n"
        "sys.stderr.write(p.stderr[-3000:])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=False
    )
    fields = done.stdout.split()
    if len(fields) != 3 or fields[2] != "0":
        raise SystemExit(f"{args[2:4]} failed:\n{done.stderr}")
    return float(fields[0]), int(fields[1]) / 1024


if __name__ == "__main__":
    main()
