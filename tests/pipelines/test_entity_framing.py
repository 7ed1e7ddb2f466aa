"""The column-wise framing of loaded entities (`key_bulks`, `meta_heads`, `hgetalls`) is
byte for byte the row-wise one (`bulk`, `meta_head`, `hiredis.pack_command`)."""

from __future__ import annotations

from typing import Any

import redis
from hiredis import pack_command
from hypothesis import given
from hypothesis import strategies as st

from features import layout
from pipelines.sinks.redis_bulk import fetch_packed
from pipelines.sinks.redis_tiles import bulk, hgetalls, key_bulks, meta_head, meta_heads

# Plain ids, and ones with what the fast paths must notice: quotes, backslashes, controls,
# NULs, non-ASCII, lone surrogates.
ODD = ["u", "7", '"', "\\", "\x00", "\x01", "\n", "é", "|", "\ud800"]
TEXT = st.text(alphabet=st.sampled_from(ODD))
IDS = st.lists(st.one_of(TEXT, st.text(max_size=4)), max_size=8)
VALUES = st.one_of(TEXT, st.integers(), st.none(), st.text(max_size=4))
KEYS = st.lists(st.one_of(st.tuples(VALUES), st.tuples(VALUES, VALUES)), max_size=8)
NAMES = st.sampled_from(["v", "vue_é", "a\x00b"])


def _outcome(build: Any, *args: Any) -> Any:
    try:
        return build(*args)
    except Exception as error:  # both sides must fail alike
        return type(error)


@given(NAMES, IDS)
def test_key_bulks_are_the_bulk_strings_of_view_keys(view: str, eids: list[str]) -> None:
    expected = _outcome(lambda: [bulk(layout.view_key("p", view, e).encode()) for e in eids])
    assert _outcome(key_bulks, "p", view, eids) == expected


@given(KEYS, st.sampled_from(["0123abcd", None]))
def test_meta_heads_are_meta_head_of_each_entity(keys: list[tuple[Any, ...]], version: Any) -> None:
    expected = _outcome(lambda: [meta_head(k, version) for k in keys])
    assert _outcome(meta_heads, keys, version) == expected


def test_hgetalls_read_what_each_hgetall_reads(redis_client: redis.Redis) -> None:
    eids = ["u1", "u2", "é|x"]
    redis_client.hset(layout.view_key("p", "v", "u2"), mapping={"m": b"{}"})
    keys = [key_bulks("p", "v", eids[:1]), key_bulks("p", "v", eids[1:])]
    packed = b"".join(pack_command(("HGETALL", layout.view_key("p", "v", e))) for e in eids)
    assert hgetalls(keys) == packed
    replies = fetch_packed(redis_client, hgetalls(keys), len(eids))
    assert [bool(r) for r in replies] == [False, True, False]
    assert hgetalls([[]]) == b""
