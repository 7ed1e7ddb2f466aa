"""Typed access to the fields of one YAML mapping, reporting each misuse where it is written.

Every getter returns `None` when the field is absent or unusable; a problem is recorded
for unusable values, so callers only decide what an absent field means.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from features.durations import parse_duration
from features.errors import DurationError
from features.model import did_you_mean
from features.yaml_source import FileProblems, Pos, item_pos, key_pos, node_pos, value_pos

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
NAME_RULE = "use letters, digits and underscores, starting with a letter"
_ZERO_DURATION = re.compile(r"^0[smhd]$")


def suggest(name: str, candidates: Sequence[str]) -> str:
    """A "did you mean" suffix for `name`, or the list of valid choices when none is close.

    >>> suggest("windw", ["window", "granularity"])
    " (did you mean 'window'?)"
    >>> suggest("x", ["ge", "le"])
    ' (expected one of: ge, le)'
    """
    return did_you_mean(name, candidates) or f" (expected one of: {', '.join(candidates)})"


def describe(value: Any) -> str:
    """A value as a user would recognise it in a message: its YAML type and content."""
    if value is None:
        return "null"
    if isinstance(value, CommentedMap):
        return "a mapping"
    if isinstance(value, CommentedSeq):
        return "a list"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {int(value)}"
    if isinstance(value, float):
        return f"number {float(value)}"
    if isinstance(value, str):
        return f"string {str(value)!r}"
    return f"{type(value).__name__} {value!s}"


class Fields:
    """The fields of one mapping (`node`) describing `what` (e.g. "source 'transactions'")."""

    def __init__(self, out: FileProblems, node: CommentedMap, what: str) -> None:
        self.out = out
        self.node = node
        self.what = what

    def has(self, key: str) -> bool:
        """Whether the field is written (a null value counts as written)."""
        return key in self.node

    def key_pos(self, key: str) -> Pos:
        """Where the field's key is written (the mapping's start if absent)."""
        return key_pos(self.node, key) if key in self.node else node_pos(self.node)

    def pos(self, key: str) -> Pos:
        """Where the field's value is written (the mapping's start if absent)."""
        return value_pos(self.node, key) if key in self.node else node_pos(self.node)

    def problem(self, pos: Pos, message: str) -> None:
        """Record a problem about this mapping, prefixed with what it describes."""
        self.out.add(pos, f"{self.what}: {message}")

    def check_keys(self, allowed: Sequence[str], required: Sequence[str]) -> None:
        """Report unknown fields (with a suggestion) and missing required ones."""
        for key in self.node:
            if not isinstance(key, str) or key not in allowed:
                hint = suggest(str(key), allowed)
                self.problem(key_pos(self.node, key), f"unknown field {key!r}{hint}")
        for key in required:
            if key not in self.node:
                self.problem(node_pos(self.node), f"missing required field {key!r}")

    def wrong_type(self, key: str, expected: str) -> None:
        """Report that field `key` does not hold a value of the `expected` kind."""
        value = self.node[key]
        self.problem(self.pos(key), f"field {key!r} must be {expected}, got {describe(value)}")

    def string(self, key: str) -> str | None:
        """A non-empty string field."""
        if key not in self.node:
            return None
        value = self.node[key]
        if not isinstance(value, str) or not value.strip():
            self.wrong_type(key, "a non-empty string")
            return None
        return str(value)

    def name(self, key: str) -> str | None:
        """A name field (entities, sources, views, features, columns): an identifier."""
        value = self.string(key)
        if value is not None and not NAME_PATTERN.match(value):
            self.problem(self.pos(key), f"invalid name {value!r} in field {key!r}: {NAME_RULE}")
            return None
        return value

    def names(self, key: str) -> tuple[str, ...] | None:
        """A non-empty list of distinct names; a single name is taken as a list of one."""
        if key not in self.node:
            return None
        value = self.node[key]
        if isinstance(value, str):
            return (value,) if self.name(key) is not None else None
        if not isinstance(value, CommentedSeq) or not value:
            self.wrong_type(key, "a name or a non-empty list of names")
            return None
        out: list[str] = []
        ok = True
        for i, item in enumerate(value):
            pos = item_pos(value, i)
            if not isinstance(item, str) or not NAME_PATTERN.match(item):
                ok = False
                self.problem(pos, f"invalid name {describe(item)} in {key!r}: {NAME_RULE}")
            elif item in out:
                ok = False
                self.problem(pos, f"{item!r} appears twice in {key!r}")
            else:
                out.append(str(item))
        return tuple(out) if ok else None

    def boolean(self, key: str) -> bool | None:
        """A boolean field (`true`/`false`)."""
        if key not in self.node:
            return None
        value = self.node[key]
        if not isinstance(value, bool):
            self.wrong_type(key, "true or false")
            return None
        return value

    def integer(self, key: str) -> int | None:
        """An integer field (booleans are not integers here)."""
        if key not in self.node:
            return None
        value = self.node[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.wrong_type(key, "an integer")
            return None
        return int(value)

    def duration(self, key: str, *, allow_zero: bool = False) -> int | None:
        """A duration field (`90s`, `15m`, `1h`, `7d`) in microseconds."""
        if key not in self.node:
            return None
        value = self.node[key]
        if allow_zero and isinstance(value, str) and _ZERO_DURATION.match(value.strip()):
            return 0
        try:
            return parse_duration(value)
        except DurationError:
            self.problem(
                self.pos(key),
                f"invalid duration {describe(value)} for {key!r}: "
                "expected <int><unit> with unit s, m, h or d (e.g. 15m, 24h, 7d)",
            )
            return None

    def mapping(self, key: str) -> CommentedMap | None:
        """A mapping field."""
        if key not in self.node:
            return None
        value = self.node[key]
        if not isinstance(value, CommentedMap):
            self.wrong_type(key, "a mapping")
            return None
        return value

    def items(self, key: str) -> CommentedSeq | None:
        """A list field."""
        if key not in self.node:
            return None
        value = self.node[key]
        if not isinstance(value, CommentedSeq):
            self.wrong_type(key, "a list")
            return None
        return value
