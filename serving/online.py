"""The online read path: feature vectors as of now in one Redis round trip (SPEC §5, §6).

Every (entity, view) pair of a request is one `HGETALL` of `layout.view_key`, all sent
at once (`serving.redis_read`); each reply is decoded by a `layout.TileDecoder` (only the
tiles the requested features read as of now) and evaluated with the view's precompiled
`ViewTiler` — the window semantics live in `features.tiles` only. An entity with no
hash is an entity never seen: its values are `empty_values()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from features.durations import iso
from features.errors import ValidationError
from features.layout import TileDecoder, decode_tiles, entity_id, view_key
from serving import metrics
from serving.compiled import ReadPlan, ServedView
from serving.redis_read import OnlineReader


def entity_keys(plan: ReadPlan, project: str, entities: Sequence[Mapping[str, Any]]) -> list[str]:
    """The hash keys to read, entity-major then view; 422 listing entities missing a key."""
    keys: list[str] = []
    problems: list[dict[str, Any]] = []
    for index, entity in enumerate(entities):
        for read in plan.reads:
            served = read.served
            values = _join_values(served, entity)
            if values is None:
                missing = [k for k in served.join_keys if entity.get(k) is None]
                problems.append(
                    {
                        "index": index,
                        "view": served.view.name,
                        "reasons": [f"missing join key {k!r}" for k in missing],
                    }
                )
                continue
            keys.append(view_key(project, served.view.name, entity_id(values)))
    if problems:
        first = problems[0]
        msg = (
            f"entity {first['index']} for view {first['view']!r}: {', '.join(first['reasons'])}"
            f" ({len(problems)} problem(s) in all, see details)"
        )
        raise ValidationError(msg, details=problems)
    return keys


def _join_values(served: ServedView, entity: Mapping[str, Any]) -> list[Any] | None:
    values = []
    for key, coerce in zip(served.join_keys, served.coercers, strict=True):
        value = entity.get(key)
        if value is None:
            return None
        values.append(coerce(value) if coerce is not None else value)
    return values


def evaluate(
    plan: ReadPlan,
    entities: Sequence[Mapping[str, Any]],
    replies: Sequence[Any],
    as_of: int,
) -> list[dict[str, Any]]:
    """One result per entity: values keyed `view:feature`, and the newest event time used."""
    results: list[dict[str, Any]] = []
    reply_iter = iter(replies)
    # Only the tiles the requested features read as of now are decoded.
    reads = [(read, TileDecoder(read.horizon, as_of).decode) for read in plan.reads]
    for entity in entities:
        values = plan.template.copy()  # keys in request order, whatever the view grouping
        newest: int | None = None
        for read, decode in reads:
            reply = next(reply_iter)
            state = decode(reply)
            if state is None:
                values.update(zip(read.out_keys, read.empty, strict=True))
                continue
            # `evaluate` answers in the order of `names`, the order of `out_keys`.
            evaluated = read.served.tiler.evaluate(state, as_of, read.names)
            values.update(zip(read.out_keys, evaluated.values(), strict=True))
            for out_key in read.stamps:
                values[out_key] = _as_time(values[out_key])
            max_ts = state.max_ts
            used = max_ts if max_ts is not None and max_ts <= as_of else newest_used(reply, as_of)
            if used is not None and (newest is None or used > newest):
                newest = used
        results.append(
            {
                "entity": dict(entity),
                "values": values,
                "event_time": iso(newest) if newest is not None else None,
            }
        )
    return results


def newest_used(reply: Any, as_of: int) -> int | None:
    """The newest event time of an entity at or before `as_of` (pending events included).

    Past the common case (`max_ts <= as_of`), so it decodes the whole reply again.
    """
    state = decode_tiles(reply)
    if state is None:
        return None
    if state.max_ts is not None and state.max_ts <= as_of:
        return state.max_ts
    candidates = [rec[0] for rec in state.pending if rec[0] <= as_of]
    if state.tiles and state.folded_until <= as_of:
        candidates.append(state.folded_until)
    return max(candidates) if candidates else None


def _as_time(value: Any) -> Any:
    """Timestamp-valued results (µs) as ISO-8601 strings; lists element-wise."""
    if value is None:
        return None
    if isinstance(value, list):
        return [iso(v) if isinstance(v, int) else v for v in value]
    return iso(value) if isinstance(value, int) else value


async def read_online(
    reader: OnlineReader,
    plan: ReadPlan,
    project: str,
    entities: Sequence[Mapping[str, Any]],
    as_of: int,
) -> dict[str, Any]:
    """The full `POST /v1/features/online` answer for resolved features and entities."""
    metrics.ONLINE_ENTITIES.observe(len(entities))
    keys = entity_keys(plan, project, entities)
    replies = await reader.hgetall(keys) if keys else []
    return {
        "features": list(plan.features),
        "results": evaluate(plan, entities, replies, as_of),
        "as_of": iso(as_of),
    }
