"""The stream source's column split of raw XREAD entries, against a per-entry parse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.sources.redis_streams import _columns

_INT64 = st.integers(0, 2**63 - 1)
_MS = st.integers(0, (2**63 - 1) // 1000)  # ingest times are µs in an int64
_FIELDS = st.one_of(
    st.builds(lambda v: [b"d", v], st.binary(max_size=8)),
    st.lists(st.sampled_from([b"d", b"e", b"x"]), min_size=1, max_size=3).flatmap(
        lambda names: st.tuples(*[st.binary(max_size=4) for _ in names]).map(
            lambda values: [part for pair in zip(names, values, strict=True) for part in pair]
        )
    ),
)


@given(st.lists(st.tuples(_MS, _INT64, _FIELDS), min_size=1, max_size=40))
def test_columns_parse_every_id_and_take_the_d_field(
    entries: list[tuple[int, int, list[bytes]]],
) -> None:
    raw = [[b"%d-%d" % (ms, seq), fields] for ms, seq, fields in entries]
    major, minor, ingested, payloads = _columns(raw)
    assert major.tolist() == [ms for ms, _, _ in entries]
    assert minor.tolist() == [seq for _, seq, _ in entries]
    assert ingested.tolist() == [ms * 1000 for ms, _, _ in entries]

    def first_d(fields: list[bytes]) -> bytes:
        return next((fields[i + 1] for i in range(0, len(fields), 2) if fields[i] == b"d"), b"")

    assert payloads == [first_d(fields) for _, _, fields in entries]


@pytest.mark.parametrize("bad", [b"17-x", b"17", b"-1-2", b"1-2-3"])
def test_an_entry_id_not_ms_dash_seq_is_refused(bad: bytes) -> None:
    with pytest.raises(Exception, match=r"parse|not all"):
        _columns([[b"1-0", [b"d", b"{}"]], [bad, [b"d", b"{}"]]])
