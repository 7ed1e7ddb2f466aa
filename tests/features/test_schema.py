"""Batch event validation (`features.schema`): every dtype and check, nulls, extras, ids.

The property tests (test_schema_properties.py) hold it equal to a plain-Python reference
validator and to pandera's own `DataFrameSchema.validate` over the same typed frame.
"""

from __future__ import annotations

from typing import Any

import orjson
import pandera.errors
import pytest

from features.coercion import coerce_column
from features.durations import to_us
from features.model import Checks, Column, Source
from features.schema import Event, Rejected, SourceValidator, pandera_schema
from features.source_schema import batch_frame

T2020 = to_us("2020-01-01T00:00:00Z")
SOURCE = Source(
    name="orders",
    topic="orders",
    key=("user_id", "shop"),
    event_id="eid",
    timestamp="ts",
    allowed_lateness=3_600_000_000,
    schema=(
        Column("eid", "string", checks=Checks(str_length_min=1, str_length_max=8)),
        Column("user_id", "string", checks=Checks(regex=r"^u[0-9]+$")),
        Column("shop", "int", checks=Checks(ge=0, lt=100)),
        Column("amount", "float", nullable=True, checks=Checks(gt=0)),
        Column("score", "float", checks=Checks(le=1.0)),
        Column("country", "string", checks=Checks(isin=("US", "GB", "DE", "FR"))),
        Column("tag", "string", nullable=True, checks=Checks(notin=("bad",))),
        Column("code", "int", nullable=True, checks=Checks(isin=(1, 2, 3))),
        Column("flag", "bool"),
        Column("seen", "timestamp", nullable=True, checks=Checks(ge=T2020)),
        Column("ts", "timestamp"),
    ),
)
GOOD: dict[str, Any] = {
    "eid": "e1",
    "user_id": "u7",
    "shop": 3,
    "amount": 12.5,
    "score": 0.5,
    "country": "US",
    "tag": "new",
    "code": 2,
    "flag": True,
    "seen": "2024-05-01T10:00:00Z",
    "ts": "2026-01-01T00:00:01Z",
}


def event(**changes: Any) -> dict[str, Any]:
    """A valid event with some fields changed (`None` values kept, `...` removes a field)."""
    out = {**GOOD, **changes}
    return {k: v for k, v in out.items() if v is not ...}


def check_one(payload: Any) -> tuple[list[Event], list[Rejected]]:
    return SourceValidator(SOURCE).validate([payload])


def reasons_of(**changes: Any) -> list[str]:
    events, rejected = check_one(orjson.dumps(event(**changes)))
    assert not events and len(rejected) == 1
    return rejected[0].reasons


def test_a_valid_event_is_normalized() -> None:
    payload = orjson.dumps(event(amount=12, correlation_id="c-1", note="hi", seen=None))
    events, rejected = check_one(payload)
    assert rejected == []
    (ev,) = events
    assert ev.index == 0
    assert ev.ts == to_us("2026-01-01T00:00:01Z")
    assert ev.eid == "e1"
    assert ev.key == ("u7", 3)
    assert ev.row == {
        **GOOD,
        "amount": 12.0,
        "seen": None,
        "ts": to_us("2026-01-01T00:00:01Z"),
    }
    assert isinstance(ev.row["amount"], float)
    assert ev.extra == {"note": "hi"}
    assert ev.correlation_id == "c-1"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"eid": ""}, "eid: length must be between 1 and 8 (got '')"),
        ({"eid": "x" * 9}, "eid: length must be between 1 and 8 (got 'xxxxxxxxx')"),
        ({"user_id": "x7"}, "user_id: must match /^u[0-9]+$/ (got 'x7')"),
        ({"shop": -1}, "shop: must be >= 0 and < 100 (got -1)"),
        ({"shop": 100}, "shop: must be >= 0 and < 100 (got 100)"),
        ({"amount": 0}, "amount: must be > 0 (got 0)"),
        ({"amount": -3.0}, "amount: must be > 0 (got -3.0)"),
        ({"score": 1.5}, "score: must be <= 1.0 (got 1.5)"),
        ({"country": "XX"}, "country: must be one of [US, GB, DE, FR] (got 'XX')"),
        ({"tag": "bad"}, "tag: must not be one of [bad] (got 'bad')"),
        ({"code": 7}, "code: must be one of [1, 2, 3] (got 7)"),
        (
            {"seen": "2019-12-31T23:59:59Z"},
            "seen: must be >= 2020-01-01T00:00:00Z (got '2019-12-31T23:59:59Z')",
        ),
    ],
)
def test_each_check_names_column_rule_and_value(changes: dict[str, Any], reason: str) -> None:
    assert reasons_of(**changes) == [reason]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"shop": True}, "shop: expected int (got True)"),
        ({"shop": 1.5}, "shop: expected int (got 1.5)"),
        ({"shop": 1.0}, "shop: expected int (got 1.0)"),
        ({"shop": "3"}, "shop: expected int (got '3')"),
        ({"score": "0.5"}, "score: expected float (got '0.5')"),
        ({"score": False}, "score: expected float (got False)"),
        ({"country": 5}, "country: expected string (got 5)"),
        ({"country": ["US"]}, "country: expected string (got ['US'])"),
        ({"flag": 1}, "flag: expected bool (got 1)"),
        ({"flag": "true"}, "flag: expected bool (got 'true')"),
        ({"ts": "yesterday"}, "ts: not a timestamp ('yesterday')"),
        ({"ts": True}, "ts: not a timestamp (True)"),
        ({"ts": {"at": 1}}, "ts: not a timestamp ({'at': 1})"),
        ({"shop": 2**63}, "shop: out of the int64 range (got 9223372036854775808)"),
    ],
)
def test_each_dtype_rejects_other_types(changes: dict[str, Any], reason: str) -> None:
    # dicts: orjson cannot encode 2**63, and a dict payload takes the same path
    events, rejected = check_one(event(**changes))
    assert not events
    assert rejected[0].reasons == [reason]


def test_int_is_accepted_for_float_and_nan_is_null() -> None:
    events, rejected = SourceValidator(SOURCE).validate(
        [event(score=1), event(amount=float("nan")), event(score=float("nan"))]
    )
    assert [e.row["score"] for e in events] == [1.0, 0.5]
    assert events[1].row["amount"] is None
    assert rejected[0].index == 2
    assert rejected[0].reasons == ["score: must not be null"]


def test_missing_and_null_are_told_apart() -> None:
    assert reasons_of(user_id=...) == ["user_id: missing"]
    assert reasons_of(user_id=None) == ["user_id: must not be null"]
    events, _ = check_one(orjson.dumps(event(amount=..., tag=None)))
    assert events[0].row["amount"] is None
    assert events[0].row["tag"] is None


def test_every_reason_of_an_event_is_listed_in_column_order() -> None:
    reasons = reasons_of(
        ts="yesterday", country="XX", shop=-4, user_id=..., flag=1, correlation_id=7
    )
    assert reasons == [
        "user_id: missing",
        "shop: must be >= 0 and < 100 (got -4)",
        "country: must be one of [US, GB, DE, FR] (got 'XX')",
        "flag: expected bool (got 1)",
        "ts: not a timestamp ('yesterday')",
        "correlation_id: expected string (got 7)",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T00:00:01Z", "2026-01-01T00:00:01Z"),
        ("2026-01-01T01:00:01+01:00", "2026-01-01T00:00:01Z"),
        ("2026-01-01T00:00:01", "2026-01-01T00:00:01Z"),
        ("2026-01-01 00:00:01.250Z", "2026-01-01T00:00:01.25Z"),
        ("2026-01-01", "2026-01-01T00:00:00Z"),
        (1767225601000, "2026-01-01T00:00:01Z"),
        (1767225601000.5, "2026-01-01T00:00:01.0005Z"),
    ],
)
def test_timestamps_iso_or_epoch_milliseconds(value: Any, expected: str) -> None:
    events, rejected = check_one(orjson.dumps(event(ts=value)))
    assert rejected == []
    assert events[0].ts == to_us(expected)
    assert events[0].row["ts"] == to_us(expected)


def test_a_batch_mixing_timestamp_forms_keeps_each_value() -> None:
    values = [
        "2026-01-01T00:00:01Z",
        1767225601000,
        "2026-01-01T00:00:01",
        "2026-01-01T02:00:01+02:00",
    ]
    events, _ = SourceValidator(SOURCE).validate([event(ts=v) for v in values])
    assert [e.ts for e in events] == [to_us("2026-01-01T00:00:01Z")] * 4


def test_payload_forms_and_order() -> None:
    good = orjson.dumps(event(eid="a"))
    batch = [
        good,
        b"[1, 2]",
        b"{nope",
        event(eid="b"),
        "not json",
        orjson.dumps(event(eid="c", country="XX")),
        orjson.dumps(event(eid="d")).decode(),
        42,
    ]
    events, rejected = SourceValidator(SOURCE).validate(batch)
    assert [(e.index, e.eid) for e in events] == [(0, "a"), (3, "b"), (6, "d")]
    assert [(r.index, r.reasons[0].split(":")[0]) for r in rejected] == [
        (1, "not a JSON object"),
        (2, "not valid JSON"),
        (4, "not valid JSON"),
        (5, "country"),
        (7, "not a JSON object"),
    ]
    assert rejected[0].payload == b"[1, 2]"
    assert rejected[3].payload is batch[5]


def test_correlation_ids_travel_with_accepted_and_rejected_events() -> None:
    events, rejected = SourceValidator(SOURCE).validate(
        [
            orjson.dumps(event(correlation_id="ok-1")),
            orjson.dumps(event(correlation_id="bad-1", shop=-1)),
            orjson.dumps(event()),
        ]
    )
    assert [e.correlation_id for e in events] == ["ok-1", None]
    assert "correlation_id" not in events[0].extra
    assert "correlation_id" not in events[0].row
    assert rejected[0].correlation_id == "bad-1"


def test_unknown_fields_go_to_extra_per_event() -> None:
    events, _ = SourceValidator(SOURCE).validate(
        [event(a=1), event(), event(b={"nested": [1, 2]}, c=None)]
    )
    assert [e.extra for e in events] == [{"a": 1}, {}, {"b": {"nested": [1, 2]}, "c": None}]
    events[1].extra["mutable"] = True  # each event owns its dict
    assert events[0].extra == {"a": 1}


def test_empty_and_all_invalid_batches() -> None:
    validator = SourceValidator(SOURCE)
    assert validator.validate([]) == ([], [])
    events, rejected = validator.validate([b"1", b"null"])
    assert events == [] and [r.reasons for r in rejected] == [["not a JSON object"]] * 2


def test_remembered_values_never_hide_a_failure() -> None:
    validator = SourceValidator(SOURCE)
    for _ in range(3):  # the country column's values become known-good
        events, rejected = validator.validate([event(country=c) for c in ("US", "GB", "DE")])
        assert len(events) == 3 and not rejected
    events, rejected = validator.validate([event(country="US"), event(country="XX")])
    assert [e.index for e in events] == [0]
    assert rejected[0].reasons == ["country: must be one of [US, GB, DE, FR] (got 'XX')"]
    events, rejected = validator.validate([event(country="XX")])  # a failure is not remembered
    assert rejected and not events


def test_high_cardinality_columns_stop_being_remembered() -> None:
    validator = SourceValidator(SOURCE)
    for start in range(0, 3000, 1000):
        batch = [event(user_id=f"u{i}", eid=f"e{i % 10**7}") for i in range(start, start + 1000)]
        events, rejected = validator.validate(batch)
        assert len(events) == 1000 and not rejected
    events, rejected = validator.validate([event(user_id="nope")])
    assert rejected[0].reasons == ["user_id: must match /^u[0-9]+$/ (got 'nope')"]


def test_int_event_ids_and_composite_keys() -> None:
    source = Source(
        "views", "views", ("user_id", "item_id"), "view_id", "ts", 0,
        (Column("view_id", "int"), Column("user_id", "string"), Column("item_id", "string"),
         Column("ts", "timestamp")),
    )  # fmt: skip
    events, rejected = SourceValidator(source).validate(
        [
            {"view_id": 9, "user_id": "u", "item_id": "i", "ts": 5},
            {"view_id": "9", "user_id": "u", "item_id": "i", "ts": 5},
        ]
    )
    assert [(e.eid, e.key, e.ts) for e in events] == [(9, ("u", "i"), 5000)]
    assert rejected[0].reasons == ["view_id: expected int (got '9')"]


def test_pandera_schema_describes_the_source() -> None:
    schema = pandera_schema(SOURCE)
    assert list(schema.columns) == [c.name for c in SOURCE.schema]
    assert schema.columns["amount"].nullable and not schema.columns["shop"].nullable
    assert len(schema.columns["shop"].checks) == 1  # ge and lt together: one in_range
    arrays = [coerce_column(c.dtype, [GOOD[c.name]]).array for c in SOURCE.schema]
    schema.validate(batch_frame(SOURCE, arrays), lazy=True)
    arrays[5] = coerce_column("string", ["XX"]).array
    with pytest.raises(pandera.errors.SchemaErrors):
        schema.validate(batch_frame(SOURCE, arrays), lazy=True)
