"""SPEC §4 as DuckDB SQL: point-in-time feature values for every row of a spine.

This is the one vectorized re-expression of `features.tiles` and `features.aggregations`,
held equal to them by property tests. The value as of T aggregates the events of the
entity with `ceil_g(T - window) <= event_time <= T` (and `_ingested_at <= T` in
`known_time` mode). Features of views sharing a source and join keys are computed by one
range join of the spine with the deduplicated log: the join takes the widest window and
each aggregate keeps its own window with a `FILTER`. `first`/`last`/`last_n` order by
`(event_time, event_id)`; nulls are skipped; an empty window gives 0 for `count`/`sum` and
null otherwise.
"""

# ruff: noqa: S608 - SQL is built here on purpose; names and strings go through ident()/literal()

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from features.errors import ValidationError
from features.model import Definitions, Feature, FeatureRef, Source
from features.tiles import ceil_to
from pipelines.offline.log import DUCK_TYPES, EID, TS, LogScan, ident
from pipelines.offline.log import INGESTED as ING
from pipelines.offline.spine import ROW, SPINE, TIME

Mode = Literal["event_time", "known_time"]
MODES: tuple[str, ...] = ("event_time", "known_time")
NEAREST = ("first", "last")  # functions an ASOF join can answer


def check_mode(mode: str) -> Mode:
    """The mode, or a `ValidationError` naming the accepted ones."""
    if mode not in MODES:
        msg = f"unknown point-in-time mode {mode!r}; expected one of {', '.join(MODES)}"
        raise ValidationError(msg)
    return mode  # type: ignore[return-value]


def ceil_sql(expr: str, g: int) -> str:
    """SQL for `features.tiles.ceil_to(expr, g)` (DuckDB's `%` truncates toward zero)."""
    return f"(({expr}) + ((((-({expr})) % {g}) + {g}) % {g}))"


def aggregate_sql(feature: Feature, dtype: str | None, window_ok: str) -> str:
    """The aggregate of one feature over the joined events `e` (SPEC §4 empty-window rules).

    `window_ok` is the SQL condition that an event lies in the feature's window.
    """
    col = f"e.{ident(feature.column)}" if feature.column else None
    order = f"{{'t': e.{TS}, 'e': e.{EID}}}"
    present = f"{window_ok} AND {col} IS NOT NULL"
    fn = feature.function
    if fn == "count":
        return f"count({col or 'e.' + TS}) FILTER (WHERE {window_ok})"
    if col is None:
        msg = f"feature {feature.name!r}: {fn} needs a column"
        raise ValidationError(msg)
    if fn == "sum":
        total = f"coalesce(sum({col}) FILTER (WHERE {window_ok}), 0)"
        return f"CAST({total} AS {'BIGINT' if dtype == 'int' else 'DOUBLE'})"
    simple = {"mean": "avg", "min": "min", "max": "max", "stddev": "stddev_samp"}
    if fn in simple:
        return f"{simple[fn]}({col}) FILTER (WHERE {window_ok})"
    if fn == "first":
        return f"arg_min({col}, {order}) FILTER (WHERE {present})"
    if fn == "last":
        return f"arg_max({col}, {order}) FILTER (WHERE {present})"
    if fn == "last_n":
        values = f"max_by({col}, {order}, {int(feature.n or 1)}) FILTER (WHERE {present})"
        return f"CASE WHEN len({values}) > 0 THEN {values} END"
    msg = f"feature {feature.name!r}: unknown function {fn!r}"
    raise ValidationError(msg)


@dataclass(frozen=True)
class Target:
    """One requested feature with what its SQL needs."""

    ref: FeatureRef
    feature: Feature
    dtype: str | None  # dtype of its column (None for a count of events)

    @property
    def out(self) -> str:
        """The output column name: `view:feature`, as in API responses."""
        return str(self.ref)


@dataclass(frozen=True)
class Group:
    """Requested features computed from one source for one tuple of join keys."""

    source: Source
    join_keys: tuple[str, ...]
    targets: tuple[Target, ...]

    @property
    def windows(self) -> tuple[tuple[int, int], ...]:
        """The distinct `(window, granularity)` pairs, in first-use order."""
        return tuple(dict.fromkeys((t.feature.window, t.feature.granularity) for t in self.targets))

    @property
    def columns(self) -> tuple[str, ...]:
        """The log columns the group reads: join keys, then feature columns."""
        cols = [*self.join_keys, *(t.feature.column for t in self.targets if t.feature.column)]
        return tuple(dict.fromkeys(cols))


def plan_groups(defs: Definitions, refs: Sequence[str]) -> list[Group]:
    """Resolve `view:feature` references and group them by (source, join keys)."""
    groups: dict[tuple[str, tuple[str, ...]], list[Target]] = {}
    for ref in defs.resolve(refs):
        view = defs.view(ref.view)
        feature = view.feature(ref.feature)
        source = defs.source(view.source)
        dtype = source.columns[feature.column].dtype if feature.column else None
        key = (source.name, defs.join_keys(view.name))
        groups.setdefault(key, []).append(Target(ref, feature, dtype))
    return [Group(defs.source(s), keys, tuple(ts)) for (s, keys), ts in groups.items()]


def required_keys(defs: Definitions, groups: Sequence[Group]) -> list[tuple[str, str]]:
    """Spine columns every group needs: `(join key, the views needing it)`."""
    needs: dict[str, list[str]] = {}
    for group in groups:
        for key in group.join_keys:
            for target in group.targets:
                views = needs.setdefault(key, [])
                if target.ref.view not in views:
                    views.append(target.ref.view)
    return [(k, "join key of " + ", ".join(views)) for k, views in needs.items()]


def string_keys(groups: Sequence[Group]) -> list[str]:
    """Join keys whose log dtype is `string` (a CSV reader must keep them as text)."""
    return sorted({k for g in groups for k in g.join_keys if g.source.columns[k].dtype == "string"})


class PointInTimeQuery:
    """Builds the SQL giving, for every `__spine` row, its `view:feature` values in order."""

    def __init__(
        self, defs: Definitions, refs: Sequence[str], root: Path, mode: str = "event_time"
    ) -> None:
        self.defs = defs
        self.root = Path(root)
        self.mode = check_mode(mode)
        self.groups = plan_groups(defs, refs)
        self.targets = [t for g in self.groups for t in g.targets]
        order = {str(r): i for i, r in enumerate(defs.resolve(refs))}
        self.outputs = sorted((t.out for t in self.targets), key=order.__getitem__)

    def uses_asof(self, target: Target, group: Group) -> bool:
        """Whether `first`/`last` takes an ASOF join instead of riding on the range join.

        The nearest event at or before T (`last`), or at or after the window start (`first`),
        per key; events sharing a time are collapsed first with the event-id tie-break. Worth
        it when the feature's window is wider than every other feature's of the group (the
        range join would have to widen for it), and only in `event_time` mode: `known_time`
        adds a second inequality (ingest time) that ASOF cannot express.
        """
        if self.mode != "event_time" or target.feature.function not in NEAREST:
            return False
        others = [t.feature.window for t in group.targets if t.feature.function not in NEAREST]
        return target.feature.window > max(others, default=0)

    def group_sql(
        self, con: Any, index: int, group: Group, t_min: int, t_max: int
    ) -> tuple[list[str], list[str]]:
        """The CTEs of one group and the names of those holding `__rn` + feature columns."""
        windows = group.windows
        lows = [f"{ceil_sql(f'{TIME} - {w}', g)} AS __lo{i}" for i, (w, g) in enumerate(windows)]
        keys = [
            f"TRY_CAST({ident(k)} AS {DUCK_TYPES[group.source.columns[k].dtype]}) AS {ident(k)}"
            for k in group.join_keys
        ]
        spine = f"SELECT {ROW}, {TIME}, {', '.join(keys + lows)} FROM {SPINE}"
        semi = " AND ".join(f"k.{ident(k)} = {ident(k)}" for k in group.join_keys)
        key_list = ", ".join(ident(k) for k in group.join_keys)
        only_spine_keys = (
            f"EXISTS (SELECT 1 FROM (SELECT DISTINCT {key_list} FROM s{index}) k WHERE {semi})"
        )
        earliest = min(ceil_to(t_min - w, g) for w, g in windows)
        log = LogScan(self.root, group.source).sql(
            group.columns, ts_from=earliest, ts_to=t_max, con=con
        )
        ctes = [
            f"s{index} AS ({spine})",
            f"e{index} AS (SELECT * FROM ({log}) WHERE {only_spine_keys})",
        ]
        names = []
        ranged = [t for t in group.targets if not self.uses_asof(t, group)]
        if ranged:
            used = sorted(
                {windows.index((t.feature.window, t.feature.granularity)) for t in ranged}
            )
            on = [f"e.{ident(k)} = s.{ident(k)}" for k in group.join_keys]
            on.append(f"e.{TS} <= s.{TIME}")
            on.append(f"e.{TS} >= least({', '.join(f's.__lo{i}' for i in used)})")
            if self.mode == "known_time":
                on.append(f"e.{ING} <= s.{TIME}")
            aggs = []
            for t in ranged:
                i = windows.index((t.feature.window, t.feature.granularity))
                window_ok = f"e.{TS} >= s.__lo{i}"
                aggs.append(f"{aggregate_sql(t.feature, t.dtype, window_ok)} AS {ident(t.out)}")
            ctes.append(
                f"g{index} AS (SELECT s.{ROW}, {', '.join(aggs)} FROM s{index} s"
                f" LEFT JOIN e{index} e ON {' AND '.join(on)} GROUP BY s.{ROW})"
            )
            names.append(f"g{index}")
        nearest: dict[tuple[str, str, int | None], list[Target]] = {}
        for t in group.targets:
            if self.uses_asof(t, group):
                i = windows.index((t.feature.window, t.feature.granularity))
                column = t.feature.column or ""
                slot = (t.feature.function, column, i if t.feature.function == "first" else None)
                nearest.setdefault(slot, []).append(t)
        for j, ((fn, column, lo), targets) in enumerate(nearest.items()):
            name = f"a{index}_{j}"
            pick = "arg_max" if fn == "last" else "arg_min"
            col = ident(column)
            ctes.append(
                f"{name}_e AS (SELECT {key_list}, {TS}, {pick}({col}, {EID}) AS __v"
                f" FROM e{index} WHERE {col} IS NOT NULL GROUP BY {key_list}, {TS})"
            )
            match = " AND ".join(f"x.{ident(k)} = s.{ident(k)}" for k in group.join_keys)
            bound = f"x.{TS} <= s.{TIME}" if fn == "last" else f"x.{TS} >= s.__lo{lo}"
            outs = []
            for t in targets:
                i = windows.index((t.feature.window, t.feature.granularity))
                inside = f"x.{TS} >= s.__lo{i}" if fn == "last" else f"x.{TS} <= s.{TIME}"
                outs.append(f"CASE WHEN {inside} THEN x.__v END AS {ident(t.out)}")
            ctes.append(
                f"{name} AS (SELECT s.{ROW}, {', '.join(outs)} FROM s{index} s"
                f" ASOF LEFT JOIN {name}_e x ON {match} AND {bound})"
            )
            names.append(name)
        return ctes, names

    def sql(self, con: Any, t_min: int, t_max: int, spine_columns: Sequence[str]) -> str:
        """The full query: the spine's own columns, then the features, in spine order."""
        clash = [c for c in self.outputs if c in spine_columns]
        if clash:
            msg = f"the spine already has column(s) {', '.join(map(repr, clash))}; rename them"
            raise ValidationError(msg)
        ctes: list[str] = []
        parts: list[str] = []
        for i, group in enumerate(self.groups):
            group_ctes, names = self.group_sql(con, i, group, t_min, t_max)
            ctes += group_ctes
            parts += names
        joins = " ".join(f"JOIN {name} USING ({ROW})" for name in parts)
        own = ", ".join(f"{SPINE}.{ident(c)}" for c in spine_columns)
        outs = ", ".join(ident(o) for o in self.outputs)
        return (
            f"WITH {', '.join(ctes)} SELECT {own}, {outs} FROM {SPINE} {joins}"
            f" ORDER BY {SPINE}.{ROW}"
        )


def connect(memory_limit: str = "2GB", threads: int | None = None, temp_dir: Any = None) -> Any:
    """A DuckDB connection for the engine: UTC, bounded memory, spilling to `temp_dir`."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = true")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = '{str(temp_dir).replace(chr(39), chr(39) * 2)}'")
    return con
