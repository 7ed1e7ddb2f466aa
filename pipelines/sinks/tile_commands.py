"""The stream's tile writes as RESP, built a batch at a time with pyarrow string kernels.

Each written entity gets one `HSET` (docs/storage.md): its changed tiles, `m`, its replay
marks `o:<stream>` and `p` when events are pending (or `[]` once folded), so one command
moves it from one consistent state to the next. Its parts are built column-wise, one
array per kind of part, then put in command order with one `take`: the result's data
buffer is the whole batch's RESP, sent as is. Every command has a one-line reply, which
`redis_writer.TileConnection` relies on.

>>> import numpy as np
>>> bytes(assemble([Parts(pa.array([b"*1\\r\\n"]), np.array([0]), 0)]))
b'*1\\r\\n'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.json_columns import Piece, concat, texts

Array = np.ndarray[Any, Any]

# The order of an entity's parts (`Parts.kind`).
DELETE, HEADER, FIELD, MARK, META, EXPIRE = range(6)


def bulk(values: pa.Array) -> pa.Array:
    """Each value as a RESP bulk string."""
    return concat(*bulk_pieces([values]))


def bulk_pieces(parts: Sequence[Piece]) -> list[Piece]:
    r"""The pieces of each row's RESP bulk string of the row-wise concatenation of `parts`
    (at least one a column), for the caller's own join: one pass over the bytes, not two.

    >>> concat(b"+", *bulk_pieces([b"[", pa.array([b"1", b"22"]), b"]"])).to_pylist()
    [b'+$3\r\n[1]\r\n', b'+$4\r\n[22]\r\n']
    """
    size: Any = sum(len(p) for p in parts if isinstance(p, bytes))
    for part in parts:
        if not isinstance(part, bytes):
            size = size + pc.binary_length(part).to_numpy()
    return [b"$", texts(size), b"\r\n", *parts, b"\r\n"]


@dataclass(slots=True)
class Parts:
    """Byte strings of one kind, each belonging to the entity at position `owner`."""

    data: pa.Array
    owner: Array
    kind: int


def assemble(parts: Sequence[Parts]) -> memoryview:
    """All parts in command order (by entity, then kind, then as given) as one buffer."""
    parts = [p for p in parts if len(p.owner)]
    if not parts:
        return memoryview(b"")
    data = pa.concat_arrays([p.data.cast(pa.binary()) for p in parts])
    owner = np.concatenate([p.owner for p in parts])
    kind = np.concatenate([np.full(len(p.owner), p.kind) for p in parts])
    order = np.lexsort((np.arange(len(owner)), kind, owner))
    ordered = data.take(pa.array(order))
    offsets = np.frombuffer(ordered.buffers()[1], dtype=np.int32)
    offsets = offsets[ordered.offset : ordered.offset + len(ordered) + 1]
    return memoryview(ordered.buffers()[2])[offsets[0] : offsets[-1]]


def headers(keys: pa.Array, fields: Array) -> pa.Array:
    """`HSET key` heads announcing `fields` field-value pairs each."""
    counts = texts(2 + 2 * fields)
    return concat(b"*", counts, b"\r\n$4\r\nHSET\r\n", keys)


def deletes(keys: pa.Array) -> pa.Array:
    """`DEL key` of each key."""
    return concat(b"*2\r\n$3\r\nDEL\r\n", keys)


def expires(keys: pa.Array, at_ms: Array) -> pa.Array:
    """`PEXPIREAT key at` of each key."""
    return concat(b"*3\r\n$9\r\nPEXPIREAT\r\n", keys, *bulk_pieces([texts(at_ms)]))


def tile_fields(g: int, starts: Array, values: Sequence[Piece]) -> pa.Array:
    """Field-value pairs `t:<g>:<start>` → tile JSON (`layout.tile_field`); `values` are
    the pieces of the JSON (`TileColumns.pieces`)."""
    # Tiles are aligned: a batch has few distinct starts, so each name is built once.
    distinct, where = np.unique(starts, return_inverse=True)
    names = bulk(concat(f"t:{g}:".encode(), texts(distinct))).take(pa.array(where))
    return concat(names, *bulk_pieces(values))


def mark_fields(names: pa.Array, major: Array, minor: Array) -> pa.Array:
    """Field-value pairs of replay marks: `names` (RESP bulk) → `[major,minor]`."""
    return concat(names, *bulk_pieces([b"[", texts(major), b",", texts(minor), b"]"]))


def meta_fields(heads: pa.Array, max_ts: Array, folded: Array) -> pa.Array:
    """Field-value pairs `m` → `{"keys":…,"v":…,"max_ts":…,"folded":…}`."""
    newest = texts(max_ts)
    done = newest if np.array_equal(max_ts, folded) else texts(folded)
    text = [heads, b',"max_ts":', newest, b',"folded":', done, b"}"]
    return concat(b"$1\r\nm\r\n", *bulk_pieces(text))


def pending_field(records: bytes) -> bytes:
    """The field-value pair `p` → pending records (JSON), as RESP."""
    return b"$1\r\np\r\n$%d\r\n%b\r\n" % (len(records), records)
