"""`POST /v1/features/historical`: exact point-in-time feature values for given rows (SPEC §6).

Each row names an entity (its join keys) and a `timestamp`; the answer holds, per row and
in order, the values the features had at that time, computed from the offline log by the
same DuckDB engine as `rillet export` (`pipelines.offline`). `mode` is `event_time` (the
default) or the leakage-safe `known_time` (SPEC §4).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from features.durations import iso, to_us
from pipelines.offline.export import historical_values
from serving.deps import ServerState
from serving.responses import JsonBytes
from serving.schemas import V1_ERRORS, error_responses

MAX_ROWS = 10_000
router = APIRouter(prefix="/v1/features", tags=["features"])


class HistoricalRequest(BaseModel):
    """Feature references and the (entity, time) rows to compute them for."""

    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(min_length=1, examples=[["user_txn:txn_count_1h", "user_txn:*"]])
    rows: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_ROWS,
        description=(
            "Join-key values and a `timestamp` (ISO-8601, UTC unless it has an offset, or epoch"
            f" milliseconds) per row; at most {MAX_ROWS:,}. Other fields are ignored."
        ),
        examples=[[{"user_id": "u1", "timestamp": "2026-01-01T10:00:00Z"}]],
    )
    mode: Literal["event_time", "known_time"] = Field(
        default="event_time",
        description=(
            "`event_time`: every accepted event with event time <= timestamp; `known_time`:"
            " also ingested by then (what online serving would have answered)."
        ),
    )


class HistoricalResult(BaseModel):
    """The feature vector of one row."""

    entity: dict[str, Any] = Field(description="The row's join-key values, as given.")
    timestamp: str = Field(description="The time the values are as of (ISO-8601 UTC).")
    values: dict[str, Any] = Field(description="Values keyed `view:feature` (SPEC §4).")


class HistoricalResponse(BaseModel):
    """One result per request row, in request order."""

    features: list[str] = Field(description="The requested features, wildcards expanded.")
    mode: str
    results: list[HistoricalResult]


@router.post(
    "/historical",
    response_model=HistoricalResponse,
    responses=error_responses(*V1_ERRORS),
    summary="Point-in-time feature vectors for (entity, timestamp) rows",
)
def historical(body: HistoricalRequest, request: Request) -> JsonBytes:
    """Exact values as of each row's timestamp, from the offline log (no training/serving skew).

    Runs in the thread pool: the DuckDB query blocks.
    """
    state: ServerState = request.app.state.rillet
    registry = state.registry()
    definitions = registry.definitions
    features, values = historical_values(
        definitions, body.features, body.rows, state.settings.offline_root, body.mode
    )
    keys = _join_keys(definitions, features)
    results = [
        {
            "entity": {k: row.get(k) for k in keys},
            "timestamp": iso(to_us(row["timestamp"])),
            "values": vals,
        }
        for row, vals in zip(body.rows, values, strict=True)
    ]
    return JsonBytes({"features": features, "mode": body.mode, "results": results})


def _join_keys(definitions: Any, features: list[str]) -> list[str]:
    """The join keys of the views of the features, in first-use order."""
    keys: dict[str, None] = {}
    for ref in features:
        for key in definitions.join_keys(ref.partition(":")[0]):
            keys.setdefault(key)
    return list(keys)
