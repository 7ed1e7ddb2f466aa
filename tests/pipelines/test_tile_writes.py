"""`tile_writes.encode_changes` writes what a plain, entity-by-entity encoding writes.

The column-built RESP is parsed back into commands and compared, per entity, with the
commands built one entity at a time in Python: `DEL` (where reset) before the `HSET` of
its changed tiles, last replay marks, `m` and `p`, then `PEXPIREAT` (where the expiry
moved); fields in any order, byte for byte but the tiles (their JSON is compared as
values: its key order is that of the batch, and `test_tile_columns` checks the text);
and the reply count.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import hiredis
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import layout
from features.json_columns import grouped
from features.model import Feature
from features.tile_columns import TileColumns
from features.tiles import CompiledFeature
from pipelines.sinks.redis_tiles import EntityBytes, bulk, meta_head
from pipelines.tile_batches import Changes, objects
from pipelines.tile_writes import encode_changes

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
G = (60_000_000, 3_600_000_000)
STREAMS = ["p0#1", "p1#é"]
FEATURES = (
    Feature("n", "count", None, 3600, 60),
    Feature("last3", "last_n", "x", 3600, 60, 3),
    Feature("s", "last", "s", 3600, 60),
)
NONE = -(2**63)


def _columns(draw: st.DrawFn, rows: int) -> TileColumns:
    """Tile columns of `rows` tiles, each folded from a few drawn events (or none)."""
    cols = TileColumns([CompiledFeature.of(f) for f in FEATURES], {"x": "float", "s": "string"})
    cols.ensure(rows)
    size = draw(st.integers(0, 3 * rows))
    at = np.array(draw(st.lists(st.integers(0, rows - 1), min_size=size, max_size=size)))
    ts = np.arange(size, dtype=np.int64) * 7
    xs = draw(st.lists(st.none() | st.floats(-1e6, 1e6), min_size=size, max_size=size))
    ss = draw(st.lists(st.none() | st.text('a,"é', max_size=3), min_size=size, max_size=size))
    values = {"x": objects(xs), "s": objects(ss)}
    eids = objects([f"e{i}" for i in range(size)])
    cols.fold(at.astype(np.int64), ts, eids, values)
    return cols


def _stored(values: list[bytes]) -> EntityBytes:
    """Per entity number `i`, `values[i]`."""
    store = EntityBytes()
    store.put(np.arange(len(values)), values)
    return store


@st.composite
def flushes(draw: st.DrawFn) -> tuple[Any, Changes]:
    """A view's per-entity state and tiles (3 tile rows per entity: starts 0, g, 2g) and
    the changes of a flush."""
    n = draw(st.integers(1, 8))
    capacity = draw(st.sampled_from([n, n + 3, 40 * n]))
    big = st.integers(-(2**62), 2**62)
    flags = st.lists(st.booleans(), min_size=capacity, max_size=capacity)
    view = SimpleNamespace(
        key_bulk=_stored([bulk(f"rillet:p:{{u{i}}}:v".encode()) for i in range(capacity)]),
        heads=_stored([meta_head([f"u{i}"], "ver") for i in range(capacity)]),
        max_ts=np.array(draw(st.lists(big, min_size=capacity, max_size=capacity))),
        folded=np.array(draw(st.lists(big, min_size=capacity, max_size=capacity))),
        pending={},
        stored_pending=np.array(draw(flags)),
        reset=np.array(draw(flags)),
        fresh=np.array(draw(flags)),
        expire_at=np.array(draw(st.lists(big, min_size=capacity, max_size=capacity))),
        ttl=3_600_000_000,
        bucket_ms=draw(st.sampled_from([1, 1000])),
        eids=objects([f"u{i}" for i in range(capacity)]),
    )
    if draw(st.booleans()):
        view.folded = view.max_ts.copy()
    for e in draw(st.lists(st.integers(0, n - 1), max_size=3)):
        view.pending[e] = [[5, "ev", {"x": 1.5}]]
    view.slots = {
        g: SimpleNamespace(start_of=np.arange(3 * n) % 3 * g, columns=_columns(draw, 3 * n))
        for g in G
    }
    entity = st.integers(0, n - 1)
    changes = Changes()
    for _ in range(draw(st.integers(1, 3))):
        changes.ents.append(np.array(draw(st.lists(entity, min_size=1, max_size=6))))
    for g in draw(st.lists(st.sampled_from(G), unique=True)):
        for _ in range(draw(st.integers(1, 2))):
            rows = np.array(draw(st.lists(st.integers(0, 3 * n - 1), max_size=8)), np.int64)
            changes.tiles.setdefault(g, []).append((rows // 3, rows))
    for _ in range(draw(st.integers(0, 2))):
        # A batch's marks: one per marked (entity, stream), in any order.
        names = draw(st.lists(st.sampled_from(STREAMS), min_size=1, max_size=2, unique=True))
        pair = st.tuples(entity, st.integers(0, len(names) - 1))
        marked = draw(st.lists(pair, max_size=6, unique=True))
        size = len(marked)
        positions = st.lists(st.integers(0, 2**40), min_size=size, max_size=size)
        ents, stream = (np.array([p[i] for p in marked], np.int64) for i in (0, 1))
        major, minor = (np.array(draw(positions), np.int64) for _ in range(2))
        changes.marks.append((names, stream, ents, major, minor))
    # entities with tiles or marks are changed
    touched = [r // 3 for pairs in changes.tiles.values() for r in (p[1] for p in pairs)]
    changes.ents += [np.asarray(t, np.int64) for t in touched]
    changes.ents += [m[2] for m in changes.marks]
    return view, changes


def plain(view: Any, changes: Changes) -> tuple[dict[bytes, list[Any]], int]:
    """The commands of each entity, built one entity at a time; and their count."""
    out: dict[bytes, list[Any]] = {}
    marks: dict[int, dict[bytes, bytes]] = {}
    for names, stream, ents, major, minor in changes.marks:
        for s, e, a, b in zip(stream.tolist(), ents.tolist(), major, minor, strict=True):
            marks.setdefault(e, {})[f"o:{names[s]}".encode()] = b"[%d,%d]" % (a, b)
    tiles: dict[int, dict[bytes, Any]] = {}
    for g, pairs in changes.tiles.items():
        slot = view.slots[g]
        for _, rows in pairs:
            for row in rows.tolist():
                name = layout.tile_field((g, int(slot.start_of[row]))).encode()
                state = slot.columns.states(np.array([row]))[0]
                tiles.setdefault(row // 3, {})[name] = state
    count = 0
    for e in sorted(set(np.concatenate(changes.ents).tolist())):
        key = f"rillet:p:{{u{e}}}:v".encode()
        commands: list[Any] = []
        if view.reset[e]:
            commands.append((b"DEL", key))
        fields: dict[bytes, Any] = {**tiles.get(e, {}), **marks.get(e, {})}
        fields[b"m"] = meta_head([f"u{e}"], "ver") + b',"max_ts":%d,"folded":%d}' % (
            view.max_ts[e],
            view.folded[e],
        )
        if view.stored_pending[e] or e in view.pending:
            fields[b"p"] = orjson.dumps(view.pending.get(e, []))
        commands.append((b"HSET", fields))
        expire = (int(view.max_ts[e]) + view.ttl) // 1000
        if expire > view.expire_at[e]:
            at = -(-expire // view.bucket_ms) * view.bucket_ms
            commands.append((b"PEXPIREAT", key, str(at).encode()))
        out[key] = commands
        count += len(commands)
    return out, count


def parsed(data: bytes) -> dict[bytes, list[Any]]:
    """RESP commands by key, in order; an `HSET`'s fields as a dict (no field twice)."""
    reader = hiredis.Reader()
    reader.feed(data)
    out: dict[bytes, list[Any]] = {}
    while (command := reader.gets()) is not False:
        name, key, *rest = command
        if name == b"HSET":
            fields = dict(zip(rest[::2], rest[1::2], strict=True))
            assert len(fields) == len(rest) // 2
            for field in fields:
                if field.startswith(b"t:"):  # key order: that of the batch's encoding
                    fields[field] = orjson.loads(fields[field])
            out.setdefault(key, []).append((name, fields))
        else:
            out.setdefault(key, []).append((name, key, *rest))
    return out


@PROPERTY
@given(flushes())
def test_encoded_commands_are_the_plain_encoding_of_each_entity(flush: tuple[Any, Changes]) -> None:
    view, changes = flush
    expected, count = plain(view, changes)
    data, replies, _ = encode_changes(view, changes)
    assert replies == count
    assert parsed(bytes(data)) == expected


def test_grouped_refuses_counts_that_do_not_add_up() -> None:
    import pyarrow as pa

    with pytest.raises(ValueError):
        grouped(pa.array([b"a", b"b"]), np.array([1, 0, 0]))
