"""Columns of values as JSON text, as orjson writes them, with pyarrow string kernels.

The tiles step writes a batch's tile states as JSON without a Python call per value:
numbers go through one `orjson.dumps` of the whole column, split on commas; other values
(strings, event ids) one `orjson.dumps` each, in C; the pieces are joined row-wise by
pyarrow.

>>> import numpy as np
>>> triple(np.array([1, 2]), np.array(["a", "b"], object), np.array([0.5, 2.0])).to_pylist()
[b'[1,"a",0.5]', b'[2,"b",2.0]']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

Array = np.ndarray[Any, Any]
_join = pc.binary_join_element_wise


def _dump(value: Any) -> bytes:
    """orjson's text of a value; Python's for ints beyond 64 bits (orjson refuses them)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def texts(values: Array) -> pa.Array:
    """The JSON text of each value: numbers as shortest round-trip text, integral floats
    with `.0` (as orjson writes them, so they read back as floats), others through orjson.

    >>> texts(np.array([1.0, 2.5, 1e20])).to_pylist(), texts(np.array([-3, 7])).to_pylist()
    ([b'1.0', b'2.5', b'1e+20'], [b'-3', b'7'])
    """
    kind = values.dtype.kind
    if kind in "iu":
        return pc.cast(pa.array(values), pa.string()).cast(pa.binary())
    if kind == "f" and np.isfinite(values).all():
        text = pc.cast(pa.array(values), pa.string())
        integral = pc.match_substring_regex(text, r"^-?[0-9]+$")
        if pc.any(integral).as_py():
            text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
        return text.cast(pa.binary())
    return pa.array(list(map(_dump, values.tolist())), pa.binary())


def triple(a: Array, b: Array, c: Array) -> pa.Array:
    """`[a,b,c]` per row, as JSON text."""
    return _join(b"[", texts(a), b",", texts(b), b",", texts(c), b"]", b"")


def join_present(parts: Sequence[pa.Array], separator: bytes) -> pa.Array:
    """Element-wise join of the non-null parts with `separator` ("" where all are null).

    pyarrow's own `null_handling="skip"` drops the rows where every part is null (pyarrow
    26), so each part carries its separator and the first one is cut off (as UTF-8:
    `binary_slice` fails on some arrays with empty values; the texts are JSON, so UTF-8).
    """
    led = [_join(separator, part, b"") for part in parts]
    whole = _join(*led, b"", null_handling="replace", null_replacement="").cast(pa.string())
    return pc.utf8_slice_codeunits(whole, len(separator)).cast(pa.binary())
