"""A registry version compiled for serving: tilers, join-key coercion and read plans.

Built once per applied registry version, so a request does dictionary lookups only:
feature references resolve to a cached `ReadPlan`; every view has its `ViewTiler`, its
join keys with their coercion, and the set of features whose values are timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from features.model import Definitions, FeatureView
from features.tiles import ViewTiler

TIMESTAMP_VALUED = frozenset({"first", "last", "min", "max", "last_n"})
PLAN_CACHE_SIZE = 1024


def _to_int(value: Any) -> Any:
    """Coerce a join-key value of an `int` column so `5`, `5.0` and `"5"` name one entity."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _to_bool(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


_COERCE: dict[str, Callable[[Any], Any]] = {"int": _to_int, "bool": _to_bool}


@dataclass(frozen=True)
class ServedView:
    """One view as the read path needs it."""

    view: FeatureView
    tiler: ViewTiler
    join_keys: tuple[str, ...]
    coercers: tuple[Callable[[Any], Any] | None, ...]
    timestamp_features: frozenset[str]


@dataclass(frozen=True)
class ViewRead:
    """The features of one view requested by a plan, with their output keys."""

    served: ServedView
    names: tuple[str, ...]
    out_keys: tuple[str, ...]
    empty: tuple[Any, ...]
    stamps: tuple[str, ...]  # output keys whose values are timestamps (rendered as ISO)
    horizon: Mapping[int, int]  # tile size -> the largest window read (`read_horizon`)


@dataclass(frozen=True)
class ReadPlan:
    """Resolved feature references grouped by view, in the order of the request."""

    features: tuple[str, ...]
    reads: tuple[ViewRead, ...]
    template: dict[str, Any]  # every output key in request order, for values to fill in place


@dataclass
class CompiledRegistry:
    """Everything the server derives from one applied registry version."""

    definitions: Definitions
    content_hash: str
    versions: Mapping[str, Any]
    applied_at: Any
    views: dict[str, ServedView] = field(init=False)
    _plans: dict[tuple[str, ...], ReadPlan] = field(init=False, default_factory=dict)
    _validators: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.views = {name: self._serve(view) for name, view in self.definitions.views.items()}

    def _serve(self, view: FeatureView) -> ServedView:
        defs = self.definitions
        columns = defs.sources[view.source].columns
        join_keys = defs.entities[view.entity].join_keys
        coercers = tuple(_COERCE.get(columns[k].dtype) if k in columns else None for k in join_keys)
        timestamp_features = frozenset(
            f.name
            for f in view.features
            if f.function in TIMESTAMP_VALUED
            and f.column is not None
            and f.column in columns
            and columns[f.column].dtype == "timestamp"
        )
        return ServedView(view, ViewTiler(view), join_keys, coercers, timestamp_features)

    def plan(self, refs: Sequence[str]) -> ReadPlan:
        """The read plan of a list of `view:feature` / `view:*` references (cached)."""
        key = tuple(refs)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._build_plan(key)
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _build_plan(self, refs: tuple[str, ...]) -> ReadPlan:
        resolved = self.definitions.resolve(refs)
        by_view: dict[str, list[str]] = {}
        for ref in resolved:
            by_view.setdefault(ref.view, []).append(ref.feature)
        reads = []
        for view_name, names in by_view.items():
            served = self.views[view_name]
            empty = served.tiler.empty_values(names)
            reads.append(
                ViewRead(
                    served,
                    tuple(names),
                    tuple(f"{view_name}:{n}" for n in names),
                    tuple(empty[n] for n in names),
                    tuple(f"{view_name}:{n}" for n in names if n in served.timestamp_features),
                    served.tiler.read_horizon(names),
                )
            )
        features = tuple(str(r) for r in resolved)
        return ReadPlan(features, tuple(reads), dict.fromkeys(features))

    def validator(self, source: str) -> Any:
        """The schema validator of a source, built on first use (`features.schema`)."""
        validator = self._validators.get(source)
        if validator is None:
            from features.schema import SourceValidator

            validator = SourceValidator(self.definitions.source(source))
            self._validators[source] = validator
        return validator
