"""Time tiles: how an entity's events are kept so any feature can be evaluated (SPEC §4).

Per entity and view, events are folded into tiles `(g, tile_start)` holding one partial
state per feature of tile size `g`. The value as of T aggregates the tiles with
`T - window <= tile_start <= T`. Events later than the writer's clock ("future" events)
stay raw in `pending` until the clock passes them, so the tiles never hold an event later
than `folded_until`: evaluation is exact for every `T >= folded_until`, which is always
the case for online reads (T = now).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from features.aggregations import (
    Aggregation,
    State,
    aggregation,
)
from features.durations import parse_duration
from features.fold_code import compile_fold
from features.merging import PLAIN_STATES, merge_all
from features.model import Feature, FeatureView

GRANULARITY_LADDER: tuple[int, ...] = tuple(
    parse_duration(d) for d in ("1d", "1h", "15m", "5m", "1m", "10s", "1s")
)
TileKey = tuple[int, int]  # (granularity µs, tile start µs)
MIN_TS = -(2**62)


def default_granularity(window: int) -> int:
    """The largest of 1s…1d that is at most `window / 48` and divides `window`, else 1s.

    >>> default_granularity(parse_duration("1h")) == parse_duration("1m")
    True
    >>> default_granularity(parse_duration("7d")) == parse_duration("1h")
    True
    >>> default_granularity(parse_duration("90s")) == parse_duration("1s")
    True
    """
    for g in GRANULARITY_LADDER:
        if g * 48 <= window and window % g == 0:
            return g
    return GRANULARITY_LADDER[-1]


def tile_start(ts: int, g: int) -> int:
    """Start of the tile of size `g` holding `ts` (floor, also for negative times).

    >>> tile_start(125, 60), tile_start(-1, 60)
    (120, -60)
    """
    return ts - ts % g


def ceil_to(ts: int, g: int) -> int:
    """Round `ts` up to a multiple of `g`.

    >>> ceil_to(121, 60), ceil_to(120, 60)
    (180, 120)
    """
    return -((-ts) // g) * g


def in_window(ts: int, as_of: int, window: int, g: int) -> bool:
    """Whether an event at `ts` counts for a feature as of `as_of` (SPEC §4).

    >>> in_window(100, 100, 60, 10), in_window(101, 100, 60, 10), in_window(39, 100, 60, 10)
    (True, False, False)
    """
    return ts <= as_of and tile_start(ts, g) >= as_of - window


@dataclass(frozen=True)
class CompiledFeature:
    """A feature with its aggregation resolved, ready for the hot path."""

    name: str
    column: str | None
    window: int
    granularity: int
    agg: Aggregation

    @classmethod
    def of(cls, feature: Feature) -> CompiledFeature:
        return cls(
            feature.name,
            feature.column,
            feature.window,
            feature.granularity,
            aggregation(feature.function, feature.n),
        )


@dataclass(frozen=True)
class EvalPlan:
    """How `ViewTiler.evaluate` reads one set of features (built once per feature set)."""

    feats: tuple[CompiledFeature, ...]
    names: tuple[str, ...]
    # (tile size, window, [(name, merge_all)]): features reading exactly the same tiles.
    groups: tuple[tuple[int, int, tuple[tuple[str, Callable[[list[State]], State]], ...]], ...]
    finalizers: tuple[tuple[str, Callable[[State], Any]], ...]  # all but the identities
    horizon: dict[int, int]  # the largest window per tile size


@dataclass(slots=True)
class EntityTiles:
    """The online state of one entity in one view.

    `tiles[(g, start)][feature]` is a partial state; `pending` holds raw
    `[ts, eid, {column: value}]` records later than the writer's clock; `max_ts` is the
    newest event time applied (freshness, `event_time` of a response, expiry).
    """

    tiles: dict[TileKey, dict[str, State]] = field(default_factory=dict)
    pending: list[list[Any]] = field(default_factory=list)
    max_ts: int | None = None
    folded_until: int = MIN_TS


class ViewTiler:
    """Applies events of one view to `EntityTiles` and evaluates its features.

    >>> from features.model import Feature, FeatureView
    >>> f = Feature("n_1h", "count", None, 3_600_000_000, 60_000_000)
    >>> tiler = ViewTiler(FeatureView("v", "user", "src", 3_600_000_000, (f,)))
    >>> state = EntityTiles()
    >>> _ = tiler.apply(state, 1_000_000, "e1", {}, now=10_000_000)
    >>> tiler.evaluate(state, 10_000_000)
    {'n_1h': 1}
    """

    def __init__(self, view: FeatureView) -> None:
        self.view = view
        self.features = tuple(CompiledFeature.of(f) for f in view.features)
        self.by_name = {f.name: f for f in self.features}
        self.columns = tuple(sorted({f.column for f in self.features if f.column}))
        # The largest window per tile size: a tile older than `now - horizon` is never read.
        self.horizon: dict[int, int] = {}
        for f in self.features:
            self.horizon[f.granularity] = max(self.horizon.get(f.granularity, 0), f.window)
        # The hot path's plan: per tile size, (name, column, update, empty) of its features,
        # so `_fold` looks each tile up once per tile size rather than once per feature.
        by_g: dict[int, list[tuple[str, str | None, Any, Any]]] = {}
        for f in self.features:
            by_g.setdefault(f.granularity, []).append((f.name, f.column, f.agg.update, f.agg.empty))
        self._fold_plan = tuple((g, tuple(fs)) for g, fs in by_g.items())
        self._fold_tiles = compile_fold(self._fold_plan)
        self._eval_plans: dict[tuple[str, ...] | None, EvalPlan] = {}

    def apply(
        self, state: EntityTiles, ts: int, eid: Any, row: Mapping[str, Any], now: int
    ) -> set[TileKey]:
        """Apply one accepted event; returns the tile keys it changed (empty if pending)."""
        changed: set[TileKey] = set()
        self.apply_into(state, ts, eid, row, now, changed)
        return changed

    def apply_into(
        self,
        state: EntityTiles,
        ts: int,
        eid: Any,
        row: Mapping[str, Any],
        now: int,
        changed: set[TileKey],
    ) -> None:
        """`apply`, adding the changed tile keys to `changed` (no set per event: hot path)."""
        max_ts = state.max_ts
        if max_ts is None or ts > max_ts:
            state.max_ts = ts
        if ts > now:
            state.pending.append([ts, eid, {c: row.get(c) for c in self.columns}])
            return
        self._fold_tiles(state.tiles, ts, eid, row, changed)
        if ts > state.folded_until:
            state.folded_until = ts

    def _fold(
        self,
        state: EntityTiles,
        ts: int,
        eid: Any,
        row: Mapping[str, Any],
        changed: set[TileKey],
    ) -> None:
        self._fold_tiles(state.tiles, ts, eid, row, changed)
        if ts > state.folded_until:
            state.folded_until = ts

    def fold_pending(self, state: EntityTiles, now: int) -> set[TileKey]:
        """Fold pending events whose time the clock has reached; returns changed tiles."""
        if not state.pending:
            return set()
        changed: set[TileKey] = set()
        keep: list[list[Any]] = []
        for rec in state.pending:
            if rec[0] <= now:
                self._fold(state, rec[0], rec[1], rec[2], changed)
            else:
                keep.append(rec)
        state.pending = keep
        return changed

    def prune(self, state: EntityTiles, now: int) -> set[TileKey]:
        """Drop tiles no feature can read at any `T >= now`; returns the dropped keys."""
        dropped = {
            key
            for key in state.tiles
            if key[0] not in self.horizon or key[1] < now - self.horizon[key[0]]
        }
        for key in dropped:
            del state.tiles[key]
        return dropped

    def prune_due(self, state: EntityTiles) -> int | None:
        """The earliest `now` at which `prune` drops one of the state's tiles (None: no tile).

        A writer that prunes only from then on skips the scans that would drop nothing.
        """
        horizon = self.horizon
        due = None
        for g, start in state.tiles:
            window = horizon.get(g)
            if window is None:
                return MIN_TS  # a tile size no feature reads: drop it at once
            at = start + window + 1
            if due is None or at < due:
                due = at
        return due

    def evaluate_feature(self, state: EntityTiles, name: str, as_of: int) -> Any:
        """The value of one feature as of `as_of` (exact when `as_of >= folded_until`).

        The reference definition: `evaluate` gives the same values, faster.
        """
        f = self.by_name[name]
        g, lo = f.granularity, as_of - f.window
        agg = f.agg
        acc = agg.empty()
        for (tg, start), tile in state.tiles.items():
            if tg == g and lo <= start <= as_of:
                part = tile.get(name)
                if part is not None:
                    acc = agg.merge(acc, part)
        for ts, eid, row in state.pending:
            if ts <= as_of and ts - ts % g >= lo:
                if f.column is None:
                    acc = agg.update(acc, True, ts, eid)
                elif row.get(f.column) is not None:
                    acc = agg.update(acc, row[f.column], ts, eid)
        return agg.finalize(acc)

    def evaluate(
        self, state: EntityTiles, as_of: int, names: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Values of the named features (all by default) as of `as_of`.

        The same values as `evaluate_feature` per name (each feature merges its tiles in
        tile order, then its pending events), with few Python calls: the online read path
        evaluates every requested feature of every entity. Features of one tile size and
        window share one scan of the tiles, and each merges its parts in one `merge_all`.
        """
        plan = self._plan(names)
        tiles = state.tiles.items()
        acc: dict[str, Any] = dict.fromkeys(plan.names)
        # Plain loops: a comprehension is a function call of its own (Python < 3.12).
        for g, window, group in plan.groups:
            lo = as_of - window
            read = []
            for (tg, start), tile in tiles:
                if tg == g and lo <= start <= as_of:
                    read.append(tile)
            for name, merged in group:
                parts = []
                for tile in read:
                    part = tile.get(name)
                    if part is not None:
                        parts.append(part)
                acc[name] = merged(parts)
        if state.pending:
            self._update_pending(state.pending, as_of, plan.feats, acc)
        for name, finalize in plan.finalizers:
            acc[name] = finalize(acc[name])
        return acc

    @staticmethod
    def _update_pending(
        pending: list[list[Any]],
        as_of: int,
        feats: tuple[CompiledFeature, ...],
        acc: dict[str, Any],
    ) -> None:
        """Fold the pending events at or before `as_of` into the merged states `acc`."""
        for ts, eid, row in pending:
            if ts > as_of:
                continue
            for f in feats:
                if ts - ts % f.granularity >= as_of - f.window:
                    if f.column is None:
                        acc[f.name] = f.agg.update(acc[f.name], True, ts, eid)
                    elif row.get(f.column) is not None:
                        acc[f.name] = f.agg.update(acc[f.name], row[f.column], ts, eid)

    def _plan(self, names: Iterable[str] | None) -> EvalPlan:
        """The evaluation plan of a feature list, built on first use."""
        key = None if names is None else tuple(names)
        plan = self._eval_plans.get(key)
        if plan is None:
            plan = self._eval_plans[key] = self._eval_plan(key)
        return plan

    def _eval_plan(self, names: tuple[str, ...] | None) -> EvalPlan:
        """The distinct features wanted, grouped by (tile size, window), with their merges."""
        feats = (
            self.features if names is None else tuple(self.by_name[n] for n in dict.fromkeys(names))
        )
        groups: dict[tuple[int, int], list[tuple[str, Callable[[list[State]], State]]]] = {}
        horizon: dict[int, int] = {}
        for f in feats:
            groups.setdefault((f.granularity, f.window), []).append((f.name, merge_all(f.agg)))
            horizon[f.granularity] = max(horizon.get(f.granularity, 0), f.window)
        if len(self._eval_plans) > 256:
            self._eval_plans.clear()
        return EvalPlan(
            feats,
            tuple(f.name for f in feats),
            tuple((g, w, tuple(group)) for (g, w), group in groups.items()),
            tuple((f.name, f.agg.finalize) for f in feats if type(f.agg) not in PLAIN_STATES),
            horizon,
        )

    def read_horizon(self, names: Iterable[str] | None = None) -> Mapping[int, int]:
        """The largest window per tile size of the named features: `evaluate` as of T reads
        only tiles of these sizes starting in `[T - horizon, T]` (a reader may skip others)."""
        return self._plan(names).horizon

    def empty_values(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """Values of an entity never seen: empty windows (count/sum 0, else null)."""
        wanted = self.by_name.keys() if names is None else names
        return {n: self.by_name[n].agg.finalize(self.by_name[n].agg.empty()) for n in wanted}
