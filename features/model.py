"""The definition model: entities, sources, feature views and features (SPEC §2).

Objects are frozen and fully resolved by the loader: every feature has its window and
tile size in microseconds, every source its key. Nothing here reads files or the
environment; `to_dict`/`from_dict` give the canonical JSON form stored by the registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from features.errors import UnknownNameError

Dtype = Literal["string", "int", "float", "bool", "timestamp"]
DTYPES: tuple[str, ...] = ("string", "int", "float", "bool", "timestamp")
FUNCTIONS: tuple[str, ...] = (
    "count", "sum", "mean", "min", "max", "first", "last", "last_n", "stddev",
)  # fmt: skip
NUMERIC_DTYPES = frozenset({"int", "float"})
ORDERED_DTYPES = frozenset({"int", "float", "timestamp", "string"})
CHECK_NAMES: tuple[str, ...] = ("ge", "gt", "le", "lt", "isin", "notin", "str_length", "regex")


@dataclass(frozen=True)
class Checks:
    """Value checks of a schema column; `None` means the check is absent."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    isin: tuple[Any, ...] | None = None
    notin: tuple[Any, ...] | None = None
    str_length_min: int | None = None
    str_length_max: int | None = None
    regex: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (`str_length` as `{min, max}`), absent checks omitted."""
        out: dict[str, Any] = {}
        for name in ("ge", "gt", "le", "lt", "regex"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in ("isin", "notin"):
            if getattr(self, name) is not None:
                out[name] = list(getattr(self, name))
        if self.str_length_min is not None or self.str_length_max is not None:
            length: dict[str, int] = {}
            if self.str_length_min is not None:
                length["min"] = self.str_length_min
            if self.str_length_max is not None:
                length["max"] = self.str_length_max
            out["str_length"] = length
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checks:
        """Inverse of `to_dict`."""
        length = data.get("str_length") or {}
        return cls(
            ge=data.get("ge"),
            gt=data.get("gt"),
            le=data.get("le"),
            lt=data.get("lt"),
            isin=tuple(data["isin"]) if data.get("isin") is not None else None,
            notin=tuple(data["notin"]) if data.get("notin") is not None else None,
            str_length_min=length.get("min"),
            str_length_max=length.get("max"),
            regex=data.get("regex"),
        )


@dataclass(frozen=True)
class Column:
    """One column of a source schema."""

    name: str
    dtype: str
    nullable: bool = False
    checks: Checks = field(default_factory=Checks)


@dataclass(frozen=True)
class Entity:
    """A thing features describe, identified by an ordered tuple of join keys."""

    name: str
    join_keys: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Source:
    """A stream of events with a schema; `key` is the source key used for lateness/dedup."""

    name: str
    topic: str
    key: tuple[str, ...]
    event_id: str
    timestamp: str
    allowed_lateness: int
    schema: tuple[Column, ...]
    description: str = ""

    @property
    def columns(self) -> dict[str, Column]:
        """Schema columns by name."""
        return {c.name: c for c in self.schema}


@dataclass(frozen=True)
class Feature:
    """One aggregation over a source column; `window` and `granularity` are in µs."""

    name: str
    function: str
    column: str | None
    window: int
    granularity: int
    n: int | None = None


@dataclass(frozen=True)
class FeatureView:
    """Features of one entity computed from one source."""

    name: str
    entity: str
    source: str
    ttl: int
    features: tuple[Feature, ...]
    owner: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    description: str = ""

    def feature(self, name: str) -> Feature:
        """The feature called `name`, or `UnknownNameError` with a suggestion."""
        for feat in self.features:
            if feat.name == name:
                return feat
        raise UnknownNameError(
            f"view {self.name!r} has no feature {name!r}"
            + did_you_mean(name, [f.name for f in self.features])
        )

    @property
    def granularities(self) -> tuple[int, ...]:
        """The distinct tile sizes of this view's features, ascending."""
        return tuple(sorted({f.granularity for f in self.features}))


@dataclass(frozen=True)
class FeatureRef:
    """A resolved `view:feature` reference."""

    view: str
    feature: str

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


@dataclass(frozen=True)
class Definitions:
    """A whole, validated feature repository: what the registry stores and serves."""

    entities: Mapping[str, Entity]
    sources: Mapping[str, Source]
    views: Mapping[str, FeatureView]

    def view(self, name: str) -> FeatureView:
        """The view called `name`, or `UnknownNameError` with a suggestion."""
        if name not in self.views:
            raise UnknownNameError(
                f"unknown feature view {name!r}" + did_you_mean(name, self.views)
            )
        return self.views[name]

    def source(self, name: str) -> Source:
        """The source called `name`, or `UnknownNameError` with a suggestion."""
        if name not in self.sources:
            raise UnknownNameError(f"unknown source {name!r}" + did_you_mean(name, self.sources))
        return self.sources[name]

    def join_keys(self, view: str) -> tuple[str, ...]:
        """The join keys of a view's entity."""
        return self.entities[self.view(view).entity].join_keys

    def views_of_source(self, source: str) -> tuple[FeatureView, ...]:
        """The views computed from `source`, sorted by name."""
        return tuple(v for _, v in sorted(self.views.items()) if v.source == source)

    def resolve(self, refs: Iterable[str]) -> list[FeatureRef]:
        """Expand `view:feature` and `view:*` references, keeping order, dropping repeats."""
        out: list[FeatureRef] = []
        seen: set[FeatureRef] = set()
        for ref in refs:
            view_name, sep, feat_name = ref.partition(":")
            if not sep or not view_name or not feat_name:
                msg = f"invalid feature reference {ref!r}: expected view:feature or view:*"
                raise UnknownNameError(msg)
            view = self.view(view_name)
            names = [f.name for f in view.features] if feat_name == "*" else [feat_name]
            for name in names:
                view.feature(name)
                item = FeatureRef(view.name, name)
                if item not in seen:
                    seen.add(item)
                    out.append(item)
        return out


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix for the closest candidate, or an empty string.

    >>> did_you_mean("amout", ["amount", "merchant"])
    " (did you mean 'amount'?)"
    """
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def definitions_to_dict(defs: Definitions) -> dict[str, Any]:
    """The canonical JSON-able form, sorted by name, with durations in µs."""
    return {
        "entities": [
            {"name": e.name, "join_keys": list(e.join_keys), "description": e.description}
            for _, e in sorted(defs.entities.items())
        ],
        "sources": [
            {
                "name": s.name,
                "topic": s.topic,
                "key": list(s.key),
                "event_id": s.event_id,
                "timestamp": s.timestamp,
                "allowed_lateness": s.allowed_lateness,
                "description": s.description,
                "schema": [
                    {
                        "name": c.name,
                        "dtype": c.dtype,
                        "nullable": c.nullable,
                        "checks": c.checks.to_dict(),
                    }
                    for c in s.schema
                ],
            }
            for _, s in sorted(defs.sources.items())
        ],
        "feature_views": [view_to_dict(v) for _, v in sorted(defs.views.items())],
    }


def view_to_dict(view: FeatureView) -> dict[str, Any]:
    """The canonical JSON-able form of one view (its content defines its version)."""
    return {
        "name": view.name,
        "entity": view.entity,
        "source": view.source,
        "ttl": view.ttl,
        "owner": view.owner,
        "tags": dict(view.tags),
        "description": view.description,
        "features": [
            {
                "name": f.name,
                "function": f.function,
                "column": f.column,
                "window": f.window,
                "granularity": f.granularity,
                "n": f.n,
            }
            for f in view.features
        ],
    }


def definitions_from_dict(data: Mapping[str, Any]) -> Definitions:
    """Inverse of `definitions_to_dict`; the input is trusted (written by the registry)."""
    entities = {
        e["name"]: Entity(e["name"], tuple(e["join_keys"]), e.get("description", ""))
        for e in data.get("entities", [])
    }
    sources = {
        s["name"]: Source(
            name=s["name"],
            topic=s["topic"],
            key=tuple(s["key"]),
            event_id=s["event_id"],
            timestamp=s["timestamp"],
            allowed_lateness=int(s["allowed_lateness"]),
            description=s.get("description", ""),
            schema=tuple(
                Column(c["name"], c["dtype"], bool(c["nullable"]), Checks.from_dict(c["checks"]))
                for c in s["schema"]
            ),
        )
        for s in data.get("sources", [])
    }
    views = {
        v["name"]: FeatureView(
            name=v["name"],
            entity=v["entity"],
            source=v["source"],
            ttl=int(v["ttl"]),
            owner=v.get("owner", ""),
            tags=tuple(sorted(v.get("tags", {}).items())),
            description=v.get("description", ""),
            features=tuple(
                Feature(
                    f["name"],
                    f["function"],
                    f["column"],
                    int(f["window"]),
                    int(f["granularity"]),
                    f.get("n"),
                )
                for f in v["features"]
            ),
        )
        for v in data.get("feature_views", [])
    }
    return Definitions(entities=entities, sources=sources, views=views)
