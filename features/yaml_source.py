"""Reading one definition file with positions, so every problem can say `path:line:column`.

ruamel.yaml's round-trip loader keeps the 0-based line/column of every key, value and
list item (`.lc`); this module turns them into 1-based positions and collects problems.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from features.errors import Problem

Pos = tuple[int, int]  # 1-based (line, column)
START: Pos = (1, 1)


@dataclass
class FileProblems:
    """The problems found in one file; every check reports through `add`."""

    path: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, pos: Pos, message: str) -> None:
        """Record a problem at `pos` (1-based line and column)."""
        self.problems.append(Problem(self.path, pos[0], pos[1], message))


def read_yaml(path: Path, display: str, out: FileProblems) -> Any:
    """The round-trip parsed document of `path`, or `None` after recording a problem.

    `display` is the path as the user should see it in messages.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        out.add(START, f"cannot read definition file {display}: {exc}")
        return None
    try:
        with warnings.catch_warnings():  # e.g. a reused anchor: legal YAML, not our concern
            warnings.simplefilter("ignore")
            return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = (mark.line + 1, mark.column + 1) if mark is not None else START
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        out.add(pos, f"YAML syntax error: {what}")
    except YAMLError as exc:
        out.add(START, f"YAML syntax error: {exc}")
    return None


def node_pos(node: Any, default: Pos = START) -> Pos:
    """Where a mapping or list starts, or `default` for plain scalars."""
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return default
    return (lc.line + 1, lc.col + 1)


def key_pos(node: CommentedMap, key: str) -> Pos:
    """Where `key` is written in a mapping (the mapping's start for merged keys)."""
    try:
        line, col = node.lc.key(key)
    except (KeyError, TypeError, AttributeError):
        return node_pos(node)
    return (line + 1, col + 1)


def value_pos(node: CommentedMap, key: str) -> Pos:
    """Where the value of `key` is written in a mapping."""
    try:
        line, col = node.lc.value(key)
    except (KeyError, TypeError, AttributeError):
        return key_pos(node, key)
    return (line + 1, col + 1)


def item_pos(node: CommentedSeq, index: int) -> Pos:
    """Where item `index` of a list is written."""
    try:
        line, col = node.lc.item(index)
    except (KeyError, TypeError, AttributeError, IndexError):
        return node_pos(node)
    return (line + 1, col + 1)


def is_mapping(value: Any) -> bool:
    """Whether a parsed value is a YAML mapping."""
    return isinstance(value, CommentedMap)


def is_list(value: Any) -> bool:
    """Whether a parsed value is a YAML list."""
    return isinstance(value, CommentedSeq)
