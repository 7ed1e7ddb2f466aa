"""What a flush of one view writes: each changed entity's commands, built column-wise.

`ViewTiles.encode` calls `encode_changes`, which turns the `Changes` of a flush into the
RESP of its commands (tiles, marks, `m` and `p`, headers, deletes, expiries) and updates
the per-entity bookkeeping the writes settle (expiry set, `p` stored, reset done, fresh).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from features.json_columns import Part, Picked, Piece
from pipelines.sinks import tile_commands as cmd
from pipelines.sinks.redis_tiles import bulk
from pipelines.tile_batches import Changes, ends_of_groups

if TYPE_CHECKING:
    from pipelines.view_tiles import ViewTiles

Array = np.ndarray[Any, Any]


def encode_changes(view: ViewTiles, changes: Changes) -> tuple[memoryview, int, list[str]]:
    """The commands writing every entity a flush changed (one `HSET` each, plus `DEL` and
    `PEXPIREAT` where due): their RESP, their reply count, and the entities new to Redis.

    Every kind of field is built in entity order, so one assembly puts each entity's
    commands in a row (`cmd.entity_rows`), and the rows' bytes are the RESP in command order."""
    if not changes.ents:
        return memoryview(b""), 0, []
    ents = _distinct(np.concatenate(changes.ents), len(view.max_ts))
    n = len(ents)
    keys = view.key_bulk.take(ents)  # built when cached (`ViewTiles.add`)
    parts: list[Part] = []
    fields = np.ones(n, dtype=np.int64)  # `m`
    for g, pairs in changes.tiles.items():
        rows = np.concatenate([r for _, r in pairs])
        owners = np.concatenate([e for e, _ in pairs])
        # One sort dedups the tiles and puts them in entity order.
        span = np.int64(view.slots[g].columns.capacity + 1)
        tiles = _distinct(owners * span + rows)
        rows = tiles % span
        counts = np.bincount(np.searchsorted(ents, tiles // span), minlength=n)
        slot = view.slots[g]
        pieces = cmd.tile_field_pieces(g, slot.start_of[rows], slot.columns.pieces(rows))
        parts.append(_one_each(pieces, counts))
        fields += counts
    if changes.marks:
        names, marked, major, minor = _mark_pairs(view, changes.marks)
        counts = np.bincount(np.searchsorted(ents, marked), minlength=n)
        parts.append(_one_each(cmd.mark_field_pieces(names, major, minor), counts))
        fields += counts
    heads = view.heads.take(ents)
    parts.append((None, cmd.meta_pieces(heads, view.max_ts[ents], view.folded[ents])))
    holds = np.zeros(n, dtype=bool)
    if view.pending:
        holds = np.fromiter(map(view.pending.__contains__, ents.tolist()), bool, n)
    pend = view.stored_pending[ents] | holds
    if pend.any():
        texts = [
            cmd.pending_field(orjson.dumps(view.pending.get(e, []))) for e in ents[pend].tolist()
        ]
        parts.append((pend.astype(np.int64), [pa.array(texts, pa.binary())]))
        fields += pend
        view.stored_pending[ents] = holds
    count = n
    reset = np.flatnonzero(view.reset[ents])
    if len(reset):
        view.reset[ents[reset]] = False
        count += len(reset)
    expire = (view.max_ts[ents] + view.ttl) // 1000
    moved = np.flatnonzero(expire > view.expire_at[ents])
    at = -((-expire[moved]) // view.bucket_ms) * view.bucket_ms
    if len(moved):
        # set again only past the bucket set before (rounded up to it)
        view.expire_at[ents[moved]] = at
        count += len(moved)
    data = cmd.entity_rows(keys, fields, parts, reset, (moved, at))
    fresh = ents[view.fresh[ents]]
    view.fresh[fresh] = False
    return cmd.buffer(data), count, view.eids[fresh].tolist()


def _one_each(pieces: list[Piece | Picked], counts: Array) -> Part:
    """A part of field-value pairs in entity order, `counts[i]` of them for entity `i`."""
    return (None if (counts == 1).all() else counts, pieces)


def _distinct(values: Array, bound: int = 0) -> Array:
    """The distinct values (ints, below `bound` if given), ascending: by a mark per value
    when `bound` is small, else by a sort (`np.unique` hashes: several times slower)."""
    if 0 < bound <= 32 * len(values):
        seen = np.zeros(bound, dtype=bool)
        seen[values] = True
        return np.flatnonzero(seen)
    ordered = np.sort(values)
    edges = np.ones(len(ordered), dtype=bool)
    edges[1:] = ordered[1:] != ordered[:-1]
    return ordered[edges]


def _mark_pairs(
    view: ViewTiles, marks: list[tuple[list[str], Array, Array, Array, Array]]
) -> tuple[Piece | Picked, Array, Array, Array]:
    """The marks to write, one per (entity, stream), the last recorded winning, in entity
    order; with their field names (RESP bulk strings; one for all when all are alike)."""
    streams = list(dict.fromkeys(name for entry in marks for name in entry[0]))
    number = {name: i for i, name in enumerate(streams)}
    stream = np.concatenate(
        [np.array([number[n] for n in names], np.int64)[s] for names, s, _, _, _ in marks]
    )
    marked = np.concatenate([e for _, _, e, _, _ in marks])
    major = np.concatenate([m for _, _, _, m, _ in marks])
    minor = np.concatenate([m for _, _, _, _, m in marks])
    if len(marks) > 1 or (len(marked) > 1 and (marked[1:] < marked[:-1]).any()):
        # Each (entity, stream) pair's last recorded, in pair order: entity order.
        last = ends_of_groups(marked * len(streams) + stream, last=True)
        stream, marked, major, minor = stream[last], marked[last], major[last], minor[last]
    if len(stream) and stream.min() == stream.max():
        return bulk(f"o:{streams[stream[0]]}".encode()), marked, major, minor
    bulks = pa.array([bulk(f"o:{name}".encode()) for name in streams], pa.binary())
    return (bulks, stream), marked, major, minor
