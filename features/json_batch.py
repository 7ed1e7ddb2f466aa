"""A batch of JSON object payloads read straight into typed Arrow columns, in C.

The common batch (every payload an object whose fields all have their column's JSON type,
no field beyond the schema) is read by `pyarrow.json` in one block, with no Python dict
per event. Arrow's reader is laxer than `orjson` in a few ways (NaN and Infinity
literals, several values in one payload, a leading byte-order mark, unchecked UTF-8), so
`JsonBatchReader.read` gives up on any batch where that could show: the caller then takes
the value-by-value path, whose verdicts and values are the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from features.coercion import ARROW_TYPES
from features.model import Column, Source

_MAX_BLOCK = 2**31 - 2  # Arrow's block size is an int32
_NEWLINE, _OPEN = ord("\n"), ord("{")
MAX_BACKOFF = 64  # batches at most left untried after a batch that was not read in columns


class JsonBatchReader:
    """Reads batches of JSON objects into one Arrow array per field (timestamps as their
    epoch-ms ints); `None` for a batch the reader cannot take exactly as JSON says."""

    __slots__ = ("_backoff", "_finite", "_parse", "_skip")

    def __init__(self, columns: Sequence[Column], extra: str | None) -> None:
        """`extra`: one more string field read after the columns (the correlation id)."""
        fields = [
            pa.field(c.name, pa.int64() if c.dtype == "timestamp" else ARROW_TYPES[c.dtype])
            for c in columns
        ]
        if extra is not None:
            fields.append(pa.field(extra, pa.string()))
        self._parse = pj.ParseOptions(
            explicit_schema=pa.schema(fields), unexpected_field_behavior="error"
        )
        # Arrow reads NaN and Infinity literals (JSON has neither) into float columns.
        self._finite = [i for i, c in enumerate(columns) if c.dtype == "float"]
        self._skip = 0  # batches left to leave to the value-by-value path
        self._backoff = 1

    def wanted(self) -> bool:
        """Whether to try the next batch in columns: after a batch that could not be, the
        next 1, 2, 4 … 64 are not tried (a source whose events carry fields beyond the
        schema, or ISO timestamps, would pay a failed read on every batch)."""
        if self._skip:
            self._skip -= 1
            return False
        return True

    def taken(self, ok: bool) -> None:
        """Record whether the batch just tried was read in columns."""
        if ok:
            self._backoff = 1
        else:
            self._skip = self._backoff
            self._backoff = min(2 * self._backoff, MAX_BACKOFF)

    def read(self, payloads: Sequence[Any]) -> list[pa.Array] | None:
        """Each field's array, if every payload is the bytes of one JSON object that Arrow
        reads exactly as `orjson` would; else `None`."""
        n = len(payloads)
        if not n or set(map(type, payloads)) != {bytes}:
            return None
        data = b"\n".join([b"", *payloads, b""])
        # One line per payload, each opening an object (so none is empty or whitespace
        # only, nor starts with a byte-order mark): a payload holding two objects then
        # shows as one row too many.
        if len(data) > _MAX_BLOCK:
            return None
        text = np.frombuffer(data, np.uint8)
        lines = np.flatnonzero(text == _NEWLINE)
        if len(lines) != n + 1 or not (text[lines[:-1] + 1] == _OPEN).all():
            return None
        if not data.isascii():
            try:  # Arrow leaves string bytes unchecked; orjson rejects invalid UTF-8
                data.decode()
            except UnicodeDecodeError:
                return None
        options = pj.ReadOptions(use_threads=False, block_size=len(data) + 1)
        try:
            table = pj.read_json(
                pa.py_buffer(data), read_options=options, parse_options=self._parse
            )
        except pa.ArrowException:  # a type, a duplicate key, an unknown field
            return None
        if table.num_rows != n:
            return None
        arrays = [c.chunk(0) if c.num_chunks == 1 else c.combine_chunks() for c in table.columns]
        for i in self._finite:
            if pc.all(pc.is_finite(arrays[i])).as_py() is False:
                return None
        return arrays


def columnar_reader(source: Source, correlation_field: str) -> JsonBatchReader | None:
    """The reader of a source's batches (its correlation id read after its columns when
    not one of them), or None where columns read by Arrow would differ from JSON's values:
    a float key or event id comes back a float where JSON gave an int (`3.0`, not `3`),
    and a correlation id column of another dtype than string has its own check."""
    dtypes = {c.name: c.dtype for c in source.schema}
    if any(dtypes[name] == "float" for name in (source.event_id, *source.key)):
        return None
    if dtypes.get(correlation_field, "string") != "string":
        return None
    extra = None if correlation_field in dtypes else correlation_field
    return JsonBatchReader(source.schema, extra)
