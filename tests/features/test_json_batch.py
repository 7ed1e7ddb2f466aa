"""Batches read in columns by `pyarrow.json` (`features.json_batch`), held equal to the
value-by-value path (`validate_batch(..., columnar=False)`).

Payloads are written as JSON text by hand, so that each oddity where Arrow's reader and
`orjson` could part (NaN literals, duplicate keys, escapes, surrogates, invalid UTF-8,
big numbers, whitespace, two objects in one payload, ...) can be mixed into a batch.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from features.json_batch import JsonBatchReader
from features.model import Column, Source
from features.schema import CORRELATION_FIELD, SourceValidator, Validated
from tests.features.test_schema import SOURCE, T2020

MS_2020 = T2020 // 1000
GOOD = (
    b'{"eid":"e1","user_id":"u1","shop":0,"amount":1,"score":0,"country":"US","tag":"",'
    b'"code":1,"flag":true,"seen":1577836800000,"ts":0}'
)


def _text(value: Any) -> st.SearchStrategy[bytes]:
    """JSON text of a value: plain UTF-8 or with every non-ASCII character escaped."""
    return st.booleans().map(lambda ascii: json.dumps(value, ensure_ascii=ascii).encode())


def _float_text(low: float, high: float) -> st.SearchStrategy[bytes]:
    """A number in [low, high] written as a float, an int, or digits and an exponent
    (many digits: rounding to the nearest float)."""
    digits = st.tuples(st.integers(1, 10**20), st.integers(-25, -15)).map(
        lambda t: f"{t[0]}e{t[1]}".encode()
    )
    return (
        st.floats(low, high).map(lambda f: repr(f).encode())
        | st.integers(math.ceil(low), math.floor(high)).map(lambda i: str(i).encode())
        | digits.filter(lambda t: low <= float(t) <= high)
    )


NAME = st.text(alphabet="ab1é😀", min_size=1, max_size=8)
# Each field's valid values as JSON text; None: leave the field out.
VALID: dict[str, st.SearchStrategy[bytes | None]] = {
    "eid": NAME.flatmap(_text),
    "user_id": st.sampled_from([b'"u1"', b'"u22"', b'"u\\u0030"']),
    "shop": st.integers(0, 99).map(lambda i: str(i).encode()) | st.just(b"-0"),
    "amount": _float_text(0.001, 1e25) | st.sampled_from([b"null", None, b"1E5"]),
    "score": _float_text(-1e6, 1.0) | st.sampled_from([b"-0", b"-0.0", b"0.1e-400"]),
    "country": st.sampled_from([b'"US"', b'"GB"', b'"\\u0044E"']),
    "tag": st.text().filter(lambda t: t != "bad").flatmap(_text)
    | st.sampled_from([b"null", None, b'"\\ud83d\\ude00"']),
    "code": st.sampled_from([b"1", b"2", b"3", b"null", None]),
    "flag": st.sampled_from([b"true", b"false"]),
    "seen": st.integers(MS_2020, 4 * 10**12).map(lambda i: str(i).encode()) | st.just(None),
    "ts": st.integers(-(10**12), 4 * 10**12).map(lambda i: str(i).encode()),
}
DTYPES = {c.name: c.dtype for c in SOURCE.schema}
# Values of each dtype's fields that the value-by-value path reads otherwise than Arrow,
# or rejects (each reason its own), as JSON text.
ODD_VALUES: dict[str, list[bytes]] = {
    "float": [
        *(b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"true", b'"1"', b"null"),
        *(b"18446744073709551616", b"123456789012345678901234567890", b"[1]", b"-1"),
    ],
    "int": [
        *(b"1.0", b"1e2", b"9223372036854775807", b"9223372036854775808", b"100", b"NaN"),
        *(b"-9223372036854775809", b"18446744073709551616", b"true", b'"1"', b"null", b"-1"),
    ],
    "string": [
        *(b"1", b"true", b"null", b'"\\ud800"', b'"\xff"', b'"\xed\xa0\x80"', b'"bad"'),
        *(b'"XX"', b'""', b"{}", b'"u\\u0000"', b'"\xf4\x90\x80\x80"'),
    ],
    "bool": [b"1", b"0", b'"true"', b"null", b"NaN"],
    "timestamp": [
        *(b'"2026-01-01T00:00:00Z"', b"1.5e12", b"1767225601000.0", b"9223372036854775"),
        *(b"-9223372036854776", b"9223372036854775807", b"true", b"null", b"Infinity"),
    ],
}
# Whole payloads Arrow could read otherwise than `orjson`, or one never valid.
ODD_PAYLOADS: list[bytes] = [
    *(b"", b" ", b"[1]", b"1", b'"x"', b"null", b"{", b"{}", b"{} {}", b"{}{}"),
    *(b'{"eid": "e1"}\n{"eid": "e2"}', b"\xef\xbb\xbf{}", b'{"eid":"e1",}', b"{}\x00"),
]


@st.composite
def payloads(draw: st.DrawFn, odd: bool) -> bytes:
    """One event as JSON text: valid (`odd` False), or with one oddity mixed in at times."""
    fields: list[tuple[bytes, bytes | None]] = [
        (json.dumps(name).encode(), draw(valid)) for name, valid in VALID.items()
    ]
    if draw(st.integers(0, 3)):
        cid = st.sampled_from([b'"c1"', b'"\\u00e9"', b"null"]) if not odd else st.just(b"7")
        fields.append((json.dumps(CORRELATION_FIELD).encode(), draw(cid)))
    sep = draw(st.sampled_from([b",", b", ", b" ,\t"]))
    kind = draw(st.integers(1, 8)) if odd else 0
    if kind == 1:  # a value of another type, out of range, or no JSON at all
        at = draw(st.integers(0, len(VALID) - 1))
        odd_value = st.sampled_from(ODD_VALUES[DTYPES[json.loads(fields[at][0])]])
        fields[at] = (fields[at][0], draw(odd_value))
    elif kind == 2:  # a duplicate key (orjson keeps the last), maybe escaped
        name, value = fields[draw(st.integers(0, len(fields) - 1))]
        key = draw(st.sampled_from([name, name.replace(b"e", b"\\u0065", 1)]))
        fields.append((key, draw(st.sampled_from([value, b"null", b'"u1"', b"5"]))))
    elif kind == 3:  # a field beyond the schema
        fields.append((b'"extra"', draw(st.sampled_from([b"1", b"null", b'{"a": [1]}']))))
    elif kind == 4:
        return draw(st.sampled_from(ODD_PAYLOADS))
    elif kind == 7:  # a field left out
        fields.pop(draw(st.integers(0, len(fields) - 1)))
    body = sep.join(b"%s:%s" % (name, value) for name, value in fields if value is not None)
    text = b"{" + body + b"}"
    if kind == 5:  # whitespace or a byte-order mark around the object, a newline inside
        return draw(st.sampled_from([b" " + text, text + b" ", b"\xef\xbb\xbf" + text]))
    if kind == 6:
        return text.replace(b",", b",\n", 1)
    if kind == 8:  # two objects in one payload
        return text + draw(st.sampled_from([b"", b" ", b"\t"])) + text
    return text


@st.composite
def odd_batches(draw: st.DrawFn) -> list[bytes]:
    """A valid batch with one to three odd payloads put in."""
    batch = draw(st.lists(payloads(odd=False), max_size=6))
    for odd in draw(st.lists(payloads(odd=True), min_size=1, max_size=3)):
        batch.insert(draw(st.integers(0, len(batch))), odd)
    return batch


def _same(fast: Validated, plain: Validated) -> None:
    """Every verdict, reason, id, column (type and values) and event the same."""
    assert [(r.index, r.payload, r.reasons, r.correlation_id) for r in fast.rejected] == [
        (r.index, r.payload, r.reasons, r.correlation_id) for r in plain.rejected
    ]
    assert (fast.index, fast.eids, fast.keys) == (plain.index, plain.eids, plain.keys)
    assert [list(map(type, k)) for k in fast.keys] == [list(map(type, k)) for k in plain.keys]
    assert (fast.correlation_ids, fast.extras) == (plain.correlation_ids, plain.extras)
    assert [a.type for a in fast.columns] == [a.type for a in plain.columns]
    assert [a.to_pylist() for a in fast.columns] == [a.to_pylist() for a in plain.columns]
    if plain.correlation_array is not None:
        assert fast.correlation_array is not None
        assert fast.correlation_array.equals(plain.correlation_array)
    got, want = fast.events, plain.events
    assert [tuple(e) for e in got] == [tuple(e) for e in want]
    assert [list(e.row.items()) for e in got] == [list(e.row.items()) for e in want]  # order


def _validate(batch: list[bytes]) -> tuple[Validated, Validated, bool]:
    """Both paths on a batch (each with a fresh validator), and whether the fast one read
    the batch in columns."""
    validator = SourceValidator(SOURCE)
    read = validator._from_columns
    taken: list[bool] = []

    def spy(payloads: Any, arrays: list[pa.Array]) -> Validated | None:
        checked = read(payloads, arrays)
        taken.append(checked is not None)
        return checked

    validator._from_columns = spy  # type: ignore[method-assign]
    fast = validator.validate_batch(batch)
    return fast, SourceValidator(SOURCE).validate_batch(batch, columnar=False), taken == [True]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads(odd=False), min_size=1, max_size=20))
@example([GOOD, GOOD.replace(b'"tag":""', b'"tag":null')])
def test_a_valid_batch_is_read_in_columns_as_value_by_value(batch: list[bytes]) -> None:
    fast, plain, taken = _validate(batch)
    assert taken and not plain.rejected
    _same(fast, plain)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_batches())
@example([GOOD.replace(b'"amount":1', b'"amount":Infinity')]).via("Arrow reads Infinity")
@example([GOOD.replace(b'"score":0', b'"score":-Infinity')]).via("and passes checks")
@example([GOOD.replace(b'"tag":""', b'"tag":"\xff"')]).via("Arrow leaves UTF-8 unchecked")
@example([GOOD + b" " + GOOD]).via("two objects in one payload")
@example([b"", GOOD + GOOD]).via("and none in another")
@example([GOOD, b"\xef\xbb\xbf" + GOOD]).via("a byte-order mark not at the start")
def test_any_batch_gives_what_value_by_value_gives(batch: list[bytes]) -> None:
    """An oddity mixed into a valid batch: the columnar read gives up (or reads it exactly
    alike)."""
    fast, plain, _ = _validate(batch)
    _same(fast, plain)


def test_a_payload_not_bytes_is_not_read_in_columns() -> None:
    reader = JsonBatchReader([Column("a", "int")], None)
    assert reader.read([b'{"a": 1}', b'{"a": 2}']) is not None
    assert reader.read(['{"a": 1}']) is None
    assert reader.read([{"a": 1}]) is None
    assert reader.read([]) is None


def _source(key: Column, *more: Column) -> Source:
    return Source(
        name="s",
        topic="s",
        key=(key.name,),
        event_id=key.name,
        timestamp="ts",
        allowed_lateness=0,
        schema=(key, Column("ts", "timestamp"), *more),
    )


def test_a_float_key_or_a_typed_correlation_id_goes_value_by_value() -> None:
    """A float key given as an int stays an int (`3`, not Arrow's `3.0`), and a correlation
    id column of another dtype keeps its own check (JSON ids are strings)."""
    source = _source(Column("k", "float"))
    batch = [b'{"k":3,"ts":0}']
    fast = SourceValidator(source).validate_batch(batch)
    _same(fast, SourceValidator(source).validate_batch(batch, columnar=False))
    assert [type(k) for (k,) in fast.keys] == [int]
    source = _source(Column("k", "string"), Column(CORRELATION_FIELD, "int"))
    batch = [b'{"k":"3","ts":0,"correlation_id":7}']
    fast = SourceValidator(source).validate_batch(batch)
    _same(fast, SourceValidator(source).validate_batch(batch, columnar=False))
    assert fast.rejected[0].reasons == ["correlation_id: expected string (got 7)"]


def test_after_a_batch_not_read_in_columns_the_next_ones_are_not_tried() -> None:
    """A source whose batches never qualify (a field beyond the schema in every event) pays
    a failed columnar read on 1 in 2, 4 … at last 1 in 65 batches; one that reads again
    is tried on every batch; the results are the value-by-value path's throughout."""
    validator = SourceValidator(SOURCE)
    reader = validator._reader
    assert reader is not None
    tried: list[int] = []

    class Counted:  # the reader, counting its reads
        wanted, taken = reader.wanted, reader.taken

        def read(self, payloads: Any) -> list[pa.Array] | None:
            tried.append(len(tried))
            return reader.read(payloads)

    validator._reader = Counted()  # type: ignore[assignment]
    odd = [GOOD.replace(b"{", b'{"more":1,', 1)]
    calls = []
    for i in range(300):
        before = len(tried)
        plain = SourceValidator(SOURCE).validate_batch(odd, columnar=False)
        _same(validator.validate_batch(odd), plain)
        if len(tried) > before:
            calls.append(i)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[:7] == [2, 3, 5, 9, 17, 33, 65]
    assert set(gaps[7:]) == {65}
    calls = []
    for i in range(130):
        before = len(tried)
        validator.validate_batch([GOOD])
        if len(tried) > before:
            calls.append(i)
    # the skips still due, then a read that works, and from then on every batch is tried
    assert calls == list(range(calls[0], 130)) and calls[0] <= 64
    calls = []
    for i in range(11):  # a failure after that: back to skipping 1, then 2 …
        before = len(tried)
        validator.validate_batch(odd)
        if len(tried) > before:
            calls.append(i)
    assert calls == [0, 2, 5, 10]
