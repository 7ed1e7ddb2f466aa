"""Online values over HTTP equal a brute-force scan of the raw events (SPEC §4, §6).

Generated events of every example source are folded by the real tile code
(`ViewTiler.apply` + `write_tiles`, as the pipeline does), read back through
`POST /v1/features/online` and compared with plain Python over the events as of the
response's `as_of`: every feature of every view, composite keys, pending (future)
events, ties broken by event id, expired and unknown entities.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import pytest
import redis

from features.durations import iso, now_us, to_us
from features.model import Column, Definitions, Feature, Source
from tests.serving.conftest import Api, write_entity_events

pytestmark = pytest.mark.timeout(120)

USERS = [f"u{i}" for i in range(8)]
ITEMS = [f"it/{i}" for i in range(5)]  # '/' exercises the percent-encoding of entity ids
MINUTE = 60_000_000
Event = tuple[int, Any, dict[str, Any]]


def random_value(rng: random.Random, column: Column, source: Source) -> Any:
    """A plausible value for a schema column (nullable columns are sometimes null)."""
    if column.nullable and rng.random() < 0.2:
        return None
    if column.name == "user_id":
        return rng.choice(USERS)
    if column.name == "item_id":
        return rng.choice(ITEMS)
    if column.checks.isin:
        return rng.choice(column.checks.isin)
    if column.dtype == "string":
        return rng.choice(["alpha", "beta", "gamma", "delta"])
    if column.dtype == "float":
        return round(rng.uniform(0, 500), 2)
    if column.dtype == "int":
        return rng.randint(1, 400)
    if column.dtype == "bool":
        return rng.random() < 0.5
    if column.dtype == "timestamp":  # validated rows hold µs (the event time is set later)
        return 1_767_225_600_000_000 + rng.randint(0, 10**12)
    raise AssertionError(f"unexpected column {column}")


def generate(rng: random.Random, source: Source, count: int, now: int) -> list[Event]:
    """Events over the last 8 days plus a few in the next minutes (pending in the tiles)."""
    events: list[Event] = []
    for i in range(count):
        # Whole seconds make equal timestamps common, so ties on event id are exercised.
        ts = now - rng.randint(-5 * 60, 8 * 24 * 3600) * 1_000_000
        if rng.random() < 0.1 and events:
            ts = events[-1][0]
        row = {c.name: random_value(rng, c, source) for c in source.schema}
        eid: Any = (
            i * 7 % count + 1 if source.columns[source.event_id].dtype == "int" else f"e{i:05d}"
        )
        row[source.event_id] = eid
        row[source.timestamp] = ts
        events.append((ts, eid, row))
    return events


def brute_force(feature: Feature, events: list[Event], as_of: int) -> Any:
    """SPEC §4 by definition: events with ts <= T whose tile start is >= T - window."""
    g = feature.granularity
    rows = sorted(
        (ts, eid, row)
        for ts, eid, row in events
        if ts <= as_of and ts - ts % g >= as_of - feature.window
    )
    if feature.column is not None:
        rows = [
            (ts, eid, row[feature.column])
            for ts, eid, row in rows
            if row[feature.column] is not None
        ]
    else:
        rows = [(ts, eid, True) for ts, eid, _ in rows]
    values = [v for _, _, v in rows]
    fn = feature.function
    if fn == "count":
        return len(values)
    if fn == "sum":
        return sum(values) if values else 0
    if not values:
        return None
    if fn == "mean":
        return sum(values) / len(values)
    if fn == "min":
        return min(values)
    if fn == "max":
        return max(values)
    if fn == "first":
        return rows[0][2]
    if fn == "last":
        return rows[-1][2]
    if fn == "last_n":
        return [v for _, _, v in reversed(rows)][: feature.n]
    if fn == "stddev":
        if len(values) < 2:
            return None
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    raise AssertionError(fn)


def same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want, strict=True))
    return bool(got == want) and type(got) is type(want)


@pytest.fixture
def world(applied: Definitions, redis_client: redis.Redis) -> dict[str, Any]:
    """Events of every source, folded per view and entity and written to Redis."""
    rng = random.Random(20260101)
    now = now_us()
    by_source = {
        name: generate(rng, source, 400, now) for name, source in sorted(applied.sources.items())
    }
    per_entity: dict[tuple[str, tuple[Any, ...]], list[Event]] = defaultdict(list)
    for view in applied.views.values():
        keys = applied.join_keys(view.name)
        for event in by_source[view.source]:
            per_entity[(view.name, tuple(event[2][k] for k in keys))].append(event)
    for (view_name, key_values), events in per_entity.items():
        write_entity_events(redis_client, applied, view_name, key_values, events, now)
    return {"events": per_entity, "written_at": now}


def expected_vector(
    defs: Definitions, world: dict[str, Any], entity: dict[str, Any], as_of: int
) -> tuple[dict[str, Any], int | None]:
    """Brute-force values of every feature for an entity, and its newest event time used."""
    values: dict[str, Any] = {}
    newest: int | None = None
    for view in sorted(defs.views.values(), key=lambda v: v.name):
        key = tuple(entity[k] for k in defs.join_keys(view.name))
        events = world["events"].get((view.name, key), [])
        if events and max(ts for ts, _, _ in events) + view.ttl <= world["written_at"]:
            events = []  # the key expired in Redis: `ttl` after its newest event
        columns = defs.sources[view.source].columns
        for feature in view.features:
            value = brute_force(feature, events, as_of)
            if (
                feature.column
                and columns[feature.column].dtype == "timestamp"
                and value is not None
            ):
                value = [iso(v) for v in value] if isinstance(value, list) else iso(value)
            values[f"{view.name}:{feature.name}"] = value
        used = [ts for ts, _, _ in events if ts <= as_of]
        if used and (newest is None or max(used) > newest):
            newest = max(used)
    return values, newest


def test_online_values_equal_brute_force(
    api: Api, applied: Definitions, world: dict[str, Any]
) -> None:
    entities = [{"user_id": u, "item_id": i} for u in USERS for i in ITEMS]
    entities.append({"user_id": "nobody", "item_id": "nothing"})
    refs = [f"{name}:*" for name in sorted(applied.views)]
    response = api.http.post("/v1/features/online", json={"features": refs, "entities": entities})
    assert response.status_code == 200, response.text
    body = response.json()
    as_of = to_us(body["as_of"])
    assert as_of >= world["written_at"]
    expected_features = [
        f"{v}:{f.name}" for v in sorted(applied.views) for f in applied.views[v].features
    ]
    assert body["features"] == expected_features
    assert len(body["results"]) == len(entities)
    mismatches = []
    nonempty = 0
    for entity, result in zip(entities, body["results"], strict=True):
        assert result["entity"] == entity
        want, newest = expected_vector(applied, world, entity, as_of)
        assert list(result["values"]) == expected_features
        for ref, value in want.items():
            if not same(result["values"][ref], value):
                mismatches.append((entity, ref, result["values"][ref], value))
            nonempty += value not in (None, 0)
        assert result["event_time"] == (iso(newest) if newest is not None else None), entity
    assert not mismatches, mismatches[:10]
    assert nonempty > 500  # the comparison covered real values, not only empty windows


def test_unknown_entity_has_empty_windows(api: Api, applied: Definitions) -> None:
    response = api.http.post(
        "/v1/features/online",
        json={"features": ["user_txn:*"], "entities": [{"user_id": "never-seen"}]},
    )
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["event_time"] is None
    for feature in applied.views["user_txn"].features:
        want = 0 if feature.function in ("count", "sum") else None
        assert result["values"][f"user_txn:{feature.name}"] == want, feature.name


def test_get_one_view_equals_brute_force(
    api: Api, applied: Definitions, world: dict[str, Any]
) -> None:
    entity = {"user_id": USERS[1], "item_id": ITEMS[2]}
    assert ("user_item_engagement", (USERS[1], ITEMS[2])) in world["events"]
    response = api.http.get("/v1/features/online/user_item_engagement", params=entity)
    assert response.status_code == 200, response.text
    body = response.json()
    result = body["results"][0]
    assert result["entity"] == entity
    want, _ = expected_vector(applied, world, entity, to_us(body["as_of"]))
    assert body["features"] == list(result["values"])
    for ref in body["features"]:
        assert ref.startswith("user_item_engagement:")
        assert same(result["values"][ref], want[ref]), ref


def test_feature_order_selection_and_repeats(api: Api, world: dict[str, Any]) -> None:
    refs = [
        "user_txn:txn_count_24h",
        "user_logins:*",
        "user_txn:txn_count_24h",
        "user_txn:last_merchant",
    ]
    response = api.http.post(
        "/v1/features/online", json={"features": refs, "entities": [{"user_id": USERS[0]}]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["features"][0] == "user_txn:txn_count_24h"
    assert body["features"][-1] == "user_txn:last_merchant"
    assert body["features"].count("user_txn:txn_count_24h") == 1
    assert list(body["results"][0]["values"]) == body["features"]


def test_join_key_values_are_coerced_to_the_schema_dtype(
    api: Api, applied: Definitions, redis_client: redis.Redis
) -> None:
    # logins.login_id is an int column but not a join key; user_id is a string: an int
    # user id in the request names the same entity as its string form.
    now = now_us()
    row = {c.name: None for c in applied.sources["logins"].schema}
    row.update(
        user_id="42", success=True, country="DE", device="web", latency_ms=5, ts=now - MINUTE
    )
    write_entity_events(redis_client, applied, "user_logins", ["42"], [(now - MINUTE, 1, row)], now)
    for value in ("42", 42):
        response = api.http.get("/v1/features/online/user_logins", params={"user_id": value})
        assert response.json()["results"][0]["values"]["user_logins:login_count_1h"] == 1
    response = api.http.post(
        "/v1/features/online",
        json={"features": ["user_logins:login_count_1h"], "entities": [{"user_id": 42}]},
    )
    assert response.json()["results"][0]["values"]["user_logins:login_count_1h"] == 1
