"""What the pipeline has done, for the catalog, `/v1/status` and `rillet status`.

Each report is one pipelined Redis round trip: `queue_*` adds the reads to a pipeline
(sync or asyncio — the API and the CLI share this module), `build_*` turns the replies
and the registry into the JSON-able answer described by `serving.schemas`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from features import layout
from features.durations import US_PER_S, format_duration, iso
from features.model import Definitions, FeatureView

STAT_FIELDS = ("applied", "duplicates", "late", "invalid", "lag_messages", "lag_seconds")


def registry_info(content_hash: str, applied_at: Any) -> dict[str, Any]:
    """The `registry` block of a report."""
    return {"content_hash": content_hash, "applied_at": time_text(applied_at)}


def time_text(value: Any) -> str | None:
    """An ISO-8601 UTC string for µs integers, datetimes and ISO strings (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return iso(int(value.timestamp() * US_PER_S))
    if isinstance(value, int | float):
        return iso(int(value))
    return str(value)


def _int(raw: Any) -> int | None:
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _float(raw: Any) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _text_keys(reply: Mapping[Any, Any]) -> dict[str, Any]:
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in reply.items()}


def queue_catalog(pipe: Any, project: str, defs: Definitions) -> None:
    """Freshness of every view and the entity count of each, sorted by view name."""
    pipe.hgetall(layout.freshness_key(project))
    for name in sorted(defs.views):
        pipe.pfcount(layout.entity_count_key(project, name))


def build_catalog(
    defs: Definitions,
    versions: Mapping[str, Any],
    registry: dict[str, Any],
    replies: Sequence[Any],
    only: str | None = None,
) -> dict[str, Any]:
    """The catalog answer (every view, or only the view `only`)."""
    freshness = _text_keys(replies[0])
    views = []
    for name, count in zip(sorted(defs.views), replies[1:], strict=True):
        if only is not None and name != only:
            continue
        view = defs.views[name]
        views.append(
            view_info(defs, view, versions.get(name), _int(freshness.get(name)), int(count))
        )
    return {"registry": registry, "feature_views": views}


def view_info(
    defs: Definitions, view: FeatureView, version: Any, freshness: int | None, count: int
) -> dict[str, Any]:
    """One view of the catalog: its definition plus version, freshness and entity count."""
    return {
        "name": view.name,
        "entity": view.entity,
        "join_keys": list(defs.entities[view.entity].join_keys),
        "source": view.source,
        "ttl": format_duration(view.ttl),
        "owner": view.owner,
        "tags": dict(view.tags),
        "description": view.description,
        "version": version if isinstance(version, int | str) else None,
        "features": [
            {
                "name": f.name,
                "function": f.function,
                "column": f.column,
                "window": format_duration(f.window),
                "granularity": format_duration(f.granularity),
                "n": f.n,
            }
            for f in view.features
        ],
        "freshness": iso(freshness) if freshness is not None else None,
        "entity_count": count,
    }


def queue_status(pipe: Any, project: str, defs: Definitions) -> None:
    """Freshness of every view, then counters and dead-letter length per source (sorted)."""
    pipe.hgetall(layout.freshness_key(project))
    for name in sorted(defs.sources):
        pipe.hgetall(layout.source_stats_key(project, name))
        pipe.xlen(layout.dead_letter_key(project, name))


def build_status(
    defs: Definitions, registry: dict[str, Any], replies: Sequence[Any], now_us: int
) -> dict[str, Any]:
    """The status answer: per source counters and lag, per view freshness and its age."""
    freshness = _text_keys(replies[0])
    sources = []
    for i, name in enumerate(sorted(defs.sources)):
        stats = _text_keys(replies[1 + 2 * i])
        updated = _int(stats.get("updated_at"))
        sources.append(
            {
                "name": name,
                "topic": defs.sources[name].topic,
                "applied": _int(stats.get("applied")) or 0,
                "duplicates": _int(stats.get("duplicates")) or 0,
                "late": _int(stats.get("late")) or 0,
                "invalid": _int(stats.get("invalid")) or 0,
                "dead_letters": int(replies[2 + 2 * i]),
                "lag_messages": _int(stats.get("lag_messages")),
                "lag_seconds": _float(stats.get("lag_seconds")),
                "updated_at": iso(updated) if updated is not None else None,
            }
        )
    views = []
    for name in sorted(defs.views):
        fresh = _int(freshness.get(name))
        views.append(
            {
                "name": name,
                "source": defs.views[name].source,
                "freshness": iso(fresh) if fresh is not None else None,
                "age_seconds": round((now_us - fresh) / US_PER_S, 3) if fresh is not None else None,
            }
        )
    return {"registry": registry, "sources": sources, "views": views}
