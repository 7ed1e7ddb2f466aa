"""A seeded, realistic event generator for the sources of a feature repository.

It draws a week of events per source with hot users (Zipf), heavy-tailed amounts, a
diurnal pattern, out-of-order arrival within the allowed lateness, and a small share of
redelivered duplicates, truly late events and schema-invalid events. Everything is
vectorized with numpy, so a few hundred thousand events take about a second; the demo,
tests and benchmarks all use it. Events come out in broker (arrival) order per source,
each labelled with what the pipeline should do with it (`kinds`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from features.model import Definitions, Source
from pipelines.generated_columns import (
    Draw,
    Population,
    apply_nulls,
    breakage,
    column_values,
    correlate,
    population,
)

US_PER_MS = 1_000
US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR

Kind = Literal["ok", "duplicate", "late", "invalid"]
# Share of the total per known example source; other sources share equally.
DEFAULT_SHARES: dict[str, float] = {"page_views": 0.55, "transactions": 0.30, "logins": 0.15}
APP_VERSIONS: tuple[str, ...] = ("web-5.2", "ios-3.8.1", "android-3.7.0", "ios-3.7.4")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplication by it is a bijection mod 2**64


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate: sizes, time span and the shares of each kind of irregularity."""

    events: int = 300_000  # total regular events over all sources (before extras)
    days: float = 7.0
    end_us: int | None = None  # newest event time; default: now
    seed: int = 7
    users: int = 10_000
    items: int = 3_000
    user_skew: float = 0.8  # Zipf exponent of user activity (hot users)
    duplicate_rate: float = 0.015
    late_rate: float = 0.004
    invalid_rate: float = 0.004
    null_rate: float = 0.03  # nulls in nullable, non-key columns
    timestamp_format: Literal["iso", "ms"] = "iso"
    extra_fields: bool = True  # add an undeclared `app_version` to some events
    shares: Mapping[str, float] = field(default_factory=dict)


@dataclass
class SourceEvents:
    """The events of one source in broker order, with the expected verdict of each."""

    source: str
    events: list[dict[str, Any]]
    kinds: list[Kind]

    def counts(self) -> dict[str, int]:
        """How many events of each kind."""
        out = dict.fromkeys(("ok", "duplicate", "late", "invalid"), 0)
        for kind in self.kinds:
            out[kind] += 1
        return out

    def accepted(self) -> list[dict[str, Any]]:
        """The events the pipeline should apply (first copies of valid, on-time events)."""
        return [e for e, k in zip(self.events, self.kinds, strict=True) if k == "ok"]

    def jsonl(self) -> bytes:
        """All events as JSON lines, in broker order."""
        return b"".join(orjson.dumps(e) + b"\n" for e in self.events)

    def write_jsonl(self, path: Path) -> Path:
        """Write the JSON lines to `path` (parents created) and return it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.jsonl())
        return path


def generate(defs: Definitions, config: GeneratorConfig | None = None) -> dict[str, SourceEvents]:
    """Events for every source of `defs`, keyed by source name (deterministic per seed)."""
    config = config or GeneratorConfig()
    end_us = config.end_us if config.end_us is not None else _now_us()
    end_us -= end_us % US_PER_MS
    names = sorted(defs.sources)
    sizes = _split(config.events, names, config.shares)
    pop = _population(config, np.random.default_rng([config.seed, 0]))
    out: dict[str, SourceEvents] = {}
    for index, name in enumerate(names):
        rng = np.random.default_rng([config.seed, 1 + index, zlib.crc32(name.encode())])
        out[name] = generate_source(defs.sources[name], sizes[name], config, end_us, rng, pop)
    return out


def generate_source(
    source: Source,
    n: int,
    config: GeneratorConfig,
    end_us: int,
    rng: np.random.Generator,
    pop: Population | None = None,
) -> SourceEvents:
    """`n` regular events of one source plus its duplicates, late and invalid events."""
    pop = pop or _population(config, rng)
    lateness = max(source.allowed_lateness, 2_000_000)
    times = _event_times(n, config.days, end_us, rng)
    columns = _columns(source, n, times, config, rng, pop)
    salt = zlib.crc32(f"{config.seed}:{source.name}".encode())
    columns[source.event_id] = _event_ids(source, np.arange(n), salt)
    # Arrival = event time + a small delay, bounded by a quarter of the allowed lateness, so
    # regular events arrive out of order but are never late themselves.
    cap = lateness // 4
    delay = np.minimum(rng.exponential(2_000_000, n).astype(np.int64), cap)
    shuffled = rng.random(n) < 0.05
    delay[shuffled] = rng.integers(0, cap + 1, int(shuffled.sum()))
    arrival = times + delay
    rows = _rows(source, columns, times, config, n, salt, rng)
    kinds: list[Kind] = ["ok"] * n

    n_dup = round(n * config.duplicate_rate)
    dup_of = rng.integers(0, n, n_dup)
    dup_arrival = arrival[dup_of] + rng.integers(1, cap + 1, n_dup)

    # A late event follows an accepted event of the same key and is older than it by more
    # than the allowed lateness, so the verdict `late` holds whatever else arrived between.
    n_late = round(n * config.late_rate)
    late_after = rng.integers(0, n, n_late)
    late_times = times[late_after] - lateness - rng.integers(60_000_000, 6 * US_PER_HOUR, n_late)
    late_times -= late_times % US_PER_MS
    late_arrival = arrival[late_after] + 1
    late_rows = []
    for j, (anchor, ts) in enumerate(zip(late_after.tolist(), late_times.tolist(), strict=True)):
        row = dict(rows[anchor])
        row[source.event_id] = _event_ids(source, np.array([n + j]), salt)[0]
        row[source.timestamp] = _format_times(np.array([ts]), config.timestamp_format)[0]
        row["correlation_id"] = _correlation_ids(np.array([n + j]), salt)[0]
        late_rows.append(row)

    n_bad = round(n * config.invalid_rate)
    bad_of = rng.integers(0, n, n_bad)
    bad_rows = [
        _corrupt(source, dict(rows[i]), n + n_late + j, salt, rng)
        for j, i in enumerate(bad_of.tolist())
    ]
    bad_arrival = arrival[bad_of] + rng.integers(0, cap + 1, n_bad)

    all_rows = rows + [dict(rows[i]) for i in dup_of.tolist()] + late_rows + bad_rows
    dup_kinds: list[Kind] = ["duplicate"] * n_dup
    late_kinds: list[Kind] = ["late"] * n_late
    bad_kinds: list[Kind] = ["invalid"] * n_bad
    kinds += dup_kinds + late_kinds + bad_kinds
    order = np.argsort(
        np.concatenate([arrival, dup_arrival, late_arrival, bad_arrival]), kind="stable"
    )
    return SourceEvents(
        source=source.name,
        events=[all_rows[i] for i in order.tolist()],
        kinds=[kinds[i] for i in order.tolist()],
    )


def top_entities(events: SourceEvents, source: Source, n: int = 3) -> list[dict[str, Any]]:
    """The `n` most active source keys among the accepted events (for demos and smoke tests)."""
    tally: dict[tuple[Any, ...], int] = {}
    for event in events.accepted():
        key = tuple(event[k] for k in source.key)
        tally[key] = tally.get(key, 0) + 1
    best = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [dict(zip(source.key, key, strict=True)) for key, _ in best]


def training_spine(
    events: SourceEvents,
    source: Source,
    join_keys: Iterable[str],
    rows: int,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """A spine for a training export: sampled (entity, time) pairs with a binary label.

    Each row takes the join keys of an accepted event, a timestamp shortly after it (a
    decision time, at most the newest event time) and a `label` that is more often 1 for
    large amounts, as a fraud or conversion label would be.
    """
    rng = np.random.default_rng([seed, 99])
    accepted = events.accepted()
    keys = list(join_keys)
    picks = rng.choice(len(accepted), size=min(rows, len(accepted)), replace=False)
    newest = max((_parse_time(e[source.timestamp]) for e in accepted), default=0)
    out = []
    for i in sorted(picks.tolist()):
        event = accepted[i]
        delay = int(rng.integers(1, 30 * 60)) * 1_000_000
        ts = min(_parse_time(event[source.timestamp]) + delay, newest)  # never in the future
        amount = event.get("amount")
        p = 0.02 + (0.3 if isinstance(amount, float) and amount > 200 else 0.0)
        row = {k: event[k] for k in keys}
        row["timestamp"] = _format_times(np.array([ts - ts % US_PER_MS]), "iso")[0]
        row["label"] = int(rng.random() < p)
        out.append(row)
    return out


def _now_us() -> int:
    return int(np.datetime64("now", "us").astype(np.int64))


def _split(total: int, names: list[str], shares: Mapping[str, float]) -> dict[str, int]:
    if not names:
        return {}
    weights = np.array([shares.get(n, DEFAULT_SHARES.get(n, 1 / len(names))) for n in names])
    counts = np.floor(weights / weights.sum() * total).astype(int)
    counts[0] += total - counts.sum()
    return dict(zip(names, counts.tolist(), strict=True))


def _population(config: GeneratorConfig, rng: np.random.Generator) -> Population:
    return population(config.users, config.items, config.user_skew, rng)


def _columns(
    source: Source,
    n: int,
    times: np.ndarray,
    config: GeneratorConfig,
    rng: np.random.Generator,
    pop: Population,
) -> dict[str, np.ndarray]:
    """All schema columns of `n` events (the event id is filled in by the caller)."""
    draw = Draw(n, _pick(pop.user_p, n, rng), _pick(pop.item_p, n, rng), pop, rng)
    columns: dict[str, np.ndarray] = {source.event_id: np.empty(0)}  # filled in later
    for col in source.schema:
        if col.name == source.timestamp or col.dtype == "timestamp":
            columns[col.name] = _format_times(times, config.timestamp_format)
        elif col.name != source.event_id:
            columns[col.name] = column_values(col, draw)
    correlate(source, columns, rng)
    for col in source.schema:
        if col.name in columns:
            apply_nulls(col, source, columns[col.name], config.null_rate, rng)
    return columns


def _pick(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(len(p), n, p=p)


def _event_times(n: int, days: float, end_us: int, rng: np.random.Generator) -> np.ndarray:
    """Event times (µs, ms resolution) over `days` before `end_us`, busier in the evening."""
    start = end_us - int(days * US_PER_DAY)
    hours = np.arange(start, end_us, US_PER_HOUR)
    hour_of_day = (hours // US_PER_HOUR) % 24
    weekday = (hours // US_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    weight = (1.0 + 0.75 * np.cos(2 * np.pi * (hour_of_day - 19) / 24)) * np.where(
        weekday >= 5, 1.2, 1.0
    )
    weight[-1] *= (end_us - hours[-1]) / US_PER_HOUR  # the last bucket may be partial
    bucket = rng.choice(len(hours), n, p=weight / weight.sum())
    width = np.minimum(end_us - hours[bucket], US_PER_HOUR)
    times = hours[bucket] + (rng.random(n) * width).astype(np.int64)
    return times - times % US_PER_MS


def _mix(index: np.ndarray, salt: int) -> np.ndarray:
    """A bijection of 64-bit integers: distinct indexes give distinct, random-looking ids."""
    with np.errstate(over="ignore"):
        return (index.astype(np.uint64) + np.uint64(salt)) * _MIX


def _event_ids(source: Source, index: np.ndarray, salt: int) -> np.ndarray:
    prefix = source.name[:3]
    col = source.columns.get(source.event_id)
    if col is not None and col.dtype == "int":
        return (index + 1).astype(np.int64).astype(object)
    return np.array([f"{prefix}_{v:016x}" for v in _mix(index, salt).tolist()], dtype=object)


def _correlation_ids(index: np.ndarray, salt: int) -> np.ndarray:
    ids = [f"req-{v:016x}" for v in _mix(index, salt ^ 0x5BD1E995).tolist()]
    return np.array(ids, dtype=object)


def _format_times(times: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "ms":
        return (times // US_PER_MS).astype(np.int64).astype(object)
    text = np.datetime_as_string(times.astype("datetime64[us]").astype("datetime64[ms]"))
    return np.char.add(text, "Z").astype(object)


def _parse_time(value: Any) -> int:
    if isinstance(value, int):
        return value * US_PER_MS
    return int(np.datetime64(str(value).removesuffix("Z"), "us").astype(np.int64))


def _rows(
    source: Source,
    columns: dict[str, np.ndarray],
    times: np.ndarray,
    config: GeneratorConfig,
    n: int,
    salt: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Turn columns into event dicts, with correlation ids and a few undeclared fields."""
    names = list(columns)
    lists = [columns[name].tolist() for name in names]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]
    for row, cid in zip(rows, _correlation_ids(np.arange(n), salt).tolist(), strict=True):
        row["correlation_id"] = cid
    if config.extra_fields and "app_version" not in source.columns:
        flagged = np.flatnonzero(rng.random(n) < 0.3)
        versions = rng.choice(len(APP_VERSIONS), len(flagged))
        for i, v in zip(flagged.tolist(), versions.tolist(), strict=True):
            rows[i]["app_version"] = APP_VERSIONS[v]
    return rows


def _corrupt(
    source: Source, row: dict[str, Any], index: int, salt: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Break one rule of the schema: a bound, a category, a type, a null or a missing field."""
    row[source.event_id] = _event_ids(source, np.array([index]), salt)[0]
    row["correlation_id"] = _correlation_ids(np.array([index]), salt)[0]
    options = breakage(source)
    name, value = options[int(rng.integers(0, len(options)))]
    if value is None and name not in source.key and rng.random() < 0.5:
        row.pop(name, None)  # a missing field (key columns stay, so the event can be routed)
    else:
        row[name] = value
    return row


def main(argv: list[str] | None = None) -> None:
    """`python -m pipelines.generator`: write one JSON-lines file of events per source."""
    import argparse
    import sys

    from features.loader import load_definitions

    parser = argparse.ArgumentParser(prog="python -m pipelines.generator", description=main.__doc__)
    parser.add_argument("--definitions", type=Path, default=Path("features/definitions"))
    parser.add_argument("--out", type=Path, default=Path("events"), help="output directory")
    parser.add_argument("--events", type=int, default=GeneratorConfig.events)
    parser.add_argument("--days", type=float, default=GeneratorConfig.days)
    parser.add_argument("--seed", type=int, default=GeneratorConfig.seed)
    args = parser.parse_args(argv)
    config = GeneratorConfig(events=args.events, days=args.days, seed=args.seed)
    for name, events in generate(load_definitions(args.definitions), config).items():
        path = events.write_jsonl(args.out / f"{name}.jsonl")
        sys.stdout.write(f"{path}: {len(events.events)} events {events.counts()}\n")


if __name__ == "__main__":
    main()
