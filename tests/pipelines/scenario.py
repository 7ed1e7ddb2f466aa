"""A hand-built feature repository, an event generator and a brute-force oracle for pipeline tests.

The oracle is plain Python written from SPEC §4 alone: lateness and duplicates judged per
source key in broker order, then every feature computed by scanning the accepted events.
It shares no code with `features.tiles`, `features.aggregations` or `features.lateness`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import redis

from features import layout
from features.durations import iso, to_us
from features.model import Checks, Column, Definitions, Entity, Feature, FeatureView, Source
from features.tiles import ViewTiler, default_granularity

S = 1_000_000
M = 60 * S
H = 60 * M
D = 24 * H
PROJECT = "t"


def feature(
    name: str, function: str, column: str | None, window: int, n: int | None = None
) -> Feature:
    return Feature(name, function, column, window, default_granularity(window), n)


def definitions(extra_views: Sequence[FeatureView] = ()) -> Definitions:
    """Two sources (one keyed by a composite key) and three views, one on a narrower entity."""
    entities = {
        "user": Entity("user", ("user_id",)),
        "user_item": Entity("user_item", ("user_id", "item_id")),
    }
    txns = Source(
        name="txns",
        topic="txns",
        key=("user_id",),
        event_id="txn_id",
        timestamp="ts",
        allowed_lateness=10 * M,
        schema=(
            Column("txn_id", "string"),
            Column("user_id", "string"),
            Column("amount", "float", checks=Checks(ge=0)),
            Column("merchant", "string", nullable=True),
            Column("ts", "timestamp"),
        ),
    )
    clicks = Source(
        name="clicks",
        topic="clicks",
        key=("user_id", "item_id"),
        event_id="click_id",
        timestamp="ts",
        allowed_lateness=5 * M,
        schema=(
            Column("click_id", "int"),
            Column("user_id", "string"),
            Column("item_id", "string"),
            Column("dwell", "float", nullable=True),
            Column("ts", "timestamp"),
        ),
    )
    views = [
        FeatureView(
            "user_txn",
            "user",
            "txns",
            D,
            (
                feature("count_1h", "count", None, H),
                feature("amount_sum_1d", "sum", "amount", D),
                feature("amount_mean_6h", "mean", "amount", 6 * H),
                feature("amount_max_1h", "max", "amount", H),
                feature("amount_min_1d", "min", "amount", D),
                feature("amount_std_1d", "stddev", "amount", D),
                feature("merchants_1h", "count", "merchant", H),
                feature("first_merchant_1d", "first", "merchant", D),
                feature("last_merchant_1d", "last", "merchant", D),
                feature("last_3_amounts_2h", "last_n", "amount", 2 * H, 3),
            ),
        ),
        FeatureView(
            "user_clicks",
            "user",
            "clicks",
            D,
            (
                feature("clicks_30m", "count", None, 30 * M),
                feature("dwell_mean_1d", "mean", "dwell", D),
                feature("last_item_1d", "last", "item_id", D),
            ),
        ),
        FeatureView(
            "user_item_clicks",
            "user_item",
            "clicks",
            D,
            (
                feature("clicks_1d", "count", None, D),
                feature("dwell_sum_1h", "sum", "dwell", H),
            ),
        ),
        *extra_views,
    ]
    sources = {"txns": txns, "clicks": clicks}
    return Definitions(entities=entities, sources=sources, views={v.name: v for v in views})


@dataclass
class Sent:
    """One thing appended to a stream: a payload (dict) or raw bytes, and the oracle's verdict."""

    source: str
    payload: Any
    verdict: str = "?"  # accept | late | duplicate | invalid


@dataclass
class Workload:
    """Everything pushed, in push order, with the oracle's verdicts filled in."""

    defs: Definitions
    sent: list[Sent] = field(default_factory=list)

    def accepted(self, source: str) -> list[dict[str, Any]]:
        return [s.payload for s in self.sent if s.source == source and s.verdict == "accept"]

    def count(self, source: str, verdict: str) -> int:
        return sum(1 for s in self.sent if s.source == source and s.verdict == verdict)


def generate(
    defs: Definitions, now: int, n_txns: int, n_clicks: int, seed: int = 1, users: int = 60
) -> Workload:
    """Seeded events over the last 3 hours, arriving roughly in time order with jitter, plus
    duplicates, late events, schema-invalid ones, garbage bytes and a few future events."""
    rng = random.Random(seed)
    work = Workload(defs)
    merchants = ["m1", "m2", "m3", None]
    items = [f"i{k}" for k in range(8)]
    rows: list[tuple[int, Sent]] = []
    for i in range(n_txns):
        ts = now - rng.randint(0, 3 * H)
        payload = {
            "txn_id": f"t{i}",
            "user_id": f"u{rng.randrange(users)}",
            "amount": round(rng.uniform(0, 500), 2),
            "merchant": rng.choice(merchants),
            "ts": iso(ts) if i % 2 else ts // 1000,
            "correlation_id": f"c-t{i}",
        }
        if i % 7 == 0:
            payload["channel"] = "web"  # an undeclared field: kept in `_extra`
        rows.append((ts + rng.randint(-4 * M, 4 * M), Sent("txns", payload)))
    for i in range(n_clicks):
        ts = now - rng.randint(0, 3 * H)
        payload = {
            "click_id": i,
            "user_id": f"u{rng.randrange(users)}",
            "item_id": rng.choice(items),
            "dwell": None if i % 9 == 0 else round(rng.uniform(0.5, 90), 3),
            "ts": iso(ts),
            "correlation_id": f"c-c{i}",
        }
        rows.append((ts + rng.randint(-2 * M, 2 * M), Sent("clicks", payload)))
    rows.sort(key=lambda r: r[0])
    work.sent = [s for _, s in rows]
    # Redeliveries of earlier events, late events, invalid events, garbage, future events.
    extra: list[tuple[int, Sent]] = []
    for _ in range(max(2, len(work.sent) // 40)):
        pos = rng.randrange(len(work.sent))
        extra.append(
            (
                rng.randrange(pos, len(work.sent) + 1),
                Sent(work.sent[pos].source, dict(work.sent[pos].payload)),
            )
        )
    for k in range(max(2, len(work.sent) // 100)):
        payload = {
            "txn_id": f"late{k}",
            "user_id": f"u{rng.randrange(users)}",
            "amount": 1.0,
            "merchant": "late",
            "ts": iso(now - 5 * H),
            "correlation_id": f"c-late{k}",
        }
        extra.append((len(work.sent), Sent("txns", payload)))
    invalid = [
        {
            "txn_id": "bad1",
            "user_id": "u1",
            "amount": -5.0,
            "merchant": None,
            "ts": iso(now),
            "correlation_id": "c-bad1",
        },
        {
            "txn_id": "bad2",
            "amount": 3.0,
            "merchant": None,
            "ts": iso(now),
            "correlation_id": "c-bad2",
        },
        {
            "txn_id": "bad3",
            "user_id": "u2",
            "amount": "lots",
            "merchant": 7,
            "ts": "yesterday",
            "correlation_id": "c-bad3",
        },
        {
            "click_id": "x",
            "user_id": "u1",
            "item_id": "i1",
            "dwell": 1.0,
            "ts": iso(now),
            "correlation_id": "c-bad4",
        },
    ]
    for payload in invalid:
        extra.append(
            (
                rng.randrange(len(work.sent) + 1),
                Sent("txns" if "txn_id" in payload else "clicks", payload),
            )
        )
    extra.append((rng.randrange(len(work.sent) + 1), Sent("txns", b"{not json")))
    for k in range(2):  # later than the wall clock: pending until the clock passes them
        payload = {
            "txn_id": f"future{k}",
            "user_id": f"u{k}",
            "amount": 9.0,
            "merchant": "future",
            "ts": iso(now + 20 * M),
            "correlation_id": f"c-future{k}",
        }
        extra.append((len(work.sent) + 1, Sent("txns", payload)))
    for pos, sent in sorted(extra, key=lambda e: e[0], reverse=True):
        work.sent.insert(pos, sent)
    judge(work)
    return work


def _valid(source: Source, payload: Any) -> bool:
    """Schema validity for the generated shapes (the generator only breaks these rules)."""
    if not isinstance(payload, dict):
        return False
    for col in source.schema:
        value = payload.get(col.name)
        if value is None:
            if not col.nullable:
                return False
            continue
        if col.dtype == "string" and not isinstance(value, str):
            return False
        if col.dtype == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            return False
        if col.dtype == "float":
            if not isinstance(value, int | float) or isinstance(value, bool):
                return False
            if col.checks.ge is not None and value < col.checks.ge:
                return False
        if col.dtype == "timestamp":
            try:
                to_us(value)
            except ValueError:
                return False
    return True


def event_time(payload: Mapping[str, Any], source: Source) -> int:
    return to_us(payload[source.timestamp])


def judge(work: Workload) -> None:
    """SPEC §4 in broker order per source key: schema, then lateness, then duplicates."""
    newest: dict[tuple[str, tuple[Any, ...]], int] = {}
    seen: dict[tuple[str, tuple[Any, ...]], set[Any]] = {}
    for sent in work.sent:
        source = work.defs.sources[sent.source]
        if not _valid(source, sent.payload):
            sent.verdict = "invalid"
            continue
        key = (sent.source, tuple(sent.payload[k] for k in source.key))
        ts = event_time(sent.payload, source)
        if key in newest and ts < newest[key] - source.allowed_lateness:
            sent.verdict = "late"
        elif sent.payload[source.event_id] in seen.setdefault(key, set()):
            sent.verdict = "duplicate"
        else:
            sent.verdict = "accept"
            seen[key].add(sent.payload[source.event_id])
            newest[key] = max(newest.get(key, ts), ts)


def ceil_to(ts: int, g: int) -> int:
    return -((-ts) // g) * g


def brute_force(
    work: Workload, view: FeatureView, entity: tuple[Any, ...], as_of: int
) -> dict[str, Any]:
    """Every feature of `view` for `entity` as of `as_of`, by scanning the accepted events."""
    source = work.defs.sources[view.source]
    join_keys = work.defs.entities[view.entity].join_keys
    events = [
        (event_time(p, source), p[source.event_id], p)
        for p in work.accepted(view.source)
        if tuple(p[k] for k in join_keys) == entity
    ]
    out: dict[str, Any] = {}
    for f in view.features:
        lo = ceil_to(as_of - f.window, f.granularity)
        rows = sorted((e for e in events if lo <= e[0] <= as_of), key=lambda e: (e[0], e[1]))
        if f.column is None:
            values = [True for _ in rows]
        else:
            rows = [r for r in rows if r[2].get(f.column) is not None]
            values = [
                to_us(r[2][f.column])
                if source.columns[f.column].dtype == "timestamp"
                else r[2][f.column]
                for r in rows
            ]
        out[f.name] = _aggregate(f.function, values, f.n)
    return out


def _aggregate(function: str, values: list[Any], n: int | None) -> Any:
    if function == "count":
        return len(values)
    if function == "sum":
        return sum(values) if values else 0
    if not values:
        return None
    if function == "mean":
        return sum(values) / len(values)
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    if function == "first":
        return values[0]
    if function == "last":
        return values[-1]
    if function == "last_n":
        return list(reversed(values))[: n or 1]
    if function == "stddev":
        if len(values) < 2:
            return None
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    raise AssertionError(function)


def close(a: Any, b: Any) -> bool:
    """Equality with the SPEC's float tolerance (1e-9 relative, 1e-9 absolute near 0)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def entities_of(work: Workload, view: FeatureView) -> set[tuple[Any, ...]]:
    source = work.defs.sources[view.source]
    join_keys = work.defs.entities[view.entity].join_keys
    return {
        tuple(s.payload[k] for k in join_keys)
        for s in work.sent
        if s.source == source.name
        and isinstance(s.payload, dict)
        and all(isinstance(s.payload.get(k), str) for k in join_keys)
    }


def online_values(
    client: redis.Redis, view: FeatureView, entities: Iterable[tuple[Any, ...]], as_of: int
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Values the online store serves: HGETALL of each key, evaluated with the features core."""
    tiler = ViewTiler(view)
    entities = sorted(entities)
    pipe = client.pipeline(transaction=False)
    for entity in entities:
        pipe.hgetall(layout.view_key(PROJECT, view.name, layout.entity_id(entity)))
    out = {}
    for entity, fields in zip(entities, pipe.execute(), strict=True):
        state = layout.decode_tiles(fields)
        out[entity] = tiler.empty_values() if state is None else tiler.evaluate(state, as_of)
    return out


def mismatches(
    client: redis.Redis, work: Workload, as_of: int, views: Iterable[str] | None = None
) -> list[str]:
    """Every (view, entity, feature) whose online value differs from the brute force."""
    problems = []
    for view_name in sorted(work.defs.views) if views is None else views:
        view = work.defs.views[view_name]
        entities = entities_of(work, view)
        online = online_values(client, view, entities, as_of)
        for entity in sorted(entities):
            expected = brute_force(work, view, entity, as_of)
            for name, value in expected.items():
                if not close(online[entity][name], value):
                    problems.append(
                        f"{view.name}{entity}.{name}: online {online[entity][name]!r} != {value!r}"
                    )
    return problems


def push(client: redis.Redis, work: Workload, partitions: int = 4) -> None:
    """Append every event in order (garbage bytes too), routed like the producer routes."""
    from pipelines.producer import RedisStreamProducer

    producer = RedisStreamProducer(client, PROJECT, partitions)
    batch: list[dict[str, Any]] = []
    current = None
    for sent in work.sent:
        if not isinstance(sent.payload, dict) or any(
            k not in sent.payload for k in work.defs.sources[sent.source].key
        ):
            if batch:
                producer.send(work.defs.sources[current], batch)  # type: ignore[index]
                batch = []
            topic = work.defs.sources[sent.source].topic
            raw = sent.payload if isinstance(sent.payload, bytes) else orjson.dumps(sent.payload)
            client.xadd(layout.stream_key(PROJECT, topic, 0), {"d": raw})
            continue
        if current is not None and sent.source != current and batch:
            producer.send(work.defs.sources[current], batch)
            batch = []
        current = sent.source
        batch.append(sent.payload)
    if batch:
        producer.send(work.defs.sources[current], batch)  # type: ignore[index]


def read_log(root: Path, source: str) -> list[dict[str, Any]]:
    """Every row of a source's offline log (raises if any file is unreadable)."""
    rows: list[dict[str, Any]] = []
    for path in sorted((root / source).glob("date=*/*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def stats(client: redis.Redis, source: str) -> dict[str, int]:
    raw = client.hgetall(layout.source_stats_key(PROJECT, source))
    return {
        k.decode(): int(float(v))
        for k, v in raw.items()
        if k.decode() in {"applied", "duplicates", "late", "invalid"}
    }


def expected_stats(work: Workload, source: str) -> dict[str, int]:
    return {
        "applied": work.count(source, "accept"),
        "duplicates": work.count(source, "duplicate"),
        "late": work.count(source, "late"),
        "invalid": work.count(source, "invalid"),
    }
