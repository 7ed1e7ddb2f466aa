"""A feature repository exercising every function, a Parquet log writer and the Python reference.

The reference evaluates `features.tiles.ViewTiler` over tiles built from the deduplicated
events of one entity, as of T (events later than T stay pending and never count), which is
exactly what the stream and the online read path compute. The DuckDB engine must equal it.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from features.durations import to_us
from features.model import Column, Definitions, Entity, Feature, FeatureView, Source
from features.tiles import EntityTiles, ViewTiler
from pipelines.sinks.parquet_log import events_to_table, log_dir, split_by_date, write_table_atomic

S = 1_000_000
BASE = to_us("2026-01-01T23:55:00Z")  # events straddle a date partition boundary

SOURCE = Source(
    name="shop_events",
    topic="shop_events",
    key=("user_id", "shop"),
    event_id="eid",
    timestamp="ts",
    allowed_lateness=3600 * S,
    schema=(
        Column("eid", "string"),
        Column("user_id", "string"),
        Column("shop", "int"),
        Column("amount", "float", nullable=True),
        Column("qty", "int", nullable=True),
        Column("merchant", "string", nullable=True),
        Column("flag", "bool", nullable=True),
        Column("at", "timestamp", nullable=True),
        Column("ts", "timestamp"),
    ),
)


def _f(
    name: str, fn: str, col: str | None, window_s: int, g_s: int, n: int | None = None
) -> Feature:
    return Feature(name, fn, col, window_s * S, g_s * S, n)


VIEW_ALL = FeatureView(
    name="by_user_shop",
    entity="user_shop",
    source="shop_events",
    ttl=300 * S,
    features=(
        _f("n_events", "count", None, 120, 10),
        _f("n_amount", "count", "amount", 60, 10),
        _f("sum_amount", "sum", "amount", 90, 30),
        _f("sum_qty", "sum", "qty", 60, 1),
        _f("mean_amount", "mean", "amount", 120, 20),
        _f("mean_qty", "mean", "qty", 300, 60),
        _f("min_qty", "min", "qty", 60, 10),
        _f("max_amount", "max", "amount", 60, 15),
        _f("min_merchant", "min", "merchant", 120, 10),
        _f("max_at", "max", "at", 120, 10),
        _f("first_merchant", "first", "merchant", 90, 10),
        _f("last_merchant", "last", "merchant", 90, 10),
        _f("last_flag", "last", "flag", 60, 5),
        _f("first_at", "first", "at", 300, 60),
        _f("last3_amount", "last_n", "amount", 120, 10, 3),
        _f("last1_merchant", "last_n", "merchant", 60, 1, 1),
        _f("std_amount", "stddev", "amount", 120, 10),
        _f("std_qty", "stddev", "qty", 300, 30),
        _f("n_ttl", "count", None, 300, 300),
    ),
)
VIEW_USER = FeatureView(
    name="by_user",
    entity="user",
    source="shop_events",
    ttl=600 * S,
    features=(  # first/last wider than every other window: the engine's ASOF path
        _f("n_events", "count", None, 300, 60),
        _f("last_amount", "last", "amount", 600, 60),
        _f("first_merchant", "first", "merchant", 480, 120),
        _f("sum_qty", "sum", "qty", 30, 10),
    ),
)
DEFS = Definitions(
    entities={
        "user_shop": Entity("user_shop", ("user_id", "shop")),
        "user": Entity("user", ("user_id",)),
    },
    sources={"shop_events": SOURCE},
    views={"by_user_shop": VIEW_ALL, "by_user": VIEW_USER},
)
ALL_REFS = ["by_user_shop:*", "by_user:*"]
TIMESTAMP_FEATURES = {"by_user_shop:max_at", "by_user_shop:first_at"}


@dataclass
class LogEvent:
    """An accepted event as the log writer takes it (`features.schema.Event` shape)."""

    ts: int
    eid: Any
    row: dict[str, Any]
    ingested: int
    extra: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None


def write_log(root: Path, source: Source, events: Sequence[LogEvent], files: int = 2) -> None:
    """Write events as the stream does (docs/storage.md), spread over `files` per date."""
    if not events:
        return
    table = events_to_table(source, events, [e.ingested for e in events])
    for day, part in split_by_date(table).items():
        n = len(part)
        rng = random.Random(n)
        cuts = sorted({0, n, *(rng.randrange(n + 1) for _ in range(files - 1))})
        for i, (a, b) in enumerate(itertools.pairwise(cuts)):
            if b > a:
                path = (
                    log_dir(root, source.name) / f"date={day}" / f"w{i}-{len(events):08d}.parquet"
                )
                write_table_atomic(path, part.slice(a, b - a))


def dedup(events: Iterable[LogEvent], source: Source) -> list[LogEvent]:
    """One copy per (source key, event id): the one ingested first."""
    best: dict[tuple[Any, ...], LogEvent] = {}
    for e in events:
        key = (*(e.row[k] for k in source.key), e.eid)
        kept = best.get(key)
        if kept is None or (e.ingested, e.ts) < (kept.ingested, kept.ts):
            best[key] = e
    return list(best.values())


def reference(
    defs: Definitions,
    view_name: str,
    events: Sequence[LogEvent],
    entity: Mapping[str, Any],
    as_of: int,
    mode: str,
) -> dict[str, Any]:
    """Values of every feature of a view for one entity as of `as_of`, via `ViewTiler`."""
    view = defs.views[view_name]
    keys = defs.entities[view.entity].join_keys
    tiler = ViewTiler(view)
    state = EntityTiles()
    for e in dedup(events, defs.sources[view.source]):
        if any(e.row[k] != entity[k] for k in keys):
            continue
        if mode == "known_time" and e.ingested > as_of:
            continue
        tiler.apply(state, e.ts, e.eid, e.row, now=as_of)  # later events wait in `pending`
    return tiler.evaluate(state, as_of)


def same(a: Any, b: Any) -> bool:
    """Equal, floats within 1e-9 relative (1e-9 absolute near 0), lists element-wise."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def as_us(value: Any) -> Any:
    """Datetimes (and lists of them) read back from Parquet as µs, for comparison."""
    if isinstance(value, list):
        return [as_us(v) for v in value]
    if hasattr(value, "tzinfo"):
        return to_us(value)
    return value


def write_spine(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """A Parquet spine: join keys, a UTC `timestamp` (µs in `rows`) and a label."""
    table = pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in rows], pa.string()),
            "shop": pa.array([r["shop"] for r in rows], pa.int64()),
            "timestamp": pa.array([r["timestamp"] for r in rows], pa.timestamp("us", tz="UTC")),
            "label": pa.array([r.get("label") for r in rows], pa.float64()),
        }
    )
    pq.write_table(table, path)
