"""Raw event payloads to dicts: JSON text decoded a batch at a time, dicts taken as given.

A payload that is not a JSON object is rejected here with its reason; the schema checks
(`features.schema`) then run over the objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True)
class Rejected:
    """One event that failed validation, with every reason (for the dead-letter stream)."""

    index: int
    payload: Any
    reasons: list[str]
    correlation_id: str | None


def json_objects(payloads: Sequence[Any]) -> list[dict[str, Any]] | None:
    """Every payload decoded, if each is JSON text of an object (the common batch); else
    None."""
    try:  # any payload orjson does not take (a dict, None) raises as invalid JSON does
        objs = list(map(orjson.loads, payloads))
    except orjson.JSONDecodeError:
        return None
    return objs if set(map(type, objs)) <= {dict} else None


def parse_each(
    payloads: Sequence[Any],
) -> tuple[list[dict[str, Any]], list[int], list[Rejected], bool]:
    """Decode a batch that is not all JSON objects (`json_objects` gave None): the
    caller's dicts as they are if all are dicts, else each payload on its own, one that is
    not a JSON object rejected. Also tells whether the dicts are this call's own."""
    if set(map(type, payloads)) <= {dict}:
        return list(payloads), list(range(len(payloads))), [], False
    objs, index, rejected = [], [], []
    for i, payload in enumerate(payloads):
        obj: Any = payload
        if isinstance(payload, bytes | bytearray | memoryview | str):
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                rejected.append(Rejected(i, payload, [f"not valid JSON: {exc}"], None))
                continue
        if isinstance(obj, Mapping) and all(isinstance(k, str) for k in obj):
            objs.append(dict(obj))
            index.append(i)
        else:
            rejected.append(Rejected(i, payload, ["not a JSON object"], None))
    return objs, index, rejected, True
