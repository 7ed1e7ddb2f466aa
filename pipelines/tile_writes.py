"""What a flush of one view writes: each changed entity's commands, built column-wise.

`ViewTiles.encode` calls `encode_changes`, which turns the `Changes` of a flush into
`tile_commands.Parts` (tiles, marks, `m` and `p`, headers, deletes, expiries) and updates
the per-entity bookkeeping the writes settle (expiry set, `p` stored, reset done, fresh).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from pipelines.sinks import tile_commands as cmd
from pipelines.sinks.redis_tiles import bulk
from pipelines.tile_batches import Changes

if TYPE_CHECKING:
    from pipelines.view_tiles import ViewTiles

Array = np.ndarray[Any, Any]


def encode_changes(view: ViewTiles, changes: Changes) -> tuple[list[cmd.Parts], int, list[str]]:
    """The commands writing every entity a flush changed (one `HSET` each, plus `DEL` and
    `PEXPIREAT` where due): parts, their reply count, and the entities new to Redis."""
    if not changes.ents:
        return [], 0, []
    ents = np.unique(np.concatenate(changes.ents))
    keys = pa.array(view.key_bulk[ents], pa.binary())  # built when cached (`ViewTiles.add`)
    parts: list[cmd.Parts] = []
    fields = np.ones(len(ents), dtype=np.int64)  # `m`
    for g, pairs in changes.tiles.items():
        rows = np.concatenate([r for _, r in pairs])
        owners = np.concatenate([e for e, _ in pairs])
        rows, first = np.unique(rows, return_index=True)
        owner = np.searchsorted(ents, owners[first])
        slot = view.slots[g]
        data = cmd.tile_fields(g, slot.start_of[rows], slot.columns.pieces(rows))
        parts.append(cmd.Parts(data, owner, cmd.FIELD))
        fields += np.bincount(owner, minlength=len(ents))
    if changes.marks:
        names, marked, major, minor = _mark_pairs(view, changes.marks)
        owner = np.searchsorted(ents, marked)
        parts.append(cmd.Parts(cmd.mark_fields(names, major, minor), owner, cmd.MARK))
        fields += np.bincount(owner, minlength=len(ents))
    heads = pa.array(view.heads[ents], pa.binary())
    meta = cmd.meta_fields(heads, view.max_ts[ents], view.folded[ents])
    holds = np.zeros(len(ents), dtype=bool)
    if view.pending:
        holds = np.fromiter(map(view.pending.__contains__, ents.tolist()), bool, len(ents))
    pend = view.stored_pending[ents] | holds
    if pend.any():
        with_p = np.flatnonzero(pend)
        texts = [
            cmd.pending_field(orjson.dumps(view.pending.get(e, []))) for e in ents[with_p].tolist()
        ]
        meta = meta.to_pylist()
        for i, text in zip(with_p.tolist(), texts, strict=True):
            meta[i] += text
        meta = pa.array(meta, pa.binary())
        fields[with_p] += 1
        view.stored_pending[ents] = holds
    parts.append(cmd.Parts(meta, np.arange(len(ents)), cmd.META))
    parts.append(cmd.Parts(cmd.headers(keys, fields), np.arange(len(ents)), cmd.HEADER))
    count = len(ents)
    reset = np.flatnonzero(view.reset[ents])
    if len(reset):
        parts.append(cmd.Parts(cmd.deletes(keys.take(pa.array(reset))), reset, cmd.DELETE))
        view.reset[ents[reset]] = False
        count += len(reset)
    expire = (view.max_ts[ents] + view.ttl) // 1000
    moved = np.flatnonzero(expire > view.expire_at[ents])
    if len(moved):
        # set again only past the bucket set before (rounded up to it)
        at = -((-expire[moved]) // view.bucket_ms) * view.bucket_ms
        view.expire_at[ents[moved]] = at
        parts.append(cmd.Parts(cmd.expires(keys.take(pa.array(moved)), at), moved, cmd.EXPIRE))
        count += len(moved)
    fresh = ents[view.fresh[ents]]
    view.fresh[fresh] = False
    return parts, count, view.eids[fresh].tolist()


def _mark_pairs(
    view: ViewTiles, marks: list[tuple[list[str], Array, Array, Array, Array]]
) -> tuple[pa.Array, Array, Array, Array]:
    """The marks to write, one per (entity, stream), the last recorded winning; with
    their field names (RESP bulk strings)."""
    streams = list(dict.fromkeys(name for entry in marks for name in entry[0]))
    number = {name: i for i, name in enumerate(streams)}
    stream = np.concatenate(
        [np.array([number[n] for n in names], np.int64)[s] for names, s, _, _, _ in marks]
    )
    marked = np.concatenate([e for _, _, e, _, _ in marks])
    major = np.concatenate([m for _, _, _, m, _ in marks])
    minor = np.concatenate([m for _, _, _, _, m in marks])
    if len(marks) > 1:
        pair = marked * len(streams) + stream
        last = len(pair) - 1 - np.unique(pair[::-1], return_index=True)[1]
        stream, marked, major, minor = stream[last], marked[last], major[last], minor[last]
    bulks = pa.array([bulk(f"o:{name}".encode()) for name in streams], pa.binary())
    return bulks.take(pa.array(stream)), marked, major, minor
