"""How the engine caches the entities it reads: it adds them while Redis works on the reads,
with the entity codes their batch lookup already gave them (`ViewCodes.added`); each view's
map stays exactly its `index`, flush after flush, through evictions, restored entities,
codes that start afresh and reads that fail."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import layout
from features.durations import now_us
from features.errors import StorageError
from features.tiles import ViewTiler
from pipelines import tiling
from pipelines.plan import PlanSource
from pipelines.records import TileInput
from pipelines.tile_batches import Batch
from pipelines.tiling import TileEngine, TileShard
from pipelines.view_tiles import ViewTiles
from tests.pipelines.scenario import M, S
from tests.pipelines.test_tile_shard import PROJECT, HeldBack, _definitions, _event
from tests.pipelines.tile_entries import entries_of

IDS = [f"u{i}" for i in range(10)]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("events"), st.lists(st.sampled_from(IDS), min_size=1, max_size=8)),
        st.tuples(st.just("restore"), st.lists(st.sampled_from(IDS), min_size=1, max_size=3)),
    ),
    min_size=1,
    max_size=12,
)


def _batch(eids: list[str]) -> Batch:
    n = len(eids)
    none = np.zeros(n, np.int64)
    keys = [(e,) for e in eids]
    return Batch(["p"], none, none, eids, keys, none, none, {}, none, none)


def _check(view: ViewTiles) -> None:
    probe = _batch(IDS)
    assert view.codes.lookup(probe).tolist() == [view.index.get(e, -1) for e in IDS]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(STEPS, st.sampled_from([0, 65536]), st.integers(1, 6))
def test_loaded_entities_keep_the_codes_their_batch_gave_them(
    redis_client: redis.Redis, steps: list[tuple[str, list[str]]], slack: int, limit: int
) -> None:
    redis_client.flushdb()
    engine = TileEngine(PlanSource(_definitions()), PROJECT, redis_client, HeldBack(redis_client))
    engine.codes.slack = slack
    shard = TileShard(engine, None, cache_limit=limit)
    now = now_us()
    i = 0
    for kind, users in steps:
        if kind == "restore":
            pending: dict[tuple[str, str], Any] = {("v", u): (u,) for u in users}
            engine.restore(pending)
        entries = [
            (u, (u,), _event(i + j, u, now - 30 * M + (i + j) * S), (1, i + j))
            for j, u in enumerate(users if kind == "events" else [])
        ]
        i += len(entries)
        if entries:
            shard.on_batch([TileInput(0, "p0#0", [(("v",), entries_of(entries))])])
        engine.flush()
        _check(engine.views["v"])
    shard.snapshot()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(st.sampled_from(IDS), min_size=1, max_size=6), min_size=2, max_size=5))
def test_entities_whose_read_fails_leave_the_cache_as_it_was(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, batches: list[list[str]]
) -> None:
    """The engine caches the entities it reads while Redis works on the reads: when the read
    fails they leave the cache again, and a later flush reads and applies them all."""
    redis_client.flushdb()
    engine = TileEngine(PlanSource(_definitions()), PROJECT, redis_client, HeldBack(redis_client))
    shard = TileShard(engine, None, cache_limit=100)
    now = now_us()
    real = tiling.fetch_packed

    def failing(client: Any, payload: Any, count: int, meanwhile: Any = None) -> list[Any]:
        return real(client, payload, count, lambda: (meanwhile(), _fail()))

    sent: dict[str, int] = {}
    for i, users in enumerate(batches):
        entries = [
            (u, (u,), _event(10 * i + j, u, now - 30 * M + (10 * i + j) * S), (1, 10 * i + j))
            for j, u in enumerate(users)
        ]
        view = engine.views.get("v")
        before = dict(view.index) if view is not None else {}
        shard.on_batch([TileInput(0, "p0#0", [(("v",), entries_of(entries))])])
        if i % 2 == 0 and set(users) - set(before):  # some entity to read: the read fails
            with monkeypatch.context() as patch:
                patch.setattr(tiling, "fetch_packed", failing)
                with pytest.raises(StorageError):
                    engine.flush()
            assert engine.views["v"].index == before
            _check(engine.views["v"])
            failed = TileInput(0, "p0#0", [(("v",), entries_of(entries))])
            engine.queue = [failed]  # the failed inputs
        engine.flush()
        _check(engine.views["v"])
        for u in users:
            sent[u] = sent.get(u, 0) + 1
    shard.snapshot()
    tiler = ViewTiler(_definitions().views["v"])
    for user, count in sent.items():
        state = layout.decode_tiles(redis_client.hgetall(layout.view_key(PROJECT, "v", user)))
        assert state is not None
        assert tiler.evaluate(state, now_us()) == {"n_1h": count}


def _fail() -> None:
    raise StorageError("Redis went away")
