"""Properties of the tiles step's fast lookups against their plain equivalents."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from features import layout
from features.durations import now_us
from features.tiles import ViewTiler
from pipelines.entity_codes import EntityCodes
from pipelines.plan import PlanSource
from pipelines.records import TileInput
from pipelines.tile_batches import Batch, ends_of_groups
from pipelines.tiling import TileEngine, TileShard
from pipelines.view_tiles import ViewTiles
from tests.pipelines.scenario import M, S
from tests.pipelines.test_tile_groups import PLAN, SOURCE
from tests.pipelines.test_tile_shard import PROJECT, HeldBack, _definitions, _event
from tests.pipelines.tile_entries import entries_of

_VALUES = st.lists(st.integers(0, 40), max_size=300) | st.lists(
    st.integers(0, 2**62 - 1), max_size=20
)


@settings(max_examples=200, deadline=None)
@given(_VALUES)
def test_ends_of_groups_match_np_unique(values: list[int]) -> None:
    """Last (first) position of each distinct value, ordered by value, as `np.unique` gives."""
    array = np.array(values, dtype=np.int64)
    reversed_first = np.unique(array[::-1], return_index=True)[1]
    assert ends_of_groups(array, last=True).tolist() == (len(array) - 1 - reversed_first).tolist()
    assert ends_of_groups(array, last=False).tolist() == (
        np.unique(array, return_index=True)[1].tolist()
    )


IDS = [f"u{i}" for i in range(12)]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 1), st.lists(st.sampled_from(IDS), max_size=6)),
        st.tuples(st.just("forget"), st.integers(0, 1), st.lists(st.integers(0, 11), max_size=4)),
        st.tuples(st.just("bound"), st.integers(0, 1), st.integers(0, 8)),
        st.tuples(st.just("look"), st.integers(0, 1), st.lists(st.sampled_from(IDS), max_size=8)),
        st.tuples(st.just("again"), st.integers(0, 1), st.just([])),
    ),
    max_size=40,
)


def _batch(eids: list[str]) -> Batch:
    n = len(eids)
    none = np.zeros(n, np.int64)
    return Batch([], none, none, eids, [(e,) for e in eids], none, none, {}, none, none)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_views_sharing_entity_codes_find_exactly_what_their_index_holds(
    ops: list[tuple[str, int, Any]],
) -> None:
    """Whatever the views cache, forget and however the codes start afresh, each view's
    lookup through the shared codes (and a batch's shared codes) is its own `index`."""
    codes = EntityCodes(slack=0)
    views = [
        ViewTiles("p", PLAN.views[name], {c.name: c.dtype for c in SOURCE.schema}, codes)
        for name in ("v", "w")
    ]
    batch = _batch([])
    for op, which, arg in ops:
        view = views[which]
        if op == "add":
            eids = [e for e in dict.fromkeys(arg) if e not in view.index]
            view.add(eids, [(e,) for e in eids], np.zeros(len(eids), np.int64), [b""] * len(eids))
        elif op == "forget":
            cached = list(view.index.values())
            view.forget(list(dict.fromkeys(cached[i] for i in arg if i < len(cached))))
        elif op == "bound":
            codes.bound(arg)
        else:
            # Checked only here, so a view may miss a fresh start and then add or forget.
            batch = _batch(arg) if op == "look" else batch
            _check(view, batch)
    for view in views:
        _check(view, _batch(IDS))


def _check(view: ViewTiles, batch: Batch) -> None:
    plain = [view.index.get(e, -1) for e in batch.eids]
    assert view.codes.lookup(batch).tolist() == plain
    firsts = {e: i for i, e in reversed(list(enumerate(batch.eids)))}
    assert view.missing(batch) == sorted(i for i in firsts.values() if plain[i] < 0)


@pytest.mark.parametrize("slack", [0, 65536])
def test_an_engine_whose_codes_start_afresh_every_flush_writes_every_event(
    redis_client: redis.Redis, slack: int
) -> None:
    """With no slack the worker's codes start afresh after every flush (the cache evicts
    down to nothing): every view rebuilds its map, and no event is lost or applied twice."""
    engine = TileEngine(PlanSource(_definitions()), PROJECT, redis_client, HeldBack(redis_client))
    engine.codes.slack = slack
    shard = TileShard(engine, None, cache_limit=1)
    now = now_us()
    users = ["u1", "u2", "u3"]
    for i in range(30):
        batch = [users[i % 3], users[i % 2]]
        entries = [(u, (u,), _event(2 * i + j, u, now - 30 * M + i * S), (1, 2 * i + j))
                   for j, u in enumerate(batch)]  # fmt: skip
        shard.on_batch([TileInput(0, "p0#0", [(("v",), entries_of(entries))])])
        shard.on_notify()
    shard.snapshot()
    assert (engine.codes.generation > 0) == (slack == 0)
    tiler = ViewTiler(_definitions().views["v"])
    sent = {u: sum((users[i % 3] == u) + (users[i % 2] == u) for i in range(30)) for u in users}
    for user in users:
        state = layout.decode_tiles(redis_client.hgetall(layout.view_key(PROJECT, "v", user)))
        assert state is not None
        assert tiler.evaluate(state, now_us()) == {"n_1h": sent[user]}
