"""The Redis layout (features.layout): keys, entity ids, partitions, tile encoding.

Tiles round-trip through a real redis-server (HSET, then HGETALL with bytes keys, the way
the API reads them), including the writer's incremental protocol: absolute values of
changed tiles, HDEL of pruned ones.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any
from urllib.parse import quote

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.layout import (
    META_FIELD,
    PENDING_FIELD,
    decode_tiles,
    encode_tiles,
    entity_id,
    entity_values,
    expire_at_ms,
    partition_of,
    removed_fields,
    tile_field,
    view_key,
)
from features.tiles import MIN_TS, EntityTiles, TileKey, ViewTiler
from tests.features.strategies import (
    apply_events,
    before_pending,
    check_values,
    clocks,
    event_sets,
    query_times,
    scenarios,
)

WITH_REDIS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TRICKY = st.text(alphabet="ab|{}%:/ \\\"'é€😀\x00\n", max_size=6)
KEY_VALUES = st.one_of(
    st.lists(TRICKY, min_size=1, max_size=3),
    st.lists(st.text(max_size=5), min_size=1, max_size=3),
)
_keys = itertools.count()


def fresh_key() -> str:
    """A key no other example used (the database is flushed per test, not per example)."""
    return view_key("test", "v", entity_id([f"e{next(_keys)}"]))


def same_state(a: EntityTiles, b: EntityTiles) -> None:
    assert a.tiles == b.tiles
    assert a.pending == b.pending
    assert a.max_ts == b.max_ts
    assert a.folded_until == b.folded_until


@WITH_REDIS
@given(data=st.data())
def test_tiles_round_trip_through_redis(redis_client: redis.Redis, data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    events = data.draw(event_sets(scenario))
    tiler, state = apply_events(data, scenario, events)
    join_keys = data.draw(KEY_VALUES)
    fields = encode_tiles(state, state.tiles.keys(), join_keys)
    assert set(fields) == {tile_field(k) for k in state.tiles} | {META_FIELD} | (
        {PENDING_FIELD} if state.pending else set()
    )
    key = fresh_key()
    redis_client.hset(key, mapping=fields)  # type: ignore[arg-type]
    reply: dict[bytes, bytes] = redis_client.hgetall(key)  # type: ignore[assignment]
    assert all(isinstance(name, bytes) for name in reply)
    decoded = decode_tiles(reply)
    assert decoded is not None
    same_state(decoded, state)
    # str keys (a client with decode_responses) decode the same way.
    text_reply = {k.decode(): v for k, v in reply.items()}
    decoded_text = decode_tiles(text_reply)
    assert decoded_text is not None
    same_state(decoded_text, state)
    check_values(
        tiler,
        decoded,
        events,
        data.draw(query_times(scenario, events, state.folded_until, before_pending(state))),
    )


@WITH_REDIS
@given(data=st.data())
def test_incremental_writes_keep_redis_equal_to_the_writer(
    redis_client: redis.Redis, data: st.DataObject
) -> None:
    """Batches of apply / fold_pending / prune, each written as HDEL dropped + HSET changed."""
    scenario = data.draw(scenarios())
    tiler, state = ViewTiler(scenario.view), EntityTiles()
    key = fresh_key()
    events = data.draw(event_sets(scenario, max_size=30))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=3)))
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    clock = data.draw(st.integers(-scenario.span, scenario.span))
    for batch in batches:
        changed: set[TileKey] = set()
        dropped: set[TileKey] = set()
        for e, now in zip(batch, data.draw(clocks(scenario, batch)), strict=True):
            changed |= tiler.apply(state, e.ts, e.eid, e.row, now=now)
        clock += data.draw(st.integers(0, scenario.span))
        if data.draw(st.booleans()):
            changed |= tiler.fold_pending(state, clock)
        if data.draw(st.booleans()):
            dropped |= tiler.prune(state, clock)
        with redis_client.pipeline(transaction=True) as pipe:
            # A tile pruned and then created again in the same batch must survive: HDEL first.
            removed = removed_fields(state, dropped)
            if removed:
                pipe.hdel(key, *removed)
            pipe.hset(key, mapping=encode_tiles(state, changed, ["u"]))  # type: ignore[arg-type]
            pipe.execute()
        decoded = decode_tiles(redis_client.hgetall(key))
        assert decoded is not None
        same_state(decoded, state)


def test_decode_of_a_missing_key_is_none(redis_client: redis.Redis) -> None:
    assert decode_tiles(redis_client.hgetall("rillet:test:{nobody}:v")) is None


def test_meta_of_a_state_without_events() -> None:
    state = EntityTiles()
    fields = encode_tiles(state, (), ["u1"])
    assert set(fields) == {META_FIELD}
    decoded = decode_tiles(fields)
    assert decoded is not None
    same_state(decoded, state)
    assert decoded.folded_until == MIN_TS
    assert removed_fields(state, [(10, 0)]) == ["t:10:0", PENDING_FIELD]


def reference_entity_id(values: list[Any]) -> str:
    """The documented form: every value percent-encoded (nothing kept), joined by `|`."""
    return "|".join(quote(str(v), safe="") for v in values)


@settings(max_examples=300, deadline=None)
@given(a=KEY_VALUES, b=KEY_VALUES)
def test_entity_id_is_injective_and_invertible(a: list[str], b: list[str]) -> None:
    assert entity_id(a) == reference_entity_id(a)
    assert entity_values(entity_id(a)) == a
    if len(a) == len(b):  # a composite key always has the same arity
        assert (entity_id(a) == entity_id(b)) == (a == b)
    eid = entity_id(a)
    assert "{" not in eid and "}" not in eid
    assert eid.count("|") == len(a) - 1


@settings(max_examples=200, deadline=None)
@given(values=KEY_VALUES, view=st.sampled_from(["user_txn", "v2"]))
def test_view_key_hash_tag_is_the_entity(values: list[str], view: str) -> None:
    """Redis Cluster hashes the text between the first `{` and the next `}`: the entity id."""
    key = view_key("demo", view, entity_id(values))
    start = key.index("{")
    tag = key[start + 1 : key.index("}", start)]
    assert tag == entity_id(values)
    assert key == f"rillet:demo:{{{tag}}}:{view}"


def test_entity_id_examples() -> None:
    assert entity_id(["u1"]) == "u1"
    assert entity_id(["u1", "item/7"]) == "u1|item%2F7"
    assert entity_id(["a|b"]) != entity_id(["a", "b"])
    assert entity_id(["{x}"]) == "%7Bx%7D"
    assert entity_id(["50%"]) == "50%25"
    assert entity_id([7, True]) == "7|True"


# Pinned: producers and the pipeline on other machines and Python versions must agree.
GOLDEN_PARTITIONS = {
    ("u1",): 2,
    ("u2",): 0,
    ("user-42",): 3,
    ("u1", "item/7"): 1,
    ("é",): 3,
}


def test_partition_of_is_pinned() -> None:
    assert {k: partition_of(list(k), 4) for k in GOLDEN_PARTITIONS} == GOLDEN_PARTITIONS


def test_partition_of_does_not_depend_on_the_process() -> None:
    code = (
        "from features.layout import partition_of; "
        "print([partition_of(['u1', str(i)], 7) for i in range(50)])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {f"{[partition_of(['u1', str(i)], 7) for i in range(50)]}\n"}


@settings(max_examples=200, deadline=None)
@given(values=KEY_VALUES, partitions=st.integers(1, 64))
def test_partition_of_is_in_range_and_stable(values: list[str], partitions: int) -> None:
    p = partition_of(values, partitions)
    assert 0 <= p < partitions
    assert partition_of(list(values), partitions) == p


def test_expiry_is_ttl_after_the_newest_event_in_ms() -> None:
    assert expire_at_ms(1_000_000, 3_600_000_000) == 3_601_000
