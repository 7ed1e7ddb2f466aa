"""Settings of the stream pipeline, read from `RILLET_*` environment variables.

Built once at the edge (the CLI, the bench); everything below takes explicit arguments.
The names shared with the server (`RILLET_REDIS_URL`, `RILLET_PROJECT`, `RILLET_BROKER`,
`RILLET_STREAM_PARTITIONS`, ...) mean the same thing on both sides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineSettings(BaseSettings):
    """Everything `rillet run`, `rillet push` and `rillet dlq` need from their environment."""

    model_config = SettingsConfigDict(env_prefix="RILLET_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    project: str = "default"
    definitions: Path = Path("features/definitions")
    offline_root: Path = Path("./data/offline")
    recovery_dir: Path = Path("./data/recovery")
    recovery_partitions: int = Field(
        default=16, ge=1, description="fixed when the recovery dir is created: max workers"
    )
    broker: Literal["redis", "kafka"] = "redis"
    kafka_bootstrap: str = "127.0.0.1:9092"
    stream_partitions: int = Field(
        default=4, ge=1, description="Redis stream partitions per topic (producers agree)"
    )
    stream_maxlen: int | None = Field(
        default=None, ge=1, description="approximate MAXLEN trim on XADD (None: keep all)"
    )
    read_count: int = Field(default=5000, ge=1, description="entries per XREAD per stream")
    workers: int = Field(default=1, ge=1, description="Bytewax workers (threads) per process")
    epoch_seconds: int = Field(
        default=20, ge=1, description="snapshot interval; Parquet files roll per epoch"
    )
    tile_cache_entities: int = Field(
        default=500_000, ge=1000, description="(view, entity) pairs cached; Redis holds all"
    )
    gc_full_hours: float = Field(
        default=6.0,
        ge=0,
        description="hours between full garbage collections (each pauses the flow; 0: never)",
    )
    metrics_port: int = Field(default=9464, ge=0, description="Prometheus port; 0 disables")
    metrics_host: str = Field(default="127.0.0.1", description="address the metrics bind to")
    registry_poll_seconds: float = Field(default=1.0, gt=0)
    log_level: str = "INFO"

    @property
    def brokers(self) -> list[str]:
        """Kafka bootstrap servers as a list."""
        return [b.strip() for b in self.kafka_bootstrap.split(",") if b.strip()]
