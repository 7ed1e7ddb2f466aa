"""Settings of the feature server, read from `RILLET_*` environment variables.

Built once per process by `get_settings()` (cached, overridable in tests through the app
factory); nothing below `serving/` reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.errors import RilletError

SCOPES = ("read", "write", "admin")


class SettingsError(RilletError):
    """A `RILLET_*` setting has a value the server cannot use."""


class Settings(BaseSettings):
    """Everything the server needs to know about its environment."""

    model_config = SettingsConfigDict(env_prefix="RILLET_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    project: str = "default"
    definitions: str = "features/definitions"
    api_keys: str = Field(default="", description="`key:scope` pairs, comma-separated")
    max_entities: int = Field(default=1000, ge=1, description="entities per online request")
    max_events: int = Field(default=10_000, ge=1, description="events per push request")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(default=10.0, gt=0)
    max_in_flight: int = Field(
        default=256, ge=1, description="requests per worker (and its Redis pool size); more → 429"
    )
    registry_poll_s: float = Field(default=1.0, gt=0)
    redis_timeout_s: float = Field(default=2.0, gt=0)
    broker: Literal["redis", "kafka"] = "redis"
    stream_partitions: int = Field(default=4, ge=1)
    kafka_bootstrap: str = "127.0.0.1:9092"
    offline_root: Path = Field(
        default=Path("./data/offline"), description="the Parquet event log (historical reads)"
    )
    log_level: str = "INFO"
    access_log: bool = True

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: str) -> str:
        parse_api_keys(value)
        return value

    @property
    def keys(self) -> dict[str, str]:
        """API key → scope (empty: authentication is off)."""
        return parse_api_keys(self.api_keys)


def parse_api_keys(text: str) -> dict[str, str]:
    """Parse `key1:read,key2:write` into `{key: scope}`.

    >>> parse_api_keys("k1:read, k2:admin")
    {'k1': 'read', 'k2': 'admin'}
    """
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, scope = item.rpartition(":")
        if not sep or not key or scope not in SCOPES:
            shown = item if not sep else f"…:{scope}"
            msg = (
                f"invalid RILLET_API_KEYS entry {shown!r}: expected key:scope with scope "
                f"one of {', '.join(SCOPES)}"
            )
            raise ValueError(msg)
        keys[key] = scope
    return keys


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process settings, read from the environment once."""
    return Settings()
