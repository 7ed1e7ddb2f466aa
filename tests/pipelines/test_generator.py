"""The event generator: deterministic, realistic, and its labels match the lateness rules."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import pytest

from features.lateness import KeyLedger
from features.loader import load_definitions
from features.model import Checks, Column, Definitions, Source
from pipelines.generator import GeneratorConfig, generate, top_entities, training_spine

HOUR = 3_600_000_000
END = 1_780_000_000_000_000  # a fixed "now" so runs are reproducible

TXN = Source(
    name="transactions",
    topic="transactions",
    key=("user_id",),
    event_id="txn_id",
    timestamp="ts",
    allowed_lateness=HOUR,
    schema=(
        Column("txn_id", "string"),
        Column("user_id", "string"),
        Column("amount", "float", checks=Checks(ge=0)),
        Column("merchant", "string", nullable=True),
        Column("country", "string", checks=Checks(isin=("US", "GB", "DE", "FR"))),
        Column("ts", "timestamp"),
    ),
)
VIEWS = Source(
    name="page_views",
    topic="page_views",
    key=("user_id", "item_id"),
    event_id="view_id",
    timestamp="ts",
    allowed_lateness=5 * 60_000_000,
    schema=(
        Column("view_id", "string"),
        Column("user_id", "string"),
        Column("item_id", "string"),
        Column("dwell_ms", "int", checks=Checks(ge=0)),
        Column("ts", "timestamp"),
    ),
)
DEFS = Definitions(entities={}, sources={"transactions": TXN, "page_views": VIEWS}, views={})
EXAMPLE = load_definitions(Path(__file__).parents[2] / "features" / "definitions")


def to_us(value: object) -> int:
    if isinstance(value, int):
        return value * 1000
    return int(datetime.fromisoformat(str(value)).timestamp() * 1_000_000)


@pytest.mark.parametrize("fmt", ["iso", "ms"])
def test_labels_match_the_reference_lateness_and_dedup_rules(fmt: Literal["iso", "ms"]) -> None:
    out = generate(EXAMPLE, GeneratorConfig(events=20_000, end_us=END, timestamp_format=fmt))
    assert set(out) == set(EXAMPLE.sources)
    for source in EXAMPLE.sources.values():
        events = out[source.name]
        counts = events.counts()
        assert counts["duplicate"] > 0 and counts["late"] > 0 and counts["invalid"] > 0
        ledgers: dict[tuple[object, ...], KeyLedger] = {}
        expected = {"ok": "accept", "duplicate": "duplicate", "late": "late"}
        for event, kind in zip(events.events, events.kinds, strict=True):
            if kind == "invalid":
                continue
            key = tuple(event[k] for k in source.key)
            ledger = ledgers.setdefault(key, KeyLedger())
            verdict = ledger.judge(
                to_us(event[source.timestamp]), event[source.event_id], source.allowed_lateness
            )
            assert verdict == expected[kind], (source.name, event, kind)


def test_deterministic_per_seed_and_valid_values() -> None:
    config = GeneratorConfig(events=5_000, end_us=END, seed=3)
    first, second = generate(DEFS, config), generate(DEFS, config)
    assert first["transactions"].events == second["transactions"].events
    other = generate(DEFS, GeneratorConfig(events=5_000, end_us=END, seed=4))
    assert other["transactions"].events != first["transactions"].events
    start = END - 7 * 24 * HOUR
    for event in first["transactions"].accepted():
        assert event["amount"] >= 0
        assert event["country"] in {"US", "GB", "DE", "FR"}
        assert start <= to_us(event["ts"]) <= END
        assert event["correlation_id"].startswith("req-")
    ids = [e["txn_id"] for e in first["transactions"].accepted()]
    assert len(ids) == len(set(ids))


def test_distributions_are_realistic() -> None:
    out = generate(DEFS, GeneratorConfig(events=40_000, end_us=END))
    txns = out["transactions"].accepted()
    amounts = sorted(e["amount"] for e in txns)
    median, p99 = amounts[len(amounts) // 2], amounts[int(len(amounts) * 0.99)]
    assert p99 > 8 * median  # heavy tail
    top = top_entities(out["transactions"], TXN, n=1)[0]["user_id"]
    share = sum(e["user_id"] == top for e in txns) / len(txns)
    assert share > 20 / 10_000  # a hot user does far more than an average one
    hours = [datetime.fromisoformat(e["ts"]).hour for e in txns]
    evening = sum(17 <= h <= 21 for h in hours)
    night = sum(2 <= h <= 6 for h in hours)
    assert evening > 2 * night  # diurnal pattern
    assert 0.01 <= out["transactions"].counts()["duplicate"] / len(txns) <= 0.02


def test_training_spine_rows_have_keys_time_and_label() -> None:
    out = generate(DEFS, GeneratorConfig(events=5_000, end_us=END))
    spine = training_spine(out["page_views"], VIEWS, ["user_id", "item_id"], rows=50)
    assert len(spine) == 50
    assert all(set(r) == {"user_id", "item_id", "timestamp", "label"} for r in spine)
    assert all(r["label"] in (0, 1) for r in spine)
    assert all(to_us(r["timestamp"]) <= END for r in spine)
