"""The replay guard of a view's cache: per (entity, origin stream), the newest position applied.

`ViewTiles.apply` skips the events of a batch at or before their entity's mark (`guard`:
replayed after a crash, already applied) and then records the batch's newest positions
(`mark`), which `tile_writes` writes as the entity's `o:` fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.tile_batches import Batch, Changes, ends_of_groups

if TYPE_CHECKING:
    from pipelines.view_tiles import ViewTiles

Array = np.ndarray[Any, Any]


def mark(view: ViewTiles, batch: Batch, ents: Array, changes: Changes) -> None:
    """Record the newest position applied per (entity, stream): positions grow within a
    stream, so it is the entity's last event of that stream."""
    found = batch.shared.get("marks")
    if found is None:
        # Which events are last of their (entity, stream) does not hang on the numbers
        # a view gives its entities: the first view of a group works it out for all.
        pair = ents * len(batch.streams) + batch.stream
        last = ends_of_groups(pair, last=True)
        stream, major, minor = batch.stream[last], batch.major[last], batch.minor[last]
        per_stream = []
        for s, name in enumerate(batch.streams):
            at = np.flatnonzero(stream == s)
            if len(at):
                top = int(major[at].max())
                position = (top, int(minor[at][major[at] == top].max()))
                per_stream.append((name, at, major[at], minor[at], position))
        found = batch.shared["marks"] = (last, stream, major, minor, per_stream)
    last, stream, major, minor, per_stream = found
    marked = ents[last]
    for name, at, majors, minors, position in per_stream:
        held = view.marks_of(name)
        held[0][marked[at]], held[1][marked[at]] = majors, minors
        if name not in view.stream_top or position > view.stream_top[name]:
            view.stream_top[name] = position
    changes.marks.append((batch.streams, stream, marked, major, minor))


def guard(view: ViewTiles, batch: Batch, ents: Array) -> Array | None:
    """Which events were not applied before a crash (None: all of them, the usual case).

    A stream whose first event here is past every mark this cache holds for it (the
    marks of uncached entities are read with them) cannot replay anything."""
    keep = None
    firsts = batch.shared.get("firsts")
    if firsts is None:
        firsts = batch.shared["firsts"] = ends_of_groups(batch.stream, last=False)
    for first in firsts.tolist():
        s = int(batch.stream[first])
        name = batch.streams[s]
        top = view.stream_top.get(name)
        if top is None or (int(batch.major[first]), int(batch.minor[first])) > top:
            continue
        if keep is None:
            keep = np.ones(len(ents), dtype=bool)
        at = np.flatnonzero(batch.stream == s)
        major, minor = view.marks_of(name)
        held_major, held_minor = major[ents[at]], minor[ents[at]]
        keep[at] = (batch.major[at] > held_major) | (
            (batch.major[at] == held_major) & (batch.minor[at] > held_minor)
        )
    return keep
