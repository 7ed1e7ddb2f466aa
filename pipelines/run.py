"""Running the stream pipeline: the plan from the registry, the source for the broker, recovery.

`rillet run`, the bench and the tests call `run_pipeline`. The pipeline runs on the applied
registry (re-read without restart); with none applied it falls back to the definitions
directory, with a warning. Recovery is on by default: the recovery directory is created
with `recovery_partitions` SQLite partitions the first time (that number is fixed forever
and bounds the worker count), and marked with the shard keys its state is stored under
(`pipelines.shard_keys`: a directory made before the marker keeps its first keys).
"""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.inputs import Source
from bytewax.recovery import RecoveryConfig, init_db_dir

from features.errors import RilletError
from features.model import Definitions
from pipelines import shard_keys
from pipelines.dataflow import Outputs, build_flow
from pipelines.plan import Plan, PlanSource, RegistryPlanSource
from pipelines.settings import PipelineSettings

log = logging.getLogger(__name__)


def current_definitions(settings: PipelineSettings, client: Any) -> tuple[Definitions, str]:
    """The applied definitions, or the definitions directory (with a warning) if none."""
    from features.registry import load_applied

    return _or_directory(settings, load_applied(client, settings.project))


def _or_directory(settings: PipelineSettings, applied: Any) -> tuple[Definitions, str]:
    if applied is not None:
        return applied.definitions, applied.content_hash
    from features.loader import load_definitions

    log.warning(
        "no registry applied; using the definitions directory (run `rillet apply`)",
        extra={"definitions": str(settings.definitions), "project": settings.project},
    )
    return load_definitions(settings.definitions), "definitions"


def registry_plans(settings: PipelineSettings, client: Any) -> PlanSource:
    """Follow the applied registry (one cheap hash read per poll); the document is read once
    at start-up by the same watcher, not a second time on its first poll."""
    from features.registry import RegistryWatcher

    watcher = RegistryWatcher(client, settings.project, interval_s=0.0)
    definitions, version = _or_directory(settings, watcher.current())

    def fetch() -> tuple[Definitions, str] | None:
        registry = watcher.current()
        return None if registry is None else (registry.definitions, registry.content_hash)

    return RegistryPlanSource(fetch, Plan(definitions, version), settings.registry_poll_seconds)


def make_source(
    settings: PipelineSettings,
    plans: PlanSource,
    until_idle: bool,
    files: Mapping[str, Sequence[Path]] | None = None,
) -> Source[Any]:
    """The flow's input: replay files if given, else the configured broker."""
    if files:
        from pipelines.sources.files import FileEventSource

        return FileEventSource(files, batch_size=settings.read_count)
    if settings.broker == "kafka":
        from pipelines.sources.kafka import KafkaEventSource

        return KafkaEventSource(
            settings.brokers, plans, batch_size=settings.read_count, until_idle=until_idle
        )
    from pipelines.sources.redis_streams import RedisStreamSource

    return RedisStreamSource(
        settings.redis_url,
        settings.project,
        settings.stream_partitions,
        plans,
        count=settings.read_count,
        until_idle=until_idle,
    )


def free_ports(count: int) -> list[int]:
    """`count` loopback TCP ports that were free a moment ago (cluster addresses)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ensure_recovery_dir(directory: Path, partitions: int) -> tuple[str, ...]:
    """Create the Bytewax recovery partitions once; an existing directory is kept as is.

    Returns the shard keys its state is stored under (`pipelines.shard_keys`)."""
    if any(directory.glob("part-*.sqlite3")):
        return shard_keys.store_keys(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # The marker first: a process that finds the partitions must also find the marker.
    keys = shard_keys.mark_store(directory)
    init_db_dir(directory, partitions)
    log.info("created the recovery directory", extra={"dir": str(directory), "parts": partitions})
    return keys


def tune_gc(full_every_s: float, freeze_every_s: float = 1.0) -> None:
    """Keep the cyclic collector off the pipeline's long-lived tile objects.

    The tile cache holds millions of long-lived objects, and each collection of the older
    generations walks all of them: over a third of the CPU of `bench/ingest.py`. So young
    collections run every 200,000 allocations (at 50,000 they took ~2% of the CPU of a
    300,000-event run, 20 collections of ~10 ms), and a daemon thread moves every surviving
    object to the permanent generation (`gc.freeze`) each `freeze_every_s`, where no
    collection looks. Tiles hold no reference cycles and are freed by reference counting;
    cycles from elsewhere wait for a full collection each `full_every_s` (0: never), which
    pauses the flow (2 to 6 s with 300,000 cached entity views).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 20, 100)

    def freezer() -> None:
        last_full = time.monotonic()
        while True:
            time.sleep(freeze_every_s)
            if full_every_s and time.monotonic() - last_full >= full_every_s:
                gc.unfreeze()
                gc.collect()
                last_full = time.monotonic()
            gc.freeze()

    threading.Thread(target=freezer, name="rillet-gc-freezer", daemon=True).start()


def run_pipeline(
    settings: PipelineSettings,
    plans: PlanSource,
    *,
    workers: int | None = None,
    until_idle: bool = False,
    recovery: bool = True,
    files: Mapping[str, Sequence[Path]] | None = None,
    addresses: Sequence[str] = (),
    process_id: int = 0,
) -> None:
    """Build the flow and run it in this process with `workers` threads (blocks)."""
    from bytewax.run import cli_main

    workers = workers or settings.workers
    recovery_config = None
    keys: tuple[str, ...] = shard_keys.BALANCED
    if recovery:
        if workers * max(1, len(addresses)) > settings.recovery_partitions:
            msg = (
                f"{workers} worker(s) per process exceed RILLET_RECOVERY_PARTITIONS="
                f"{settings.recovery_partitions}; use fewer workers or a new recovery dir"
            )
            raise RilletError(msg)
        keys = ensure_recovery_dir(settings.recovery_dir, settings.recovery_partitions)
        recovery_config = RecoveryConfig(str(settings.recovery_dir))
    tune_gc(settings.gc_full_hours * 3600)
    source = make_source(settings, plans, until_idle, files)
    outputs = Outputs(
        settings.redis_url, settings.project, settings.offline_root, settings.tile_cache_entities
    )
    flow = build_flow(source, plans, outputs, snapshots=recovery, shard_keys=keys)
    log.info(
        "pipeline starting",
        extra={
            "broker": "files" if files else settings.broker,
            "workers": workers,
            "recovery": str(settings.recovery_dir) if recovery else None,
            "until_idle": until_idle,
        },
    )
    cli_main(
        flow,
        workers_per_process=workers,
        process_id=process_id if addresses else None,
        addresses=list(addresses) or None,
        epoch_interval=timedelta(seconds=settings.epoch_seconds),
        recovery_config=recovery_config,
    )
