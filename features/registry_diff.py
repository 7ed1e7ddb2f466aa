"""What applying new definitions would change, each change compatible or breaking (SPEC §2).

Breaking is what can silently change or remove a value a consumer already reads: a
changed window, function, column, granularity or `n` of an existing feature; a removed
feature or view (a model may still request it); a removed or retyped schema column, or a
changed source key, event id or timestamp, or entity join keys, when a current view uses
it; a new non-nullable column on a used source (its producers' events would be rejected).
Additions, descriptions, owners, tags, ttl, topics, lateness and checks are compatible.
A view's version counts changes of everything its values depend on (`view_form`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from features.durations import format_duration
from features.model import Column, Definitions, FeatureView, Source, view_to_dict

FEATURE_BREAKING = ("function", "column", "window", "granularity", "n")


@dataclass(frozen=True)
class Change:
    """One difference between the applied registry and new definitions."""

    kind: str  # "added" | "removed" | "changed"
    subject: str  # "view user_txn", "feature user_txn:amount_sum_24h", "source s column c"
    detail: str
    breaking: bool

    def __str__(self) -> str:
        flag = "breaking" if self.breaking else "compatible"
        return f"{self.kind} {self.subject}: {self.detail} ({flag})"


@dataclass(frozen=True)
class Plan:
    """The changes `apply` would make, and the version each view would have after it."""

    changes: list[Change]
    new_versions: Mapping[str, int]
    current_versions: Mapping[str, int] = field(default_factory=dict)

    @property
    def breaking(self) -> list[Change]:
        """The changes `apply` refuses without `allow_breaking`."""
        return [c for c in self.changes if c.breaking]


def view_form(defs: Definitions, view: FeatureView) -> dict[str, Any]:
    """Everything a view's values depend on: itself, its join keys, its source's rules and columns.

    A view's version is bumped whenever this changes.
    """
    source = defs.sources[view.source]
    join_keys = defs.entities[view.entity].join_keys
    used = {f.column for f in view.features if f.column} | set(join_keys) | set(source.key)
    used |= {source.event_id, source.timestamp}
    return {
        "view": view_to_dict(view),
        "join_keys": list(join_keys),
        "source": {
            "key": list(source.key),
            "event_id": source.event_id,
            "timestamp": source.timestamp,
            "allowed_lateness": source.allowed_lateness,
            "columns": [_column_form(c) for c in source.schema if c.name in used],
        },
    }


def diff(current: Definitions | None, versions: Mapping[str, int], new: Definitions) -> Plan:
    """Compare new definitions with the applied ones (`None`: nothing applied yet)."""
    old = current or Definitions(entities={}, sources={}, views={})
    changes: list[Change] = []
    used = _used_columns(old)
    for name in sorted(set(old.entities) | set(new.entities)):
        changes += _entity_changes(name, old, new)
    for name in sorted(set(old.sources) | set(new.sources)):
        changes += _source_changes(name, old, new, used)
    for name in sorted(set(old.views) | set(new.views)):
        changes += _view_changes(name, old, new)
    new_versions: dict[str, int] = {}
    for name, view in sorted(new.views.items()):
        if name not in old.views:
            new_versions[name] = 1
        elif view_form(old, old.views[name]) != view_form(new, view):
            new_versions[name] = versions.get(name, 1) + 1
        else:
            new_versions[name] = versions.get(name, 1)
    return Plan(changes, new_versions, dict(versions))


def _column_form(c: Column) -> dict[str, Any]:
    return {"name": c.name, "dtype": c.dtype, "nullable": c.nullable, "checks": c.checks.to_dict()}


def _used_columns(defs: Definitions) -> dict[str, dict[str, list[str]]]:
    """source -> column -> what uses it (`view:feature`, `view (join key)`, `source key`)."""
    out: dict[str, dict[str, list[str]]] = {}
    for view in sorted(defs.views.values(), key=lambda v: v.name):
        users = out.setdefault(view.source, {})
        source = defs.sources.get(view.source)
        for feat in view.features:
            if feat.column:
                users.setdefault(feat.column, []).append(f"{view.name}:{feat.name}")
        for key in defs.entities[view.entity].join_keys if view.entity in defs.entities else ():
            users.setdefault(key, []).append(f"{view.name} (join key)")
        if source is not None:
            for role, cols in (
                ("source key", source.key),
                ("event id", (source.event_id,)),
                ("timestamp", (source.timestamp,)),
            ):
                for col in cols:
                    users.setdefault(col, []).append(f"{view.name} ({role})")
    return out


def _entity_changes(name: str, old: Definitions, new: Definitions) -> list[Change]:
    subject = f"entity {name}"
    users = sorted(v.name for v in old.views.values() if v.entity == name)
    if name not in old.entities:
        return [Change("added", subject, f"join keys {list(new.entities[name].join_keys)}", False)]
    if name not in new.entities:
        return [Change("removed", subject, _used_by(users), bool(users))]
    a, b = old.entities[name], new.entities[name]
    out = []
    if a.join_keys != b.join_keys:
        detail = f"join keys {list(a.join_keys)} → {list(b.join_keys)}; {_used_by(users)}"
        out.append(Change("changed", subject, detail, bool(users)))
    if a.description != b.description:
        out.append(Change("changed", subject, "description", False))
    return out


def _source_changes(
    name: str, old: Definitions, new: Definitions, used: Mapping[str, Mapping[str, list[str]]]
) -> list[Change]:
    subject = f"source {name}"
    users = used.get(name, {})
    in_use = bool(users) or any(v.source == name for v in new.views.values())
    if name not in old.sources:
        return [Change("added", subject, f"topic {new.sources[name].topic!r}", False)]
    if name not in new.sources:
        views = sorted(v.name for v in old.views.values() if v.source == name)
        return [Change("removed", subject, _used_by(views), bool(views))]
    a, b = old.sources[name], new.sources[name]
    out: list[Change] = []
    for attr in ("key", "event_id", "timestamp"):
        if getattr(a, attr) != getattr(b, attr):
            detail = f"{attr} {_shown(getattr(a, attr))} → {_shown(getattr(b, attr))}"
            out.append(Change("changed", subject, detail, bool(users)))
    if a.allowed_lateness != b.allowed_lateness:
        detail = (
            f"allowed_lateness {format_duration(a.allowed_lateness)} → "
            f"{format_duration(b.allowed_lateness)}"
        )
        out.append(Change("changed", subject, detail, False))
    for attr in ("topic", "description"):
        if getattr(a, attr) != getattr(b, attr):
            detail = f"{attr} {_shown(getattr(a, attr))} → {_shown(getattr(b, attr))}"
            out.append(Change("changed", subject, detail, False))
    out += _column_changes(a, b, users, in_use)
    return out


def _column_changes(
    a: Source, b: Source, users: Mapping[str, list[str]], in_use: bool
) -> list[Change]:
    out: list[Change] = []
    old_cols, new_cols = a.columns, b.columns
    for col in [c.name for c in a.schema] + [c.name for c in b.schema if c.name not in old_cols]:
        subject = f"source {a.name} column {col}"
        using = users.get(col, [])
        if col not in new_cols:
            out.append(Change("removed", subject, _used_by(using), bool(using)))
        elif col not in old_cols:
            c = new_cols[col]
            kind = f"{'nullable ' if c.nullable else ''}{c.dtype}"
            breaking = not c.nullable and in_use
            detail = kind + ("; events without it would be rejected" if breaking else "")
            out.append(Change("added", subject, detail, breaking))
        else:
            x, y = old_cols[col], new_cols[col]
            if x.dtype != y.dtype:
                detail = f"dtype {x.dtype} → {y.dtype}; {_used_by(using)}"
                out.append(Change("changed", subject, detail, bool(using)))
            if x.nullable != y.nullable:
                detail = f"nullable {str(x.nullable).lower()} → {str(y.nullable).lower()}"
                breaking = x.nullable and not y.nullable and bool(using)
                out.append(Change("changed", subject, detail, breaking))
            if x.checks != y.checks:
                detail = f"checks {x.checks.to_dict()} → {y.checks.to_dict()}"
                out.append(Change("changed", subject, detail, False))
    if [c.name for c in a.schema if c.name in new_cols] != [
        c.name for c in b.schema if c.name in old_cols
    ]:
        out.append(Change("changed", f"source {a.name}", "column order", False))
    return out


def _view_changes(name: str, old: Definitions, new: Definitions) -> list[Change]:
    subject = f"view {name}"
    if name not in old.views:
        view = new.views[name]
        return [Change("added", subject, f"{len(view.features)} features", False)]
    if name not in new.views:
        view = old.views[name]
        return [Change("removed", subject, f"{len(view.features)} features", True)]
    a, b = old.views[name], new.views[name]
    out: list[Change] = []
    for attr in ("entity", "source"):
        if getattr(a, attr) != getattr(b, attr):
            detail = f"{attr} {getattr(a, attr)!r} → {getattr(b, attr)!r}"
            out.append(Change("changed", subject, detail, True))
    if a.ttl != b.ttl:
        detail = f"ttl {format_duration(a.ttl)} → {format_duration(b.ttl)}"
        out.append(Change("changed", subject, detail, False))
    for attr in ("owner", "tags", "description"):
        if getattr(a, attr) != getattr(b, attr):
            out.append(Change("changed", subject, attr, False))
    old_feats = {f.name: f for f in a.features}
    new_feats = {f.name: f for f in b.features}
    for feat in [f.name for f in a.features] + [f.name for f in b.features]:
        fsubject = f"feature {name}:{feat}"
        if feat in old_feats and feat not in new_feats:
            out.append(Change("removed", fsubject, old_feats[feat].function, True))
            del old_feats[feat]
        elif feat in new_feats and feat not in old_feats:
            out.append(Change("added", fsubject, _describe_feature(new_feats[feat]), False))
            del new_feats[feat]
        elif feat in old_feats and feat in new_feats:
            x, y = old_feats.pop(feat), new_feats.pop(feat)
            diffs = [
                f"{attr} {_feature_attr(x, attr)} → {_feature_attr(y, attr)}"
                for attr in FEATURE_BREAKING
                if getattr(x, attr) != getattr(y, attr)
            ]
            if diffs:
                out.append(Change("changed", fsubject, "; ".join(diffs), True))
    common = [f.name for f in b.features if f.name in {g.name for g in a.features}]
    if [f.name for f in a.features if f.name in {g.name for g in b.features}] != common:
        out.append(Change("changed", subject, "feature order", False))
    return out


def _describe_feature(feat: Any) -> str:
    column = f"({feat.column})" if feat.column else "()"
    return f"{feat.function}{column} over {format_duration(feat.window)}"


def _feature_attr(feat: Any, attr: str) -> str:
    value = getattr(feat, attr)
    if attr in ("window", "granularity"):
        return format_duration(value)
    return "none" if value is None else str(value)


def _used_by(users: list[str]) -> str:
    if not users:
        return "not used by any view"
    return "used by " + ", ".join(users)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return str(list(value))
    return repr(value)
