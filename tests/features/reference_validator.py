"""A plain-Python, one-event-at-a-time validator: the reference the batch validator must equal.

Written straight from SPEC §2/§3 and the coercion rules (int accepted for float, bool is
not a number, NaN is null, timestamps are ISO-8601 strings or epoch milliseconds), with
no Arrow, pandas or pandera.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from features.durations import to_us
from features.model import Column, Source

INT64 = (-(2**63), 2**63 - 1)


@dataclass
class Verdict:
    """What the reference says about one payload."""

    flagged: list[str] = field(default_factory=list)  # columns (or "payload") with a problem
    row: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    correlation_id: str | None = None


def reference(source: Source, payload: Any) -> Verdict:
    """Validate one payload; `row` is set only when the event is accepted."""
    obj = payload
    if isinstance(payload, bytes | str):
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return Verdict(["payload"])
    if not isinstance(obj, dict):
        return Verdict(["payload"])
    verdict = Verdict()
    row: dict[str, Any] = {}
    for column in source.schema:
        ok, value = _typed(column, obj.get(column.name))
        if not ok:
            verdict.flagged.append(column.name)
            continue
        if value is None:
            if not column.nullable:
                verdict.flagged.append(column.name)
            row[column.name] = None
            continue
        if not _checks_pass(column, value):
            verdict.flagged.append(column.name)
        row[column.name] = value
    cid = obj.get("correlation_id")
    if cid is not None and not isinstance(cid, str):
        verdict.flagged.append("correlation_id")
    verdict.correlation_id = cid if isinstance(cid, str) else None
    if not verdict.flagged:
        verdict.row = row
        names = {c.name for c in source.schema} | {"correlation_id"}
        verdict.extra = {k: v for k, v in obj.items() if k not in names}
    return verdict


def _typed(column: Column, value: Any) -> tuple[bool, Any]:
    """(fits the dtype, the typed value); `None` stands for null."""
    if value is None:
        return True, None
    dtype = column.dtype
    if dtype == "string":
        return isinstance(value, str), value
    if dtype == "bool":
        return isinstance(value, bool), value
    if isinstance(value, bool):
        return False, None
    if dtype == "int":
        return isinstance(value, int) and INT64[0] <= value <= INT64[1], value
    if dtype == "float":
        if not isinstance(value, int | float):
            return False, None
        try:
            number = float(value)
        except OverflowError:
            return False, None
        return True, None if math.isnan(number) else number
    # timestamp
    if isinstance(value, float) and not math.isfinite(value):
        return False, None
    if not isinstance(value, str | int | float | datetime):
        return False, None
    try:
        us = to_us(value)
    except (ValueError, TypeError, OverflowError):
        return False, None
    return INT64[0] <= us <= INT64[1], us


def _checks_pass(column: Column, value: Any) -> bool:
    c = column.checks
    tests = [
        c.ge is None or value >= c.ge,
        c.gt is None or value > c.gt,
        c.le is None or value <= c.le,
        c.lt is None or value < c.lt,
        c.isin is None or value in c.isin,
        c.notin is None or value not in c.notin,
        c.str_length_min is None or len(value) >= c.str_length_min,
        c.str_length_max is None or len(value) <= c.str_length_max,
        c.regex is None or re.match(c.regex, value) is not None,
    ]
    return all(tests)
