"""Running the real dataflow in-process for tests: Redis streams in, Redis + Parquet out."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.recovery import RecoveryConfig
from bytewax.testing import cluster_main, run_main

from pipelines.dataflow import Outputs, build_flow
from pipelines.plan import PlanSource
from pipelines.run import ensure_recovery_dir
from pipelines.shard_keys import BALANCED
from pipelines.sources.redis_streams import RedisStreamSource
from tests.pipelines.scenario import PROJECT


def run_until_idle(
    redis_url: str,
    plans: PlanSource,
    root: Path,
    *,
    workers: int = 1,
    recovery_dir: Path | None = None,
    source: Any = None,
    tile_cache: int = 500_000,
    read_count: int = 500,
) -> None:
    """Run the whole pipeline until every stream partition is drained."""
    source = source or RedisStreamSource(
        redis_url, PROJECT, 4, plans, count=read_count, until_idle=True
    )
    outputs = Outputs(redis_url, PROJECT, root, tile_cache)
    recovery, keys = None, BALANCED
    if recovery_dir is not None:
        keys = ensure_recovery_dir(recovery_dir, 4)
        recovery = RecoveryConfig(str(recovery_dir))
    flow = build_flow(source, plans, outputs, snapshots=recovery is not None, shard_keys=keys)
    epoch = timedelta(seconds=1)
    if workers == 1:
        run_main(flow, epoch_interval=epoch, recovery_config=recovery)
    else:
        cluster_main(
            flow,
            [],
            0,
            epoch_interval=epoch,
            recovery_config=recovery,
            worker_count_per_proc=workers,
        )
