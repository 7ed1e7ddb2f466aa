"""Properties of batch validation: it equals a plain-Python reference validator, pandera's
own `DataFrameSchema.validate` over the same typed frame, and `to_us` for timestamps.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import orjson
import pandera.errors
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from features.coercion import coerce_column, timestamp_us
from features.schema import SourceValidator, pandera_schema
from features.source_schema import batch_frame
from tests.features.reference_validator import reference
from tests.features.test_schema import SOURCE, T2020

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


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(raw_events().filter(lambda p: isinstance(p, dict)), min_size=1, max_size=25))
def test_verdicts_equal_pandera_schema_validate(batch: list[dict[str, Any]]) -> None:
    """The column-wise checks find exactly what pandera's DataFrameSchema.validate finds."""
    # pandera itself fails to report an int64 failure case beyond 2**53 next to a float one
    assume(not any(isinstance(e.get("shop"), int) and abs(e["shop"]) > 2**53 for e in batch))
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
