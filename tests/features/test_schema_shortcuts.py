"""Shortcuts of batch validation (`features.schema`): the bound checks of a float column
run over numpy (a batch they let through gets the verdicts of the pandera path), and a
batch of payloads is decoded in one pass (verdicts as payload by payload).
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from features.model import Checks, Column, Source
from features.payloads import Rejected, json_objects, parse_each
from features.schema import SourceValidator


def parse(payloads: list[Any]) -> tuple[list[dict[str, Any]], list[int], list[Rejected], bool]:
    """The decoding `SourceValidator.validate_batch` starts with: one pass when every
    payload is JSON text of an object, else payload by payload (`owned`: not the caller's)."""
    objs = json_objects(payloads)
    if objs is not None:
        return objs, list(range(len(objs))), [], True
    return parse_each(payloads)


BOUND = st.sampled_from([None, -1, 0, 0.5, 1.0, 2, -0.0, 1e308, 2**70, float("inf")])
VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-1, 0, 0.5, 1.0, 2, -0.0, 1e308, 2**70, -(2**70)]),
    st.integers(-3, 3),
    st.none(),
)


def _source(checks: Checks) -> Source:
    return Source(
        name="s",
        topic="s",
        key=("k",),
        event_id="eid",
        timestamp="ts",
        allowed_lateness=0,
        schema=(
            Column("eid", "string"),
            Column("k", "string"),
            Column("x", "float", nullable=True, checks=checks),
            Column("ts", "timestamp"),
        ),
    )


def _verdicts(validator: SourceValidator, batch: list[dict[str, Any]]) -> Any:
    events, rejected = validator.validate(batch)
    return [(e.index, e.row) for e in events], [(r.index, r.reasons) for r in rejected]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BOUND, BOUND, BOUND, BOUND, st.lists(VALUE, min_size=1, max_size=12))
def test_bound_shortcut_equals_pandera_path(
    ge: Any, gt: Any, le: Any, lt: Any, values: list[Any]
) -> None:
    source = _source(Checks(ge=ge, gt=gt, le=le, lt=lt))
    batch = [{"eid": f"e{i}", "k": "u", "x": v, "ts": 0} for i, v in enumerate(values)]
    try:
        fast, plain = SourceValidator(source), SourceValidator(source)
    except ValueError:  # an empty interval (pandera refuses it; so does the loader)
        assume(False)
    for state in plain._states:
        state.bounded = False  # the plain path: pandera's checks over a pandas Series
    assert fast._states[2].bounded or not fast._states[2].checks
    assert _verdicts(fast, batch) == _verdicts(plain, batch)


PAYLOAD = st.one_of(
    st.sampled_from([b'{"a":1}', '{"b":[2]}', b"[1]", b"nul", "", b'"x"', b"{}", None, 7]),
    st.sampled_from([{"c": 3}, {}, {1: 2}]),
    st.binary(max_size=6),
).flatmap(
    lambda p: (
        st.sampled_from([p, bytearray(p), memoryview(p)]) if isinstance(p, bytes) else st.just(p)
    )
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PAYLOAD, max_size=6))
def test_parse_equals_payload_by_payload(payloads: list[Any]) -> None:
    """`parse` decodes a batch in one pass when it can; the verdicts are those of each
    payload on its own, and the caller's dicts are reused only when all are dicts."""
    objs, index, rejected, owned = parse(payloads)
    want_objs, want_index, want_rejected = [], [], []
    for i, payload in enumerate(payloads):
        obj = payload
        if isinstance(payload, bytes | bytearray | memoryview | str):
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                want_rejected.append(i)
                continue
        if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
            want_objs.append(obj)
            want_index.append(i)
        else:
            want_rejected.append(i)
    if payloads and all(type(p) is dict for p in payloads):  # the caller's dicts, as given
        assert not owned
        assert all(o is p for o, p in zip(objs, payloads, strict=True))
        assert (index, rejected) == (list(range(len(payloads))), [])
        return
    assert owned
    assert (objs, index, [r.index for r in rejected]) == (want_objs, want_index, want_rejected)
