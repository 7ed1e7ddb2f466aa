"""`TileRouter` hands each tile shard its events as columns (`Entries`), built without a
per-event tuple: what it routes is what routing one event at a time gives, for views keyed
like their source and views keyed otherwise (composite keys, null keys, escaped ids), and
the values it hands on are the events' own (nulls, timestamps as µs)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features import layout
from features.model import Column, Definitions, Entity, FeatureView, Source
from features.schema import Event
from pipelines.plan import PlanSource
from pipelines.records import AcceptedBatch, EventColumns, TileInput
from pipelines.shard_keys import BALANCED
from pipelines.sinks.parquet_log import events_to_table
from pipelines.tile_router import TileRouter, shard_of_entity
from tests.pipelines.scenario import H, feature

# Plain ids and ids `entity_id` escapes; few of them, so shards repeat and runs share one.
USERS = st.sampled_from(["u1", "u2", "u3", "u4", "a/b", "x|y", ""])
SHOPS = st.one_of(st.none(), st.sampled_from(["s1", "s2", "s%3"]))
EVENTS = st.lists(
    st.tuples(USERS, st.sampled_from(["i1", "i2"]), SHOPS, st.integers(0, 2**40)),
    min_size=1,
    max_size=40,
)
# (entity id, key values, event time, event id, position, {column: value})
Row = tuple[str, tuple[Any, ...], int, Any, tuple[int, int], dict[str, Any]]


def _definitions() -> Definitions:
    """A source keyed by (user, item) feeding views on its own key, on users (two views:
    one group), and on (shop, user), whose shop may be null."""
    source = Source(
        name="pv",
        topic="pv",
        key=("user_id", "item_id"),
        event_id="id",
        timestamp="ts",
        allowed_lateness=H,
        schema=(
            Column("id", "string"),
            Column("user_id", "string"),
            Column("item_id", "string"),
            Column("shop_id", "string", nullable=True),
            Column("ts", "timestamp"),
        ),
    )
    n = (feature("n_1h", "count", None, H),)
    views = [
        FeatureView("v_pair", "pair", "pv", 2 * H, n),
        FeatureView("v_user", "user", "pv", 2 * H, n),
        FeatureView("v_user2", "user", "pv", 2 * H, (feature("shop", "last", "shop_id", H),)),
        FeatureView("v_shop", "shop_user", "pv", 2 * H, (*n, feature("at", "max", "ts", H))),
    ]
    return Definitions(
        entities={
            "pair": Entity("pair", ("user_id", "item_id")),
            "user": Entity("user", ("user_id",)),
            "shop_user": Entity("shop_user", ("shop_id", "user_id")),
        },
        sources={"pv": source},
        views={v.name: v for v in views},
    )


PLANS = PlanSource(_definitions())


def _batch(drawn: list[tuple[str, str, str | None, int]], shard: int) -> AcceptedBatch:
    events = []
    for i, (user, item, shop, ts) in enumerate(drawn):
        row = {"id": f"e{i}", "user_id": user, "item_id": item, "shop_id": shop, "ts": ts}
        events.append(Event(i, ts, f"e{i}", (user, item), row, {}, None))
    n = len(events)
    source = PLANS.current().definitions.sources["pv"]
    columns = EventColumns(
        np.array([e.ts for e in events], dtype=np.int64),
        [e.eid for e in events],
        [e.key for e in events],
        [layout.entity_id(e.key) for e in events],
        [None] * n,
        np.full(n, 7, dtype=np.int64),
        np.arange(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        events_to_table(source, events, [0] * n),
    )
    return AcceptedBatch("pv", shard, "p0", columns), events


def _by_event(batch: AcceptedBatch, events: list[Event]) -> list[tuple[str, int, str, list[Any]]]:
    """The routing, one event at a time: per tile shard (in order of first use), its
    groups of (view names, [row, ...]), each row an event's `Row`."""
    source_plan = PLANS.current().sources["pv"]
    by_keys: dict[tuple[str, ...], list[str]] = {}
    columns: dict[tuple[str, ...], set[str]] = {}
    for route in source_plan.views:
        by_keys.setdefault(route.join_keys, []).append(route.view.name)
        columns.setdefault(route.join_keys, set()).update(route.tiler.columns)
    shards: dict[int, list[tuple[tuple[str, ...], list[Row]]]] = {}
    for join_keys, names in by_keys.items():
        per_shard: dict[int, list[Row]] = {}
        for i, event in enumerate(events):
            values = tuple(event.row[k] for k in join_keys)
            if None in values:
                continue
            eid = layout.entity_id(values)
            shard = batch.shard if join_keys == source_plan.source.key else shard_of_entity(eid)
            held = {c: event.row[c] for c in sorted(columns[join_keys])}
            row = (eid, values, event.ts, event.eid, (7, i), held)
            per_shard.setdefault(shard, []).append(row)
        for shard, rows in per_shard.items():
            shards.setdefault(shard, []).append((tuple(names), rows))
    return [(BALANCED[s], s, f"{batch.part}#{batch.shard}", g) for s, g in shards.items()]


def _as_rows(routed: list[tuple[str, TileInput]]) -> list[tuple[str, int, str, list[Any]]]:
    out = []
    for key, inp in routed:
        groups = []
        for names, entries in inp.groups:
            columns = (entries.eids, entries.keys, entries.ts, entries.event_ids, entries.major)
            columns += (entries.minor, *entries.values.values())
            assert len({len(c) for c in columns}) == 1
            assert len(entries) == len(entries.eids)
            assert entries.ts.dtype == entries.major.dtype == entries.minor.dtype == np.int64
            assert all(v.dtype == object for v in entries.values.values())
            rows = [
                (
                    entries.eids[i],
                    entries.keys[i],
                    int(entries.ts[i]),
                    entries.event_ids[i],
                    (int(entries.major[i]), int(entries.minor[i])),
                    {c: entries.values[c][i] for c in sorted(entries.values)},
                )
                for i in range(len(entries))
            ]
            groups.append((names, rows))
        out.append((key, inp.shard, inp.part, groups))
    return out


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.integers(0, 15))
def test_the_router_routes_what_routing_event_by_event_routes(
    drawn: list[tuple[str, str, str | None, int]], ledger_shard: int
) -> None:
    batch, events = _batch(drawn, ledger_shard)
    routed = list(TileRouter(PLANS)(batch))
    want = _by_event(batch, events)
    assert _as_rows(routed) == want
    # An input survives a trip between workers.
    for _, inp in routed:
        back = pickle.loads(pickle.dumps(inp, protocol=pickle.HIGHEST_PROTOCOL))
        assert _as_rows([("k", back)]) == _as_rows([("k", inp)])
