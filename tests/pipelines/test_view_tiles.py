"""The tiles step (`pipelines.tiling`) held to `ViewTiler` against a real Redis (SPEC §4).

The step folds events column-wise, a batch at a time. Whatever the split into batches, the
writer's clock, evictions and reloads, and replays after a crash, each online hash must
evaluate like a reference `EntityTiles` to which every event was applied once, one by one,
with the clock of the flush that applied it, its due pending events folded at every flush.
Values are compared at T >= the last clock only: the step never creates tiles no window
reads from then on. Both sides are evaluated with their tiles in one order, so float sums
merge in the same order and every value compares with `==`; `max_ts`, `folded` and the
pending records must be those of the reference too.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from copy import deepcopy
from dataclasses import dataclass, field, replace
from typing import Any

import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from features import layout
from features.durations import now_us
from features.model import Column, Definitions, Entity, Feature, FeatureView, Source
from features.schema import Event
from features.tiles import EntityTiles, ViewTiler
from pipelines.plan import PlanSource
from pipelines.records import Position, TileInput
from pipelines.sinks.redis_writer import TileConnection
from pipelines.tile_router import shard_of_entity
from pipelines.tiling import SWEEP_US, TileEngine, TileShard
from tests.features import bruteforce
from tests.features.strategies import (
    FUNCTION_COLUMNS,
    X_VALUES,
    Scenario,
    event_sets,
    query_times,
    scenarios,
    times,
)
from tests.pipelines.scenario import H, S
from tests.pipelines.tile_entries import entries_of

PROJECT = "vt"
# Drawn times are near 0; events and clocks are moved here, since a key expires `ttl` after
# its newest event (PEXPIREAT): near 0 it would expire at once. 10**13 µs (~4 months) is
# past every drawn time's distance from 0.
SHIFT = now_us() + 10**13
POOL = ("u7", "u19", "u9", "u17")  # entities of two tile shards (3, 3, 4, 4)
SHARDS = sorted({shard_of_entity(e) for e in POOL})
STREAMS = ("p0#0", "p1#3", "p2#1")
ACTIONS = ("none", "none", "notify", "flush", "commit")
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    # Each example drives Redis: report the first bug found, without the explain phase.
    report_multiple_bugs=False,
    phases=tuple(p for p in Phase if p != Phase.explain),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@dataclass(frozen=True)
class Sent:
    """One event as the router hands it on: entity, origin stream, position there."""

    entity: str
    stream: str
    position: Position
    event: Event
    index_in_stream: int


@dataclass(frozen=True)
class Case:
    views: tuple[FeatureView, ...]
    scenario: Scenario  # the time scale the events and clocks are drawn on
    x_dtype: str
    id_dtype: str
    raw: list[bruteforce.Event]  # the events before the shift (for query times)
    sent: list[Sent]  # in submission order


def definitions(case: Case) -> Definitions:
    source = Source(
        name="src",
        topic="src",
        key=("user_id",),
        event_id="id",
        timestamp="ts",
        allowed_lateness=H,
        schema=(
            Column("id", case.id_dtype),
            Column("user_id", "string"),
            Column("x", case.x_dtype, nullable=True),
            Column("s", "string", nullable=True),
            Column("ts", "timestamp"),
        ),
    )
    return Definitions(
        entities={"user": Entity("user", ("user_id",))},
        sources={"src": source},
        views={v.name: v for v in case.views},
    )


@st.composite
def cases(draw: st.DrawFn, min_entities: int = 1, two_views: bool = False) -> Case:
    """A view (or two on one source), 1–30 events over 1–4 entities and 1–3 streams."""
    first = draw(scenarios())
    views = [replace(first.view, name="v1")]
    scale = first
    if two_views:
        second = draw(scenarios(FUNCTION_COLUMNS[::2]))
        views.append(replace(second.view, name="v2"))
        sizes = tuple(sorted({*first.sizes, *second.sizes}))
        scale = Scenario(views[0], sizes, max(first.span, second.span))
    events = draw(event_sets(scale, min_size=1, max_size=30))
    x_dtype = draw(st.sampled_from(("int", "float")))
    xs = draw(st.lists(X_VALUES[x_dtype == "float"], min_size=len(events), max_size=len(events)))
    raw = [
        bruteforce.Event(e.ts, e.eid, {**e.row, "x": x}) for e, x in zip(events, xs, strict=True)
    ]
    pool = POOL[: draw(st.integers(min_entities, len(POOL)))]
    streams = STREAMS[: draw(st.integers(1, len(STREAMS)))]
    per_major = draw(st.sampled_from((1, 3)))
    counts = dict.fromkeys(streams, 0)
    sent = []
    for i, e in enumerate(raw):
        entity = draw(st.sampled_from(pool))
        stream = draw(st.sampled_from(streams))
        k = counts[stream]
        counts[stream] += 1
        ts = SHIFT + e.ts
        row = {"id": e.eid, "user_id": entity, "x": e.row["x"], "s": e.row["s"], "ts": ts}
        event = Event(i, ts, e.eid, (entity,), row, {}, None)
        sent.append(Sent(entity, stream, (1 + k // per_major, k % per_major), event, k))
    id_dtype = "int" if isinstance(raw[0].eid, int) else "string"
    return Case(tuple(views), scale, x_dtype, id_dtype, raw, sent)


@st.composite
def deliveries(draw: st.DrawFn, case: Case, indices: Iterable[int]) -> list[list[int]]:
    """The events cut into `TileInput`s: runs of one stream and one tile shard."""
    out: list[list[int]] = []
    for i in indices:
        s = case.sent[i]
        if out:
            last = case.sent[out[-1][-1]]
            same = last.stream == s.stream and shard_of_entity(last.entity) == shard_of_entity(
                s.entity
            )
            if same and draw(st.booleans()):
                out[-1].append(i)
                continue
        out.append([i])
    return out


@dataclass
class Ref:
    """The reference: per (view, entity) a `ViewTiler` state, the newest position applied per
    stream, and the entities the engine has in hand (their pending events fold at flushes)."""

    states: dict[tuple[str, str], EntityTiles] = field(default_factory=dict)
    marks: dict[tuple[str, str, str], Position] = field(default_factory=dict)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def flush(self, tilers: dict[str, ViewTiler], inputs: list[TileInput], now: int) -> None:
        for inp in inputs:
            for names, entries in inp.groups:
                for name in names:
                    tiler = tilers[name]
                    for i, eid in enumerate(entries.eids):
                        pos = (int(entries.major[i]), int(entries.minor[i]))
                        row = {c: v[i] for c, v in entries.values.items()}
                        self.seen.add((name, eid))
                        mark = (name, eid, inp.part)
                        if mark in self.marks and pos <= self.marks[mark]:
                            continue  # applied before: a replay
                        self.marks[mark] = pos
                        state = self.states.setdefault((name, eid), EntityTiles())
                        tiler.apply(state, int(entries.ts[i]), entries.event_ids[i], row, now)
        for key in self.seen:
            if key in self.states:
                tilers[key[0]].fold_pending(self.states[key], now)

    def pending_of(self, shard: int) -> set[tuple[str, str]]:
        """The entities of a shard in hand with pending events (others wait in Redis)."""
        return {
            k
            for k in self.seen
            if k in self.states and self.states[k].pending and shard_of_entity(k[1]) == shard
        }


class Lossy(TileConnection):
    """A real connection holding its writes until drained; a crash lands only those sent in
    flushes up to a given one (a prefix, as on one TCP connection) and loses the rest."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.held: list[tuple[int, list[bytes], int]] = []
        self.flushes: Callable[[], int] = lambda: 0  # the engine's flush count

    def send(self, packed: Any, count: int) -> None:
        if count:
            self.held.append((self.flushes(), list(packed), count))

    def drain(self) -> None:
        self.crash(None)

    def first_held(self) -> int | None:
        return self.held[0][0] if self.held else None

    def crash(self, upto: int | None) -> None:
        for flush, packed, count in self.held:
            if upto is None or flush <= upto:
                super().send(packed, count)
        self.held.clear()
        super().drain()


class Harness:
    """One engine (a process) with a shard per tile shard, mirrored by a `Ref`."""

    def __init__(
        self,
        client: redis.Redis,
        case: Case,
        cache_limit: int,
        conn: TileConnection,
        clock: list[int],
        resume: dict[int, bytes] | None = None,
        ref: Ref | None = None,
    ) -> None:
        self.case = case
        self.clock = clock
        self.engine = TileEngine(
            PlanSource(definitions(case)), PROJECT, client, conn, clock=lambda: self.clock[0]
        )
        if isinstance(conn, Lossy):
            conn.flushes = lambda: self.engine.flushes
        resume = resume or {}
        # The engine caches as many entities as its shards' limits summed: all on one shard.
        self.shards = {
            s: TileShard(self.engine, resume.get(s), cache_limit if s == SHARDS[0] else 0)
            for s in SHARDS
        }
        self.tilers = {v.name: ViewTiler(v) for v in case.views}
        self.names = tuple(v.name for v in case.views)
        self.ref = ref or Ref()
        self.queued: list[tuple[list[int], TileInput]] = []
        self.history = [deepcopy(self.ref)]  # the reference after each flush
        self.flushed_at: dict[int, int] = {}  # event → the flush that applied it
        self.committed: dict[int, bytes] = {}  # each shard's last snapshot

    def deliver(self, indices: list[int]) -> None:
        sent = [self.case.sent[i] for i in indices]
        entries = entries_of((s.entity, (s.entity,), s.event, s.position) for s in sent)
        shard = shard_of_entity(sent[0].entity)
        inp = TileInput(shard, sent[0].stream, [(self.names, entries)])
        self.shards[shard].on_batch([inp])
        self.queued.append((indices, inp))

    def act(self, kind: str, at: int) -> None:
        self.clock[0] = max(self.clock[0], at)
        before = self.engine.flushes
        if kind == "notify":
            self.shards[SHARDS[0]].on_notify()
        elif kind == "flush":
            self.engine.flush()
        elif kind == "commit":
            self.committed = {s: shard.snapshot() for s, shard in self.shards.items()}
        if self.engine.flushes != before:
            assert self.engine.flushes == before + 1
            for indices, _ in self.queued:
                self.flushed_at.update(dict.fromkeys(indices, self.engine.flushes))
            self.ref.flush(self.tilers, [inp for _, inp in self.queued], self.clock[0])
            self.queued = []
            self.history.append(deepcopy(self.ref))
        if kind == "commit":  # a shard's Bytewax state: its entities with pending events
            for s, state in self.committed.items():
                assert set(pickle.loads(state)) == self.ref.pending_of(s)

    def drive(self, data: st.DataObject, indices: Iterable[int]) -> None:
        """Deliver the events, each input followed by a drawn action at a drawn clock."""
        for chunk in data.draw(deliveries(self.case, indices)):
            self.deliver(chunk)
            kind = data.draw(st.sampled_from(ACTIONS))
            if kind != "none":
                self.act(kind, SHIFT + data.draw(times(self.case.scenario)))

    def finish(self, data: st.DataObject) -> None:
        """Fold everything queued, maybe later once more, then commit (drains the writes)."""
        self.act("flush", SHIFT + data.draw(times(self.case.scenario)))
        if data.draw(st.booleans()):
            self.act("notify", SHIFT + data.draw(times(self.case.scenario)))
        self.act("commit", self.clock[0])


def _ordered(state: EntityTiles) -> EntityTiles:
    """The state with its tiles in key order (evaluation merges tiles in dict order)."""
    return EntityTiles(
        dict(sorted(state.tiles.items())), state.pending, state.max_ts, state.folded_until
    )


def _readable(state: EntityTiles, oldest: dict[int, int]) -> dict[Any, Any]:
    """The tiles starting at or after `oldest[g]` (non-empty), by key."""
    return {
        k: v
        for k, v in sorted(state.tiles.items())
        if k[0] in oldest and k[1] >= oldest[k[0]] and v
    }


def check(data: st.DataObject, client: redis.Redis, case: Case, ref: Ref, last: int) -> None:
    """Every hash in Redis evaluates as the reference at drawn times >= the last clock."""
    focus = [r[0] - 1 - SHIFT for s in ref.states.values() for r in s.pending]
    as_of = [
        SHIFT + t for t in data.draw(query_times(case.scenario, case.raw, last - SHIFT, focus))
    ]
    for view in case.views:
        tiler = ViewTiler(view)
        for eid in POOL:
            raw = client.hgetall(layout.view_key(PROJECT, view.name, eid))
            want = ref.states.get((view.name, eid))
            if want is None:
                assert raw == {}, (view.name, eid)
                continue
            got = layout.decode_tiles(raw)
            assert got is not None, f"{view.name}/{eid}: no hash"
            where = f"{view.name}/{eid}"
            assert got.max_ts == want.max_ts, where
            assert got.folded_until == want.folded_until, where
            assert got.pending == want.pending, where
            # Every tile some window reads from the last clock on holds the reference state.
            readable = {g: last - w for g, w in tiler.horizon.items()}
            assert _readable(got, readable) == _readable(want, readable), where
            got, want = _ordered(got), _ordered(want)
            for t in as_of:
                values, expected = tiler.evaluate(got, t), tiler.evaluate(want, t)
                wrong = {n: (values[n], expected[n]) for n in values if values[n] != expected[n]}
                assert not wrong, f"{where} as of SHIFT+{t - SHIFT}: (got, want) {wrong}"


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _run(data: st.DataObject, client: redis.Redis, url: str, case: Case, cache_limit: int) -> None:
    """One process applying every event: the hashes must match the reference. Its writes
    go out at once or wait for a drain (an entity read back must not miss them)."""
    writer = _client(url)  # closed at the end: the engine's connection goes with it
    try:
        clock = [SHIFT + data.draw(times(case.scenario))]
        conn = Lossy(writer) if data.draw(st.booleans()) else TileConnection(writer)
        h = Harness(client, case, cache_limit, conn, clock)
        h.drive(data, range(len(case.sent)))
        h.finish(data)
        check(data, client, case, h.ref, clock[0])
    finally:
        writer.close()


@PROPERTY
@given(data=st.data())
def test_any_batches_and_clocks_give_the_reference_values(
    redis_client: redis.Redis, redis_url: str, data: st.DataObject
) -> None:
    """Any split into inputs and any clocks (events pending, due, old), 1–4 entities."""
    redis_client.flushdb()
    _run(data, redis_client, redis_url, data.draw(cases()), cache_limit=100)


@PROPERTY
@given(data=st.data())
def test_evicted_and_reloaded_entities_give_the_reference_values(
    redis_client: redis.Redis, redis_url: str, data: st.DataObject
) -> None:
    """A cache of one or two (view, entity) pairs: entities leave it after a flush (down to
    90% of the limit) and are read back from Redis when their next events come."""
    redis_client.flushdb()
    case = data.draw(cases(min_entities=2))
    _run(data, redis_client, redis_url, case, cache_limit=data.draw(st.sampled_from((1, 2))))


@settings(PROPERTY, max_examples=40)
@given(data=st.data())
def test_two_views_of_one_group_give_the_reference_values(
    redis_client: redis.Redis, redis_url: str, data: st.DataObject
) -> None:
    """Two views with different features fed by one group `((v1, v2), entries)`."""
    redis_client.flushdb()
    case = data.draw(cases(two_views=True))
    _run(data, redis_client, redis_url, case, cache_limit=data.draw(st.sampled_from((1, 100))))


@PROPERTY
@given(data=st.data())
def test_a_replay_after_a_crash_applies_every_event_once(
    redis_client: redis.Redis, redis_url: str, data: st.DataObject
) -> None:
    """A process folds a prefix of the events and crashes, its writes since the last drain
    landed only up to some flush; a new process (empty cache, the last committed shard
    states) gets each stream again from a point at or before its first lost event."""
    redis_client.flushdb()
    case = data.draw(cases())
    limits = st.sampled_from((1, 2, 100))
    first, second = _client(redis_url), _client(redis_url)
    try:
        clock = [SHIFT + data.draw(times(case.scenario))]
        conn = Lossy(first)
        h = Harness(redis_client, case, data.draw(limits), conn, clock)
        submitted = data.draw(st.integers(0, len(case.sent)))
        h.drive(data, range(submitted))
        held = conn.first_held()
        lo = h.engine.flushes if held is None else held - 1
        landed = data.draw(st.integers(lo, h.engine.flushes))
        conn.crash(landed)
        ref = deepcopy(h.history[landed])
        ref.seen = {k for state in h.committed.values() for k in pickle.loads(state)}
        # Each stream's events applied before the crash are a prefix of it: replay from a
        # point within that prefix (or after it).
        done: dict[str, int] = {}
        for i in range(submitted):
            if h.flushed_at.get(i, landed + 1) <= landed:
                s = case.sent[i]
                assert s.index_in_stream == done.get(s.stream, 0)
                done[s.stream] = s.index_in_stream + 1
        start = {s: data.draw(st.integers(0, done.get(s, 0))) for s in STREAMS}
        again = [
            i
            for i, s in enumerate(case.sent)
            if i >= submitted or s.index_in_stream >= start[s.stream]
        ]
        h2 = Harness(
            redis_client, case, data.draw(limits), TileConnection(second), clock, h.committed, ref
        )
        h2.drive(data, again)
        h2.finish(data)
        check(data, redis_client, case, h2.ref, clock[0])
    finally:
        first.close()
        second.close()


def test_a_sweep_keeps_what_its_flush_wrote(redis_client: redis.Redis) -> None:
    """What the properties shrink to once a sweep runs (a flush at least `SWEEP_US` after
    the engine started): an event older than `now - ttl` is applied in that flush, whose
    sweep then forgets the entity as expired before its writes are encoded. Its hash must
    still get the event's `max_ts`, `folded`, replay mark and expiry."""
    redis_client.flushdb()
    view = FeatureView("v1", "user", "src", 60 * S, (Feature("n", "count", None, 60 * S, S),))
    case = Case((view,), Scenario(view, (S,), 120 * S), "int", "string", [], [])
    clock = [SHIFT]
    engine = TileEngine(
        PlanSource(definitions(case)),
        PROJECT,
        redis_client,
        TileConnection(redis_client),
        clock=lambda: clock[0],
    )
    shard = TileShard(engine, None, cache_limit=100)
    row = {"id": "e0", "user_id": "u7", "x": None, "s": None, "ts": SHIFT}
    entries = [("u7", ("u7",), Event(0, SHIFT, "e0", ("u7",), row, {}, None), (1, 0))]
    shard.on_batch([TileInput(shard_of_entity("u7"), "p0#0", [(("v1",), entries_of(entries))])])
    clock[0] = SHIFT + SWEEP_US  # the first sweep is due; the event is older than now - ttl
    shard.snapshot()
    key = layout.view_key(PROJECT, "v1", "u7")
    state = layout.decode_tiles(redis_client.hgetall(key))
    assert state is not None
    assert (state.max_ts, state.folded_until) == (SHIFT, SHIFT)
    assert redis_client.hget(key, "o:p0#0") == b"[1,0]"
    assert redis_client.pttl(key) > 0  # PEXPIREAT at max_ts + ttl (far ahead: SHIFT)
