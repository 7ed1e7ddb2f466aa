"""Batch event validation (`features.schema`): every dtype and check, nulls, extras, ids.

The property tests hold the batch validator equal to a plain-Python reference validator
and to pandera's own `DataFrameSchema.validate` over the same typed frame.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import orjson
import pandera.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.coercion import coerce_column, timestamp_us
from features.durations import to_us
from features.model import Checks, Column, Source
from features.schema import Event, Rejected, SourceValidator, pandera_schema
from features.source_schema import batch_frame
from tests.features.reference_validator import reference

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


# ---- properties -------------------------------------------------------------------------

MISSING = object()
JUNK = st.sampled_from([None, [], {}, [1], {"x": 1}, True, False, 0, -1, 1.5, "", "txt"])


def _ts_text() -> st.SearchStrategy[str]:
    dts = st.datetimes(
        min_value=datetime.datetime(1000, 1, 2), max_value=datetime.datetime(2999, 12, 30)
    )
    return st.tuples(
        dts, st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", ""]), st.sampled_from(["T", " "])
    ).map(lambda t: t[0].isoformat(sep=t[2]) + t[1])


VALUES: dict[str, st.SearchStrategy[Any]] = {
    "eid": st.text(alphabet="ab1", min_size=0, max_size=10),
    "user_id": st.sampled_from(["u1", "u22", "x1", "u", "", "u1x", "U1"]),
    "shop": st.integers(-3, 103) | st.sampled_from([2**63, -(2**63) - 1, 2**63 - 1]),
    "amount": st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 3),
    "score": st.floats(-2, 2) | st.integers(-1, 2),
    "country": st.sampled_from(["US", "GB", "DE", "FR", "XX", "us"]),
    "tag": st.sampled_from(["bad", "good", "", "BAD"]),
    "code": st.integers(0, 4),
    "flag": st.booleans(),
    "seen": _ts_text() | st.integers(-(10**12), 4 * 10**12),
    "ts": _ts_text()
    | st.integers(-(10**12), 4 * 10**12)
    | st.sampled_from(
        [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "0000-01-01T00:00:00Z",
            "2026-01-01T00:00:00+00:60",
            "2026-02-29T00:00:00Z",
        ]
    ),
}


def _valid_ts(low_ms: int) -> st.SearchStrategy[Any]:
    dts = st.datetimes(
        min_value=datetime.datetime(2020, 1, 2), max_value=datetime.datetime(2999, 12, 30)
    )
    return dts.map(lambda d: d.isoformat() + "Z") | st.integers(low_ms, 4 * 10**12)


VALID: dict[str, st.SearchStrategy[Any]] = {
    "eid": st.text(alphabet="ab1", min_size=1, max_size=8),
    "user_id": st.sampled_from(["u1", "u22", "u0"]),
    "shop": st.integers(0, 99),
    "amount": st.floats(0.001, 1e9) | st.integers(1, 5) | st.none() | st.just(MISSING),
    "score": st.floats(-1e6, 1.0) | st.integers(-5, 1),
    "country": st.sampled_from(["US", "GB", "DE", "FR"]),
    "tag": st.sampled_from(["good", "", None, MISSING]),
    "code": st.sampled_from([1, 2, 3, None]),
    "flag": st.booleans(),
    "seen": _valid_ts(T2020 // 1000) | st.none(),
    "ts": _valid_ts(-(10**12)),
}


@st.composite
def raw_events(draw: st.DrawFn) -> Any:
    """An event whose columns are valid except a few drawn from anything-goes values."""
    spoiled = draw(st.sets(st.sampled_from(sorted(VALUES)), max_size=3))
    out: dict[str, Any] = {}
    for name, valid in VALID.items():
        anything = st.one_of(VALUES[name], JUNK, st.just(MISSING))
        value = draw(anything if name in spoiled else valid)
        if value is not MISSING:
            out[name] = value
    if draw(st.booleans()):
        out["correlation_id"] = draw(st.sampled_from(["c1", "c2", 3, None]))
    if draw(st.booleans()):
        out["extra_" + draw(st.sampled_from("ab"))] = draw(JUNK)
    form = draw(st.sampled_from(["bytes", "str", "dict"]))
    if form == "dict":
        return out
    try:
        text = orjson.dumps(out)
    except orjson.JSONEncodeError:
        return out
    return text if form == "bytes" else text.decode()


SHARED = SourceValidator(SOURCE)  # shared across examples: remembered values must not matter


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_events(), max_size=40))
def test_batch_validator_equals_plain_python_reference(batch: list[Any]) -> None:
    events, rejected = SHARED.validate(batch)
    accepted = {e.index: e for e in events}
    flagged = {r.index: sorted({_column_of(t) for t in r.reasons}) for r in rejected}
    assert not accepted.keys() & flagged.keys()
    assert len(accepted) + len(flagged) == len(batch)
    for i, payload in enumerate(batch):
        want = reference(SOURCE, payload)
        if want.row is None:
            assert flagged.get(i) == sorted(set(want.flagged)), (payload, rejected)
            continue
        got = accepted[i]
        assert _same_row(got.row, want.row), (payload, got.row, want.row)
        assert got.ts == want.row["ts"]
        assert got.eid == want.row["eid"]
        assert got.key == (want.row["user_id"], want.row["shop"])
        assert got.extra == want.extra
        assert got.correlation_id == want.correlation_id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_events().filter(lambda p: isinstance(p, dict)), min_size=1, max_size=25))
def test_verdicts_equal_pandera_schema_validate(batch: list[dict[str, Any]]) -> None:
    """The column-wise checks find exactly what pandera's DataFrameSchema.validate finds."""
    _, rejected = SourceValidator(SOURCE).validate(batch)
    ours = {
        (r.index, _column_of(t))
        for r in rejected
        for t in r.reasons
        if _column_of(t) != "correlation_id"
    }
    arrays, type_bad = [], set()
    for c in SOURCE.schema:
        coerced = coerce_column(c.dtype, [e.get(c.name) for e in batch])
        arrays.append(coerced.array)
        type_bad |= {(row, c.name) for row in coerced.bad}
    theirs: set[tuple[int, str]] = set()
    try:
        pandera_schema(SOURCE).validate(batch_frame(SOURCE, arrays), lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        theirs = {(int(i), str(c)) for i, c in zip(cases["index"], cases["column"], strict=True)}
    assert ours == theirs | type_bad


ISO_SHAPES = st.tuples(
    st.integers(1000, 2999), st.integers(0, 13), st.integers(0, 32), st.sampled_from("T "),
    st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
    st.sampled_from(["", ".5", ".123456", ".1234567"]),
    st.sampled_from(["Z", "", "+00:00", "-23:59", "+24:00", "+05:30", "+00:60"]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(ISO_SHAPES, min_size=1, max_size=5))
def test_arrow_timestamp_parsing_equals_to_us(shapes: list[tuple[Any, ...]]) -> None:
    texts = [
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"
        for y, mo, d, sep, h, mi, s, frac, zone in shapes
    ]
    coerced = coerce_column("timestamp", texts)
    got = coerced.array.cast("int64").to_pylist()
    for i, text in enumerate(texts):
        try:
            want: int | None = timestamp_us(text)
        except Exception:
            want = None
        assert (i in coerced.bad) == (want is None), text
        assert got[i] == want, text


def _column_of(reason: str) -> str:
    head = reason.split(":")[0]
    return "payload" if head in ("not a JSON object", "not valid JSON") else head


def _same_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float):
            if not (x == y or (math.isnan(x) and math.isnan(y))):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True
