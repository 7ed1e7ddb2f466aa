"""`POST /v1/features/historical` over HTTP: exact point-in-time values from the offline log.

The log is written with the pipeline's own writer; the expected values come from
`features.tiles.ViewTiler` over the same events (tests/pipelines/offline_fixtures.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from features.durations import iso, to_us
from features.model import Definitions
from tests.pipelines.offline_fixtures import LogEvent, reference, same, write_log
from tests.serving.conftest import Api

pytestmark = pytest.mark.timeout(120)
S = 1_000_000
BASE = to_us("2026-03-01T22:00:00Z")
USERS = ["u1", "u2", "u3"]
ITEMS = ["i1", "i2"]


def page_views(n: int, seed: int) -> list[LogEvent]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        ts = BASE + rng.randrange(0, 4 * 3600) * S
        row = {
            "view_id": f"v{i}",
            "user_id": rng.choice(USERS),
            "item_id": rng.choice(ITEMS),
            "category": rng.choice([None, "shoes", "hats"]),
            "dwell_seconds": rng.randrange(0, 4000) / 8,
            "position": rng.choice([None, 1, 2, 7]),
            "device": rng.choice(["web", "ios", "android"]),
            "added_to_cart": rng.random() < 0.3,
            "ts": ts,
        }
        events.append(LogEvent(ts, row["view_id"], row, ts + rng.choice([0, 2, 1800]) * S))
    # a copy of an event, ingested again later: counted once
    events.append(
        LogEvent(events[0].ts, events[0].eid, dict(events[0].row), events[0].ingested + S)
    )
    return events


@pytest.fixture
def logged(applied: Definitions, tmp_path: Path) -> tuple[Definitions, list[LogEvent], Path]:
    events = page_views(300, seed=5)
    write_log(tmp_path / "log", applied.sources["page_views"], events, files=3)
    return applied, events, tmp_path / "log"


FEATURES = ["user_item_engagement:*", "user_browsing:views_15m", "user_browsing:last_5_items"]


@pytest.mark.parametrize("mode", ["event_time", "known_time"])
def test_values_equal_the_reference_in_order(logged, serve: Callable[..., Api], mode: str) -> None:
    defs, events, root = logged
    api = serve(offline_root=root)
    rng = random.Random(1)
    rows = []
    for i in range(60):
        t = rng.choice([e.ts for e in events] + [BASE + rng.randrange(-3600, 6 * 3600) * S])
        stamp = iso(t) if i % 3 else t // 1000  # ISO strings and epoch milliseconds
        if i % 3 == 0:
            t = (t // 1000) * 1000
        rows.append(
            {
                "user_id": rng.choice([*USERS, "ghost"]),
                "item_id": rng.choice(ITEMS),
                "timestamp": stamp,
                "label": i,
            }
        )
    answer = api.http.post(
        "/v1/features/historical", json={"features": FEATURES, "rows": rows, "mode": mode}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["mode"] == mode
    assert body["features"][:2] == [
        "user_item_engagement:view_count_1h",
        "user_item_engagement:view_count_7d",
    ]
    assert len(body["results"]) == len(rows)
    for row, result in zip(rows, body["results"], strict=True):
        t = to_us(row["timestamp"])
        assert result["entity"] == {"user_id": row["user_id"], "item_id": row["item_id"]}
        assert result["timestamp"] == iso(t)
        want = {
            f"user_item_engagement:{k}": v
            for k, v in reference(defs, "user_item_engagement", events, row, t, mode).items()
        }
        browse = reference(defs, "user_browsing", events, row, t, mode)
        want["user_browsing:views_15m"] = browse["views_15m"]
        want["user_browsing:last_5_items"] = browse["last_5_items"]
        first_seen = want["user_item_engagement:first_seen_7d"]
        want["user_item_engagement:first_seen_7d"] = None if first_seen is None else iso(first_seen)
        assert list(result["values"]) == body["features"]
        for key, value in want.items():
            assert same(result["values"][key], value), (key, row, result["values"][key], value)
    assert any(r["values"]["user_item_engagement:view_count_7d"] > 1 for r in body["results"])


def test_known_time_hides_events_ingested_later(logged, serve: Callable[..., Api]) -> None:
    _, events, root = logged
    api = serve(offline_root=root)
    late = next(e for e in events if e.ingested - e.ts == 1800 * S)
    row = {
        "user_id": late.row["user_id"],
        "item_id": late.row["item_id"],
        "timestamp": iso(late.ts),
    }
    counts = {}
    for mode in ("event_time", "known_time"):
        body = api.http.post(
            "/v1/features/historical",
            json={"features": ["user_item_engagement:view_count_1h"], "rows": [row], "mode": mode},
        ).json()
        counts[mode] = body["results"][0]["values"]["user_item_engagement:view_count_1h"]
    assert counts["known_time"] < counts["event_time"]


def test_errors_are_json_with_reasons(logged, serve: Callable[..., Api]) -> None:
    _, _, root = logged
    api = serve(offline_root=root)
    url = "/v1/features/historical"
    feats = ["user_item_engagement:view_count_1h"]
    missing = api.http.post(
        url,
        json={"features": feats, "rows": [{"user_id": "u1", "timestamp": "2026-03-01T00:00:00Z"}]},
    )
    assert missing.status_code == 422
    error = missing.json()["error"]
    assert "item_id" in error["message"] and error["details"][0]["index"] == 0
    bad_time = api.http.post(
        url,
        json={
            "features": feats,
            "rows": [{"user_id": "u1", "item_id": "i1", "timestamp": "yesterday"}],
        },
    )
    assert bad_time.status_code == 422 and "yesterday" in bad_time.json()["error"]["message"]
    unknown = api.http.post(
        url,
        json={
            "features": ["user_item_engagement:nope"],
            "rows": [{"user_id": "u1", "item_id": "i1", "timestamp": 0}],
        },
    )
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
    too_many = api.http.post(
        url,
        json={
            "features": feats,
            "rows": [{"user_id": "u", "item_id": "i", "timestamp": 0}] * 10_001,
        },
    )
    assert too_many.status_code == 422 and "10000" in too_many.json()["error"]["message"]
    bad_mode = api.http.post(
        url,
        json={
            "features": feats,
            "rows": [{"user_id": "u", "item_id": "i", "timestamp": 0}],
            "mode": "now",
        },
    )
    assert bad_mode.status_code == 422
    assert "X-Correlation-ID" in bad_mode.headers


def test_empty_log_gives_empty_windows(
    applied: Definitions, serve: Callable[..., Api], tmp_path: Path
) -> None:
    api = serve(offline_root=tmp_path / "nothing")
    body = api.http.post(
        "/v1/features/historical",
        json={
            "features": ["user_browsing:*"],
            "rows": [{"user_id": "u1", "timestamp": "2026-01-01T00:00:00Z"}],
        },
    ).json()
    assert body["results"][0]["values"] == {
        "user_browsing:views_15m": 0,
        "user_browsing:dwell_stddev_1d": None,
        "user_browsing:last_5_items": None,
        "user_browsing:first_category_1h": None,
        "user_browsing:last_device": None,
    }
