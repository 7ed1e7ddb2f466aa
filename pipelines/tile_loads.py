"""What loading an entity from Redis sets in a view's cache: its stored hash, decoded.

`ViewTiles.load` caches a batch of entities read with one `HGETALL` each; most are new
(empty replies). Each stored one goes through `load_stored`: its tiles into the view's
slots, `max_ts`, the time folded up to, pending events and replay marks (`o:` fields, or
those of an older layout inside `m`, which are queued to be rewritten as `o:` fields).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from features import layout
from pipelines.sinks.redis_bulk import pack_one

if TYPE_CHECKING:
    from pipelines.view_tiles import ViewTiles

_MARK = b"o:"


def load_stored(view: ViewTiles, ent: int, reply: Any) -> None:
    """Cache the stored hash `reply` (a RESP3 map or a RESP2 list) of `view`'s entity `ent`,
    just added (`ViewTiles.add`: its `max_ts` is still `NONE`)."""
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    meta = orjson.loads(reply.get(b"m", b"{}"))
    if meta.get("v") not in (None, view.route.version):
        view.reset[ent] = True  # another version of the view: deleted before writing
        return
    state = layout.decode_tiles(reply)
    if state is None:
        return
    if state.max_ts is not None:
        view.max_ts[ent] = state.max_ts
    view.folded[ent] = state.folded_until
    if state.pending:
        view.pending[ent] = state.pending
        view.stored_pending[ent] = True
    marks = {part: (int(p[0]), int(p[1])) for part, p in (meta.get("pos") or {}).items()}
    if marks:
        # Marks of an older layout, inside `m`: kept as `o:` fields before the next
        # write replaces `m` (queued ahead of this flush's writes).
        view.migrations.append(
            pack_one(("HSET", view.key_text(ent),
                      *(x for s, p in marks.items() for x in (f"o:{s}", orjson.dumps(p)))))
        )  # fmt: skip
    for name, value in reply.items():
        if name.startswith(_MARK):
            major, minor = orjson.loads(value)
            marks[name[len(_MARK) :].decode()] = (int(major), int(minor))
    for stream, (major, minor) in marks.items():
        held = view.marks_of(stream)
        held[0][ent], held[1][ent] = major, minor
        if stream not in view.stream_top or (major, minor) > view.stream_top[stream]:
            view.stream_top[stream] = (major, minor)
    per_g: dict[int, tuple[list[int], list[dict[str, Any]]]] = {}
    for (g, start), tile in state.tiles.items():
        if g in view.slots:
            starts, tiles = per_g.setdefault(g, ([], []))
            starts.append(start)
            tiles.append(tile)
    for g, (starts, tiles) in per_g.items():
        slot = view.slots[g]
        rows = slot.rows(np.full(len(starts), ent, dtype=np.int64), np.array(starts))
        slot.columns.load(rows, tiles)
