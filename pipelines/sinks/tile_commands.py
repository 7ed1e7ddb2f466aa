"""The stream's tile writes as RESP, built a batch at a time with pyarrow string kernels.

Each written entity gets one `HSET` (docs/storage.md): its changed tiles, `m`, its replay
marks `o:<stream>` and `p` when events are pending (or `[]` once folded), so one command
moves it from one consistent state to the next. Its parts are built column-wise, one
array per kind of part, each in entity order (`counts[i]` items of a kind for entity i),
and one `assemble` (a single `take`) puts every entity's commands (`DEL`, `HSET`,
`PEXPIREAT`) in a row: the result's data buffer is the whole batch's RESP, sent as is.
Every command has a one-line reply, which `redis_writer.TileConnection` relies on.

>>> bytes(buffer(pa.array([b"*1\\r\\n", b"+x"])))
b'*1\\r\\n+x'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from features.json_columns import (
    Part,
    Picked,
    Piece,
    assemble,
    comma_texts,
    int_texts,
    texts,
)

Array = np.ndarray[Any, Any]


def bulk_pieces(parts: Sequence[Piece | Picked]) -> list[Piece | Picked]:
    r"""The pieces of each row's RESP bulk string of the row-wise concatenation of `parts`
    (at least one a column), for the caller's own join: one pass over the bytes, not two.

    >>> from features.json_columns import concat
    >>> concat(b"+", *bulk_pieces([b"[", pa.array([b"1", b"22"]), b"]"])).to_pylist()
    [b'+$3\r\n[1]\r\n', b'+$4\r\n[22]\r\n']
    """
    size: Any = sum(len(p) for p in parts if isinstance(p, bytes))
    for part in parts:
        if isinstance(part, tuple):
            size = size + pc.binary_length(part[0]).to_numpy()[part[1]]
        elif not isinstance(part, bytes):
            size = size + pc.binary_length(part).to_numpy()
    return [b"$", int_texts(size), b"\r\n", *parts, b"\r\n"]


def buffer(values: pa.Array) -> memoryview:
    """The bytes of a binary array's values, end to end, without a copy: the rows of
    `entity_rows` are in command order, so this is the batch's RESP as sent."""
    values = values.cast(pa.binary())
    offsets = np.frombuffer(values.buffers()[1], np.int32, len(values) + 1, 4 * values.offset)
    return memoryview(values.buffers()[2])[offsets[0] : offsets[-1]]


def entity_rows(
    keys: pa.Array,
    fields: Array,
    pairs: Sequence[Part],
    deleted: Array | None = None,
    expire_at: tuple[Array, Array] | None = None,
) -> pa.Array:
    """Each entity's commands in one row: `DEL` where `deleted`, its `HSET` of `fields`
    field-value pairs (`pairs`: parts of `assemble`, a kind's pairs `counts[i]` to entity
    i, so no kind is joined on its own first), `PEXPIREAT` where given (`expire_at`:
    entity positions, ascending, and times)."""
    n = len(keys)
    parts: list[Part] = []
    if deleted is not None and len(deleted):
        parts.append((_marked(n, deleted), [b"*2\r\n$3\r\nDEL\r\n", (keys, deleted)]))
    parts.append((None, [b"*", int_texts(2 + 2 * fields), b"\r\n$4\r\nHSET\r\n", keys]))
    parts += pairs
    if expire_at is not None and len(expire_at[0]):
        moved, at = expire_at
        expiry = [b"*3\r\n$9\r\nPEXPIREAT\r\n", (keys, moved), _by_value(at, _bulk_int)]
        parts.append((_marked(n, moved), expiry))
    return assemble(n, parts)


def _marked(n: int, rows: Array) -> Array:
    """Counts of one item for each of `rows`, none for the other rows of `n`."""
    counts = np.zeros(n, np.int64)
    counts[rows] = 1
    return counts


def _by_value(values: Array, build: Callable[[int], bytes]) -> Piece | Picked:
    """`build(v)` of each int `v` of `values`: built once per distinct value (a constant
    piece when there is one, else picks from the distinct ones)."""
    if len(values) and values.min() == values.max():
        return build(int(values[0]))
    distinct, where = np.unique(values, return_inverse=True)
    return pa.array([build(v) for v in distinct.tolist()], pa.binary()), where.reshape(-1)


def _bulk_int(value: int) -> bytes:
    """An int's text as a RESP bulk string."""
    return bulk_text(b"%d" % value)


def tile_field_pieces(g: int, starts: Array, values: Sequence[Piece]) -> list[Piece | Picked]:
    """Pieces of field-value pairs `t:<g>:<start>` → tile JSON (`layout.tile_field`);
    `values` are the pieces of the JSON (`TileColumns.pieces`)."""
    # Tiles are aligned: a batch has few distinct starts, so each name is built once.
    return [
        _by_value(starts, lambda start: bulk_text(b"t:%d:%d" % (g, start))),
        *bulk_pieces(values),
    ]


def bulk_text(text: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(text), text)


def mark_field_pieces(names: Piece | Picked, major: Array, minor: Array) -> list[Piece | Picked]:
    """Pieces of field-value pairs of replay marks: `names` (RESP bulk) → `[major,minor]`."""
    return [names, *bulk_pieces([b"[", comma_texts(major), int_texts(minor), b"]"])]


def meta_pieces(heads: pa.Array, max_ts: Array, folded: Array) -> list[Piece | Picked]:
    """Pieces of field-value pairs `m` → `{"keys":…,"v":…,"max_ts":…,"folded":…}`: the
    part after the heads in one fixed-width column when it can be (`fixed_rows`)."""
    done = max_ts if np.array_equal(max_ts, folded) else folded
    tail = fixed_rows([b',"max_ts":', max_ts, b',"folded":', done, b"}\r\n"])
    if tail is not None:
        width = len(tail.buffers()[2]) // len(tail)
        size = pc.binary_length(heads).to_numpy() + (width - 2)
        return [b"$1\r\nm\r\n$", int_texts(size), b"\r\n", heads, tail]
    newest = texts(max_ts)
    text = [
        heads,
        b',"max_ts":',
        newest,
        b',"folded":',
        newest if done is max_ts else texts(done),
        b"}",
    ]
    return [b"$1\r\nm\r\n", *bulk_pieces(text)]


def pending_field(records: bytes) -> bytes:
    """The field-value pair `p` → pending records (JSON), as RESP."""
    return b"$1\r\np\r\n$%d\r\n%b\r\n" % (len(records), records)


def fixed_rows(pieces: Sequence[bytes | Array]) -> pa.Array | None:
    r"""Each row's concatenation of `pieces` (constants and columns of ints, at least one),
    written into one fixed-width block with a few strided copies, when the texts of each
    column are of one width (non-negative ints of one digit count); else None.

    >>> fixed_rows([b"<", np.array([12, 34]), b">"]).to_pylist(), fixed_rows([np.array([9, 10])])
    ([b'<12>', b'<34>'], None)
    """
    n = next(len(p) for p in pieces if not isinstance(p, bytes))
    widths = []
    for piece in pieces:
        if isinstance(piece, bytes):
            widths.append(len(piece))
            continue
        if piece.dtype.kind not in "iu" or not n:
            return None
        low, high = int(piece.min()), int(piece.max())
        width = len(str(high))
        if low < 0 or (width > 1 and low < 10 ** (width - 1)):
            return None
        widths.append(width)
    if n * sum(widths) >= 2**31:
        return None
    out = np.empty((n, sum(widths)), np.uint8)
    at = 0
    dumped: dict[int, bytes] = {}  # id of a column → its dump (a column may come twice)
    for piece, width in zip(pieces, widths, strict=True):
        if isinstance(piece, bytes):
            out[:, at : at + width] = np.frombuffer(piece, np.uint8)
        else:
            if id(piece) not in dumped:
                numbers = np.ascontiguousarray(piece, piece.dtype.newbyteorder("="))
                dumped[id(piece)] = orjson.dumps(numbers, option=orjson.OPT_SERIALIZE_NUMPY)
            # `[a,b,…]`: a comma (or the `]`) after each text of `width`
            text = np.frombuffer(dumped[id(piece)], np.uint8, n * (width + 1), 1)
            out[:, at : at + width] = text.reshape(n, width + 1)[:, :width]
        at += width
    offsets = np.arange(0, n * at + 1, at, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out)])
