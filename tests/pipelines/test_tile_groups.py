"""Views of one group share the work `ViewTiles.apply` does alike on their batch.

`TileEngine` hands every view of a group the same `Batch`; the first view to apply it keeps
what hangs only on the events (last event per (entity, stream), events each tile size
takes) for the others. A view numbering its entities otherwise must write exactly what it
writes from a batch of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.durations import now_us
from features.model import Column, Definitions, Entity, Feature, FeatureView, Source
from features.schema import Event
from pipelines.plan import PlanSource
from pipelines.records import TileInput
from pipelines.tile_batches import Batch, Changes, batch_of
from pipelines.view_tiles import ViewTiles
from tests.pipelines.tile_entries import entries_of

M, H, D = 60_000_000, 3_600_000_000, 86_400_000_000
NOW = (now_us() // H) * H
ENTITIES = ("u0", "u1", "u2", "u3")
STREAMS = ("p0#0", "p1#2")
SOURCE = Source(
    name="src",
    topic="src",
    key=("user_id",),
    event_id="id",
    timestamp="ts",
    allowed_lateness=H,
    schema=(
        Column("id", "string"),
        Column("user_id", "string"),
        Column("x", "float", nullable=True),
        Column("s", "string", nullable=True),
        Column("ts", "timestamp"),
    ),
)
VIEW = FeatureView(
    "v",
    "user",
    "src",
    7 * D,
    (
        Feature("n_1h", "count", None, H, M),
        Feature("x_sum_1d", "sum", "x", D, 30 * M),
        Feature("s_last", "last", "s", 7 * D, H),
        Feature("x_last_2", "last_n", "x", H, M, 2),
    ),
)
# Another view of the group: tiles of the same sizes, other columns (others take them).
OTHER = FeatureView(
    "w",
    "user",
    "src",
    7 * D,
    (Feature("s_last_1h", "last", "s", H, M), Feature("x_max_1d", "max", "x", D, 30 * M)),
)
PLAN = PlanSource(
    Definitions(
        entities={"user": Entity("user", ("user_id",))},
        sources={"src": SOURCE},
        views={"v": VIEW, "w": OTHER},
    )
).current()
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(ENTITIES),
        st.sampled_from(STREAMS),
        st.integers(-3 * H, 2 * M),  # some events are too old for the 1h window's tiles
        st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
        st.one_of(st.none(), st.sampled_from(("a", "b"))),
    ),
    min_size=1,
    max_size=30,
)


def _view(order: list[str], name: str = "v") -> ViewTiles:
    """A view, with `order`'s entities cached first (they decide its entity numbers)."""
    view = ViewTiles("p", PLAN.views[name], {c.name: c.dtype for c in SOURCE.schema})
    keys = [(e,) for e in order]
    ents = view.add(order, keys, np.zeros(len(order), np.int64), [b""] * len(order))
    view.loaded(ents, [{}] * len(order))
    return view


def _batch(drawn: list[tuple[str, str, int, Any, Any]]) -> Batch:
    counts = dict.fromkeys(STREAMS, 0)
    inputs = []
    for i, (eid, stream, dt, x, s) in enumerate(drawn):
        counts[stream] += 1
        row = {"id": f"e{i}", "user_id": eid, "x": x, "s": s, "ts": NOW + dt}
        event = Event(i, NOW + dt, f"e{i}", (eid,), row, {}, None)
        entry = (eid, (eid,), event, (counts[stream], i % 2))
        entries = entries_of([entry])
        inputs.append((TileInput(0, stream, [(("v", "w"), entries)]), entries))
    return batch_of(inputs, ["s", "x"])


def _written(view: ViewTiles, batch: Batch) -> tuple[bytes, dict[str, Any]]:
    changes = Changes()
    view.apply(batch, NOW, changes, 1)
    data, _, _ = view.encode(changes)
    marks = {s: (m[0].tolist(), m[1].tolist()) for s, m in view.marks.items()}
    return bytes(data), {"marks": marks, "top": view.stream_top}


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.permutations(ENTITIES), st.permutations(ENTITIES), st.sampled_from("vw"))
def test_a_view_writes_from_a_shared_batch_what_it_writes_from_its_own(
    drawn: list[tuple[str, str, int, Any, Any]], first: list[str], second: list[str], name: str
) -> None:
    shared = _batch(drawn)
    _written(_view(first, name), shared)  # the group's first view: keeps its work on the batch
    assert _written(_view(second), shared) == _written(_view(second), _batch(drawn))
