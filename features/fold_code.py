"""A view's tile fold compiled to straight-line Python (the stream's innermost loop).

Folding one event loops over the view's tile sizes and their features; with a few
features per view that loop costs more than the updates it calls. `compile_fold` writes
the loop out once per view, like `dataclasses` and `namedtuple` generate their methods: the
same `Aggregation.update`/`empty` calls in the same order, so the semantics stay in
`features.aggregations` and the property tests of `features.tiles` hold for it.

>>> from features.aggregations import aggregation
>>> fold = compile_fold(((60, (("n", None, aggregation("count").update,
...                                  aggregation("count").empty),)),))
>>> tiles, changed = {}, set()
>>> fold(tiles, 125, "e1", {}, changed)
>>> tiles, changed
({(60, 120): {'n': 1}}, {(60, 120)})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

FoldPlan = Sequence[tuple[int, Sequence[tuple[str, str | None, Any, Any]]]]
Fold = Callable[[dict[Any, dict[str, Any]], int, Any, Mapping[str, Any], set[Any]], None]


def compile_fold(plan: FoldPlan) -> Fold:
    """`fold(tiles, ts, eid, row, changed)` for a plan of `(g, [(name, column, update, empty)])`.

    A tile is created and marked changed only when some feature of its size has a value:
    a feature without a column always has one; a null column value is skipped.
    """
    lines = ["def fold(tiles, ts, eid, row, changed):"]
    env: dict[str, Any] = {}
    for gi, (g, feats) in enumerate(plan):
        columns = list(dict.fromkeys(c for _, c, _, _ in feats if c is not None))
        lines += [
            f"    k = ({int(g)}, ts - ts % {int(g)})",
            "    t = tiles.get(k)",
            "    new = t is None",
            "    if new:",
            "        t = {}",
        ]
        lines += [f"    v{ci} = row.get({c!r})" for ci, c in enumerate(columns)]
        for fi, (name, column, update, empty) in enumerate(feats):
            u, e = f"u{gi}_{fi}", f"e{gi}_{fi}"
            env[u], env[e] = update, empty
            value = "True" if column is None else f"v{columns.index(column)}"
            state = f"{e}() if p is None else p"
            body = f"p = t.get({name!r}); t[{name!r}] = {u}({state}, {value}, ts, eid)"
            lines.append(f"    {body}" if column is None else f"    if {value} is not None: {body}")
        if any(c is None for _, c, _, _ in feats) or not columns:
            lines += ["    if new:", "        tiles[k] = t", "    changed.add(k)"]
        else:
            some = " or ".join(f"v{ci} is not None" for ci in range(len(columns)))
            lines += [
                f"    if {some}:",
                "        if new:",
                "            tiles[k] = t",
                "        changed.add(k)",
            ]
    if len(lines) == 1:
        lines.append("    return None")
    exec("\n".join(lines), env)  # noqa: S102 - our own generated code; names are validated
    fold: Fold = env["fold"]
    return fold
