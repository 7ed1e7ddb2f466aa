"""Request and response models of the HTTP API: the contract published at `/openapi.json`.

Times are ISO-8601 UTC strings with `Z`; durations are written as in definition files
(`1h`, `7d`). Feature values are JSON scalars or lists (`last_n`), keyed `view:feature`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

JoinKeyValue = str | int | float | bool | None


class OnlineRequest(BaseModel):
    """Feature references (`view:feature`, `view:*`) and the entities to read them for."""

    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(min_length=1, examples=[["user_txn:txn_count_1h", "user_txn:*"]])
    entities: list[dict[str, JoinKeyValue]] = Field(
        min_length=1,
        description="Join-key values per entity; at most RILLET_MAX_ENTITIES (default 1000).",
        examples=[[{"user_id": "u1"}, {"user_id": "u2"}]],
    )


class OnlineResult(BaseModel):
    """The feature vector of one entity."""

    entity: dict[str, Any]
    values: dict[str, Any] = Field(description="Values keyed `view:feature` (SPEC §4).")
    event_time: str | None = Field(
        description="The newest event time used for this entity; null if it has none."
    )


class OnlineResponse(BaseModel):
    """Feature vectors as of `as_of` (the request time), one result per entity, in order."""

    features: list[str] = Field(description="The requested features, wildcards expanded.")
    results: list[OnlineResult]
    as_of: str


class EventsAccepted(BaseModel):
    """Events validated and acknowledged by the broker."""

    accepted: int


class FeatureInfo(BaseModel):
    """One feature of a view as defined."""

    name: str
    function: str
    column: str | None
    window: str
    granularity: str
    n: int | None = None


class RegistryInfo(BaseModel):
    """The registry version being served."""

    content_hash: str
    applied_at: str | None


class FeatureViewInfo(BaseModel):
    """A view of the catalog: its definition, version and what the pipeline did with it."""

    name: str
    entity: str
    join_keys: list[str]
    source: str
    ttl: str
    owner: str
    tags: dict[str, str]
    description: str
    version: int | str | None
    features: list[FeatureInfo]
    freshness: str | None = Field(description="The newest event time applied to the view.")
    entity_count: int = Field(description="Approximate number of entities seen (HyperLogLog).")


class CatalogResponse(BaseModel):
    """Every feature view of the applied registry."""

    registry: RegistryInfo
    feature_views: list[FeatureViewInfo]


class SourceStatus(BaseModel):
    """The pipeline's counters for one source, and its dead-letter count."""

    name: str
    topic: str
    applied: int
    duplicates: int
    late: int
    invalid: int
    dead_letters: int
    lag_messages: int | None
    lag_seconds: float | None
    updated_at: str | None


class ViewStatus(BaseModel):
    """Freshness of one view: the newest event time applied, and its age."""

    name: str
    source: str
    freshness: str | None
    age_seconds: float | None


class StatusResponse(BaseModel):
    """What `rillet status` shows: per source lag and counters, per view freshness."""

    registry: RegistryInfo
    sources: list[SourceStatus]
    views: list[ViewStatus]


class Health(BaseModel):
    """Liveness: the process answers."""

    status: str


class Readiness(BaseModel):
    """Readiness: Redis answers and a registry is loaded."""

    status: str
    redis: str
    registry: str | None


class ErrorInfo(BaseModel):
    """What went wrong, as a stable code, a message for humans and structured details."""

    code: str
    message: str
    details: list[Any]


class ErrorResponse(BaseModel):
    """Every error answer of the API."""

    error: ErrorInfo


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can answer."""
    text = {
        400: "Malformed request",
        401: "Missing or unknown API key",
        403: "The API key lacks the scope",
        404: "Unknown view, feature or source",
        413: "Request body too large",
        422: "Invalid request or events",
        429: "Too many requests in flight",
        503: "Redis unreachable, no registry applied, or timeout",
    }
    return {s: {"model": ErrorResponse, "description": text[s]} for s in statuses}


V1_ERRORS = (400, 401, 403, 404, 413, 422, 429, 503)
