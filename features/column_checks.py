"""Schema columns of a source: dtype, nullability and value checks, each fitted to the dtype.

A check that cannot apply to its column's dtype (`regex` on an int, `ge` on a string) or
whose argument has the wrong type is reported where it is written. Bounds and `isin`
values of a timestamp column are stored as µs since the epoch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from features.durations import to_us
from features.model import CHECK_NAMES, DTYPES, NUMERIC_DTYPES, Checks, Column
from features.yaml_fields import Fields, describe, suggest
from features.yaml_source import FileProblems, Pos, item_pos, key_pos

COLUMN_FIELDS = ("dtype", "nullable", "checks")
BOUND_CHECKS = ("ge", "gt", "le", "lt")
_EXPECTED = {
    "string": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "timestamp": "an ISO-8601 timestamp or epoch milliseconds",
}


@dataclass(frozen=True)
class ColumnDraft:
    """What was read of one column; `dtype` is `None` when missing or unknown."""

    name: str
    dtype: str | None
    nullable: bool
    pos: Pos
    column: Column | None


def read_column(out: FileProblems, source: str, name: str, node: Any, pos: Pos) -> ColumnDraft:
    """Read the spec of column `name` of `source`, written at `pos`."""
    what = f"column {name!r} of source {source!r}"
    if not isinstance(node, CommentedMap):
        out.add(pos, f"{what}: must be a mapping like {{dtype: string}}, got {describe(node)}")
        return ColumnDraft(name, None, False, pos, None)
    fields = Fields(out, node, what)
    before = len(out.problems)
    fields.check_keys(COLUMN_FIELDS, ("dtype",))
    dtype = fields.string("dtype")
    if dtype is not None and dtype not in DTYPES:
        fields.problem(
            fields.pos("dtype"),
            f"unknown dtype {dtype!r}{suggest(dtype, DTYPES)}",
        )
        dtype = None
    nullable = fields.boolean("nullable") or False
    checks_node = fields.mapping("checks")
    checks = _read_checks(fields, checks_node, dtype) if checks_node is not None else Checks()
    if len(out.problems) > before or dtype is None:
        return ColumnDraft(name, dtype, nullable, pos, None)
    return ColumnDraft(name, dtype, nullable, pos, Column(name, dtype, nullable, checks))


def _read_checks(column: Fields, node: CommentedMap, dtype: str | None) -> Checks:
    """The checks mapping of a column; problems go to `column`'s file."""
    fields = Fields(column.out, node, column.what)
    values: dict[str, Any] = {}
    for key in node:
        if not isinstance(key, str) or key not in CHECK_NAMES:
            hint = suggest(str(key), CHECK_NAMES)
            fields.problem(key_pos(node, key), f"unknown check {key!r}{hint}")
        elif dtype is not None:
            values[key] = _read_check(fields, key, dtype)
    length = values.pop("str_length", None) or (None, None)
    return Checks(**values, str_length_min=length[0], str_length_max=length[1])


def _read_check(fields: Fields, key: str, dtype: str) -> Any:
    """One check's argument, converted for the model, or `None` after a problem."""
    value, pos = fields.node[key], fields.pos(key)
    if key in BOUND_CHECKS:
        if dtype not in NUMERIC_DTYPES and dtype != "timestamp":
            fields.problem(
                fields.key_pos(key),
                f"check {key!r} needs an int, float or timestamp column, not {dtype}",
            )
            return None
        return _typed_value(fields, pos, value, dtype, f"check {key!r}")
    if key in ("isin", "notin"):
        if not isinstance(value, CommentedSeq):
            fields.wrong_type(key, "a list")
            return None
        if key == "isin" and not value:
            fields.problem(pos, "check 'isin' must list at least one value")
            return None
        typed = [
            _typed_value(fields, item_pos(value, i), item, dtype, f"check {key!r}")
            for i, item in enumerate(value)
        ]
        return None if any(v is None for v in typed) else tuple(typed)
    if dtype != "string":
        fields.problem(fields.key_pos(key), f"check {key!r} needs a string column, not {dtype}")
        return None
    if key == "regex":
        return _read_regex(fields, value, pos)
    return _read_str_length(fields, value, pos)


def _typed_value(fields: Fields, pos: Pos, value: Any, dtype: str, where: str) -> Any:
    """A check argument of the column's dtype (timestamps as µs), or `None` after a problem."""
    ok = False
    out: Any = None
    if dtype == "string":
        ok, out = isinstance(value, str), str(value)
    elif dtype == "bool":
        ok, out = isinstance(value, bool), value
    elif isinstance(value, bool) or isinstance(value, CommentedMap | CommentedSeq):
        ok = False
    elif dtype == "int":
        ok = isinstance(value, int)
        out = int(value) if ok else None
    elif dtype == "float":
        ok = isinstance(value, int | float)
        out = float(value) if isinstance(value, float) else int(value) if ok else None
    else:  # timestamp
        try:
            out, ok = to_us(value), True
        except (ValueError, TypeError, OverflowError):
            ok = False
    if not ok:
        fields.problem(
            pos, f"{where} needs {_EXPECTED[dtype]} (the column is {dtype}), got {describe(value)}"
        )
        return None
    return out


def _read_regex(fields: Fields, value: Any, pos: Pos) -> str | None:
    """A regular expression that compiles."""
    if not isinstance(value, str):
        fields.wrong_type("regex", "a regular expression string")
        return None
    try:
        re.compile(value)
    except re.error as exc:
        fields.problem(pos, f"check 'regex' {value!r} does not compile: {exc}")
        return None
    return str(value)


def _read_str_length(fields: Fields, value: Any, pos: Pos) -> tuple[int | None, int | None] | None:
    """`{min, max}` with non-negative integers, at least one given, min <= max."""
    if not isinstance(value, CommentedMap):
        fields.wrong_type("str_length", "a mapping like {min: 1, max: 64}")
        return None
    sub = Fields(fields.out, value, f"{fields.what}: check 'str_length'")
    before = len(fields.out.problems)
    sub.check_keys(("min", "max"), ())
    bounds = {k: sub.integer(k) for k in ("min", "max")}
    for k, v in bounds.items():
        if v is not None and v < 0:
            sub.problem(sub.pos(k), f"{k!r} must be at least 0, got {v}")
    low, high = bounds["min"], bounds["max"]
    if low is None and high is None and len(fields.out.problems) == before:
        fields.problem(pos, "check 'str_length' needs 'min', 'max' or both")
    elif low is not None and high is not None and low > high:
        sub.problem(sub.pos("min"), f"'min' ({low}) is greater than 'max' ({high})")
    if len(fields.out.problems) > before:
        return None
    return (low, high)
