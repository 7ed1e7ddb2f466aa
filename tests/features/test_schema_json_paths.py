"""The validator's shortcuts for batches of JSON text, held equal to its plain path.

A batch that is all JSON objects takes each event's fields with one `itemgetter` when
every event has them all (the correlation ids stay in the rows until `events` is read),
converts string and bool columns without a type guard (Arrow rejects every other JSON
type for them) and builds the correlation ids' Arrow array in the same pass as their
type check. The plain path is the same events given as dicts, one column at a time.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from features.coercion import coerce_column, timestamp_us
from features.schema import CORRELATION_FIELD, SourceValidator, Validated
from tests.features.test_schema import GOOD, SOURCE
from tests.features.test_schema_properties import JUNK, MISSING, VALID, VALUES

SCALAR = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=4)
JSON_VALUE = st.recursive(
    SCALAR | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=4,
)  # what `orjson` decodes JSON to


@st.composite
def json_events(draw: st.DrawFn) -> bytes:
    """JSON text of an event: mostly complete and valid, sometimes a column missing or
    spoiled, a correlation id of any JSON type, or an extra field."""
    out: dict[str, Any] = {}
    spoiled = draw(st.sets(st.sampled_from(sorted(VALUES)), max_size=1))
    for name, valid in VALID.items():
        if name in spoiled:
            value = draw(st.one_of(VALUES[name], JUNK, JSON_VALUE, st.just(MISSING)))
        else:
            value = draw(valid.filter(lambda v: v is not MISSING))
        if value is not MISSING:
            out[name] = value
    if draw(st.integers(0, 5)):
        out[CORRELATION_FIELD] = draw(st.sampled_from(["c1", "", None]) | JSON_VALUE)
    if not draw(st.integers(0, 5)):
        out["extra_" + draw(st.sampled_from("ab"))] = draw(JSON_VALUE)
    try:
        return orjson.dumps(out)
    except orjson.JSONEncodeError:  # an int beyond 64 bits: JSON text never holds one here
        return orjson.dumps({k: v for k, v in out.items() if k not in spoiled})


def _plain(validator: SourceValidator, payloads: list[bytes]) -> Validated:
    """The plain path: the same events as dicts (no JSON shortcut), a column at a time."""
    validator._fields = None
    return validator.validate_batch([orjson.loads(p) for p in payloads])


def _same(fast: Validated, plain: Validated) -> None:
    assert [(r.index, r.reasons, r.correlation_id) for r in fast.rejected] == [
        (r.index, r.reasons, r.correlation_id) for r in plain.rejected
    ]
    assert (fast.index, fast.eids, fast.keys) == (plain.index, plain.eids, plain.keys)
    assert fast.correlation_ids == plain.correlation_ids
    assert fast.extras == plain.extras
    assert [a.equals(b) for a, b in zip(fast.columns, plain.columns, strict=True)] == [True] * len(
        fast.columns
    )
    if fast.correlation_array is not None:
        assert fast.correlation_array.equals(pa.array(fast.correlation_ids, pa.string()))
    got, want = fast.events, plain.events  # rows finished: correlation ids taken out
    assert [tuple(e) for e in got] == [tuple(e) for e in want]
    assert all(e.row.keys() == GOOD.keys() for e in got)  # every schema column, no other


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_events(), min_size=1, max_size=30))
def test_json_batch_equals_the_plain_path(payloads: list[bytes]) -> None:
    _same(
        SourceValidator(SOURCE).validate_batch(payloads), _plain(SourceValidator(SOURCE), payloads)
    )


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["string", "bool", "int", "float", "timestamp"]),
    st.lists(SCALAR | st.floats(allow_nan=False, allow_infinity=False), max_size=4)
    | st.lists(JSON_VALUE, max_size=12),
)
@example("float", [1.5, True]).via("Arrow takes booleans as floats")
@example("int", [1, 1.5]).via("Arrow takes floats as ints")
def test_coercion_of_json_values_equals_the_guarded_path(dtype: str, values: list[Any]) -> None:
    """Without its type guard, a column of JSON values converts exactly as with it."""
    fast, plain = coerce_column(dtype, values, json=True), coerce_column(dtype, values)
    assert fast.array.equals(plain.array)
    assert fast.bad == plain.bad


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.integers(-(2**63), 2**63 - 1)
        | st.sampled_from([2**63 // 1000, -(2**63 // 1000), 2**63 // 1000 + 1, 2**64])
        | st.none(),
        min_size=1,
        max_size=8,
    )
)
def test_epoch_milliseconds_equal_timestamp_us(values: list[int | None]) -> None:
    """Epoch-ms columns (numpy's conversion when none is null) equal `timestamp_us` value
    by value, overflow included."""
    coerced = coerce_column("timestamp", values)
    got = coerced.array.cast(pa.int64()).to_pylist()
    for i, value in enumerate(values):
        if value is None:
            assert got[i] is None and i not in coerced.bad
            continue
        try:
            want = timestamp_us(value)
        except Exception:  # `_Unfit`: named in `bad`
            assert got[i] is None and i in coerced.bad
        else:
            assert got[i] == want and i not in coerced.bad


class _Text(str):
    """A str subclass: not JSON's own type."""


@pytest.mark.parametrize("bad", [b"u7", bytearray(b"u7"), _Text("u7")])
def test_dicts_get_the_guarded_string_path(bad: Any) -> None:
    """Dicts are not JSON text: a value Arrow would take for a string but JSON never
    gives (bytes) is still rejected, and a str subclass still goes value by value."""
    events, rejected = SourceValidator(SOURCE).validate([{**GOOD, "user_id": bad}])
    if isinstance(bad, str):
        assert len(events) == 1 and not rejected
    else:
        assert not events and rejected[0].reasons == [f"user_id: expected string (got {bad!r})"]


def test_dicts_get_the_guarded_correlation_id_check() -> None:
    """A correlation id Arrow would take for a string but JSON never gives is rejected."""
    events, rejected = SourceValidator(SOURCE).validate([{**GOOD, CORRELATION_FIELD: b"c1"}])
    assert not events and rejected[0].reasons == ["correlation_id: expected string (got b'c1')"]


def test_complete_rows_hold_their_correlation_ids_until_read() -> None:
    """Complete rows keep their ids until `events` is read; the ids never leak into the
    rows or the extras."""
    payloads = [orjson.dumps({**GOOD, CORRELATION_FIELD: "c1", "x": 1}), orjson.dumps(GOOD)]
    checked = SourceValidator(SOURCE).validate_batch(
        [orjson.dumps({**GOOD, CORRELATION_FIELD: f"c{i}"}) for i in range(3)]
    )
    assert checked.extras is None
    assert [e.row.keys() == GOOD.keys() for e in checked.events] == [True] * 3
    assert [e.correlation_id for e in checked.events] == ["c0", "c1", "c2"]
    mixed = SourceValidator(SOURCE).validate_batch(payloads)  # every field but one id
    assert mixed.correlation_ids == ["c1", None]
    assert all(CORRELATION_FIELD not in row for row in mixed.rows)  # taken out at once
    assert mixed.extras == [{"x": 1}, {}]
    assert [e.row.keys() == GOOD.keys() for e in mixed.events] == [True, True]
    assert [e.correlation_id for e in mixed.events] == ["c1", None]
