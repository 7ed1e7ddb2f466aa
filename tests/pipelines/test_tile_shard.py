"""The tile step's write ordering against a real Redis, with replies held back on purpose.

`TileShard` queues its inputs on the worker's `TileEngine`, which folds them at the next
notification (or once enough are queued) and does not wait for its writes. Its safety rests
on two drains: before an epoch commits (`snapshot`) and before it re-reads an entity it
dropped from its cache. Here the
connection holds every batch until drained, the slowest Redis there could be, so a read
that skipped the drain would see an entity without its latest writes.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis

from features import layout
from features.durations import now_us
from features.model import Column, Definitions, Entity, FeatureView, Source
from features.schema import Event
from features.tiles import ViewTiler
from pipelines.plan import PlanSource
from pipelines.records import TileInput
from pipelines.sinks.redis_writer import TileConnection
from pipelines.tiling import TileEngine, TileShard
from tests.pipelines.scenario import H, M, S, feature
from tests.pipelines.tile_entries import entries_of

PROJECT = "ord"


class HeldBack(TileConnection):
    """A real connection whose writes reach Redis only when drained."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.held: list[tuple[list[bytes], int]] = []

    def send(self, packed: Any, count: int) -> None:
        self.held.append((list(packed), count))

    def drain(self) -> None:
        for packed, count in self.held:
            super().send(packed, count)
        self.held.clear()
        super().drain()


def _definitions() -> Definitions:
    source = Source(
        name="clicks",
        topic="clicks",
        key=("user_id",),
        event_id="click_id",
        timestamp="ts",
        allowed_lateness=H,
        schema=(
            Column("click_id", "string"),
            Column("user_id", "string"),
            Column("ts", "timestamp"),
        ),
    )
    view = FeatureView("v", "user", "clicks", 2 * H, (feature("n_1h", "count", None, H),))
    return Definitions(
        entities={"user": Entity("user", ("user_id",))},
        sources={"clicks": source},
        views={"v": view},
    )


def _event(i: int, user: str, ts: int) -> Event:
    row = {"click_id": f"c{i}", "user_id": user, "ts": ts}
    return Event(i, ts, f"c{i}", (user,), row, {}, None)


def _input(stream: str, rows: list[tuple[str, tuple[str], Event, tuple[int, int]]]) -> TileInput:
    """Tile shard 0's input from `stream`: `rows` of (entity id, values, event, position)."""
    return TileInput(0, stream, [(("v",), entries_of(rows))])


def test_an_evicted_entity_is_read_back_only_after_its_writes_landed(
    redis_client: redis.Redis,
) -> None:
    plans = PlanSource(_definitions())
    conn = HeldBack(redis_client)
    # A cache of one entity: every batch evicts the other user, then reads it back.
    shard = TileShard(TileEngine(plans, PROJECT, redis_client, conn), None, cache_limit=1)
    now = now_us()
    users = ["u1", "u2"]
    sent: dict[str, int] = dict.fromkeys(users, 0)
    for i in range(40):
        user = users[i % 2]
        event = _event(i, user, now - 30 * M + i * S)
        shard.on_batch([_input("p0#0", [(user, (user,), event, (1, i))])])
        shard.on_notify()  # the engine folds what is queued: one flush per event here
        sent[user] += 1
    shard.snapshot()  # the epoch barrier: everything held is written
    assert conn.held == []
    tiler = ViewTiler(_definitions().views["v"])
    for user in users:
        state = layout.decode_tiles(redis_client.hgetall(layout.view_key(PROJECT, "v", user)))
        assert state is not None
        assert tiler.evaluate(state, now_us()) == {"n_1h": sent[user]}


def test_the_step_writes_only_through_its_connection(redis_client: redis.Redis) -> None:
    """Nothing reaches Redis before the connection is drained: no write bypasses it, so the
    drains above are the only points where the step's tiles become visible."""
    plans = PlanSource(_definitions())
    conn = HeldBack(redis_client)
    shard = TileShard(TileEngine(plans, PROJECT, redis_client, conn), None, cache_limit=1)
    event = _event(0, "u1", now_us() - M)
    shard.on_batch([_input("p0#0", [("u1", ("u1",), event, (1, 0))])])
    shard.on_notify()
    assert conn.held
    assert redis_client.exists(layout.view_key(PROJECT, "v", "u1")) == 0
    conn.drain()
    assert redis_client.exists(layout.view_key(PROJECT, "v", "u1")) == 1


def test_the_sweep_deletes_tiles_no_window_reads_and_forgets_expired_entities(
    redis_client: redis.Redis,
) -> None:
    plans = PlanSource(_definitions())  # one view: a count over 1 h, ttl 2 h
    conn = TileConnection(redis_client)
    shard = TileShard(TileEngine(plans, PROJECT, redis_client, conn), None, cache_limit=100)
    now = now_us()
    batch = [
        ("u1", _event(0, "u1", now - 3 * H)),  # a tile past every window: never written
        ("u1", _event(1, "u1", now - 10 * M)),
        ("u2", _event(2, "u2", now - 3 * H)),  # newest event older than the ttl
    ]
    entries = [(user, (user,), event, (1, i)) for i, (user, event) in enumerate(batch)]
    shard.on_batch([_input("p0#0", entries)])
    shard.on_notify()
    conn.drain()
    key = layout.view_key(PROJECT, "v", "u1")
    g = _definitions().views["v"].features[0].granularity
    recent = now - 10 * M
    tile = layout.tile_field((g, recent - recent % g)).encode()
    assert [f for f in redis_client.hkeys(key) if f.startswith(b"t:")] == [tile]
    # An hour later no window reads the recent tile either.
    deletes = shard.engine.sweep(now + H)
    conn.send(deletes, len(deletes))
    conn.drain()
    assert [f for f in redis_client.hkeys(key) if f.startswith(b"t:")] == []
    assert set(shard.engine.views["v"].index) == {"u1"}


def test_replay_marks_of_the_older_layout_survive_the_first_write(
    redis_client: redis.Redis,
) -> None:
    """A hash written with its marks inside `m` (`pos`) keeps them as `o:` fields once the
    step rewrites `m`, so a later replay of that stream is still skipped."""
    plans = PlanSource(_definitions())
    version = plans.current().views["v"].version
    key = layout.view_key(PROJECT, "v", "u1")
    now = now_us()
    t0 = now - 10 * M
    tile = layout.tile_field((M, t0 - t0 % M))
    meta = {"keys": ["u1"], "v": version, "max_ts": t0, "folded": t0, "pos": {"p9#0": [5, 0]}}
    redis_client.hset(key, mapping={tile: orjson.dumps({"n_1h": 1}), "m": orjson.dumps(meta)})

    def run(entries: list[tuple[str, int, int]]) -> None:
        conn = TileConnection(redis_client)
        shard = TileShard(TileEngine(plans, PROJECT, redis_client, conn), None, cache_limit=10)
        for stream, i, position in entries:
            event = _event(i, "u1", now - 5 * M + i * S)
            shard.on_batch([_input(stream, [("u1", ("u1",), event, (position, 0))])])
            shard.on_notify()
        shard.snapshot()

    run([("p0#0", 1, 1)])
    stored = redis_client.hgetall(key)
    assert orjson.loads(stored[b"o:p9#0"]) == [5, 0]
    assert orjson.loads(stored[b"o:p0#0"]) == [1, 0]
    assert "pos" not in orjson.loads(stored[b"m"])
    run([("p9#0", 2, 5), ("p9#0", 3, 6)])  # a restart replaying p9#0 from position 5
    state = layout.decode_tiles(redis_client.hgetall(key))
    assert state is not None
    assert ViewTiler(_definitions().views["v"]).evaluate(state, now_us()) == {"n_1h": 3}


def test_each_worker_thread_has_one_engine_for_all_its_shards(redis_client: redis.Redis) -> None:
    """With two workers, Bytewax builds a worker's shard logics in several callbacks, each
    with a fresh Python thread state; they must still share the worker's one engine (each
    engine flushes its own queue, so more engines per worker mean more, smaller flushes)."""
    import threading

    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators import StatefulBatchLogic
    from bytewax.testing import TestingSource, cluster_main

    from pipelines.tiling import shard_builder

    build = shard_builder(PlanSource(_definitions()), PROJECT, redis_client, 1000)
    built: list[tuple[int, int]] = []

    class Built(StatefulBatchLogic[str, Any, bytes]):
        """Builds the step's logic for its key as the tiles step does, and records it."""

        def __init__(self, resume: bytes | None) -> None:
            shard = build(resume)
            built.append((threading.get_ident(), id(shard.engine)))

        def on_batch(self, values: list[str]) -> tuple[list[Any], bool]:
            return [], StatefulBatchLogic.RETAIN

        def snapshot(self) -> bytes:
            return b""

    flow = Dataflow("engines")
    keys = op.input("in", flow, TestingSource([f"{i:02d}" for i in range(16)], batch_size=1))
    tiles = op.stateful_batch("tiles", op.key_on("key", keys, lambda k: k), Built)
    op.inspect("done", tiles, lambda *_: None)
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    threads = {thread for thread, _ in built}
    assert len(built) == 16
    assert len(threads) == 2
    assert len({engine for _, engine in built}) == len(threads)
