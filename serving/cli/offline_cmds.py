"""`rillet export` and `rillet backfill`: the offline side of the command line.

`export` writes a point-in-time training set from a spine file; `backfill` rebuilds online
tiles from the offline log, or first imports a historical file into it (`--import`).
Both show progress with rich and fail with one clear line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from features.errors import RilletError


def _settings() -> Any:
    from pipelines.settings import PipelineSettings

    return PipelineSettings()


def _definitions(settings: Any, client: Any) -> Any:
    """The applied registry, else the definitions directory (with a warning), as the pipeline."""
    import redis

    from features.errors import StorageError
    from pipelines.run import current_definitions

    try:
        return current_definitions(settings, client)[0]
    except (StorageError, redis.RedisError, OSError) as exc:
        from features.loader import load_definitions

        click.echo(
            f"warning: Redis unreachable ({exc}); using definitions from {settings.definitions}",
            err=True,
        )
        return load_definitions(settings.definitions)


def _client(settings: Any) -> Any:
    import redis

    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=30)


def _time(text: str | None, option: str) -> int | None:
    from features.durations import to_us

    if text is None:
        return None
    try:
        return to_us(int(text) if text.isdigit() else text)
    except ValueError:
        msg = f"{option} {text!r} is not an ISO-8601 time (e.g. 2026-01-01T00:00:00Z)"
        raise click.BadParameter(msg) from None


@click.command()
@click.option(
    "--spine",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Parquet, CSV or JSON-lines file: join keys, `timestamp`, any label columns.",
)
@click.option(
    "--features",
    "features",
    required=True,
    multiple=True,
    help="Comma-separated `view:feature` (or `view:*`) references; may repeat.",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Parquet file."
)
@click.option(
    "--mode",
    type=click.Choice(["event_time", "known_time"]),
    default="event_time",
    show_default=True,
    help="known_time also requires each event to have been ingested by the row's time.",
)
@click.option("--memory-limit", default="2GB", show_default=True, help="DuckDB memory limit.")
@click.option("--threads", type=click.IntRange(1), default=None, help="DuckDB threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export(
    spine: Path,
    features: tuple[str, ...],
    out: Path,
    mode: str,
    memory_limit: str,
    threads: int | None,
    as_json: bool,
) -> None:
    """Write a point-in-time correct training set: the spine plus one column per feature.

    Each output row holds the values the features had at the row's `timestamp` (SPEC §4),
    computed from the offline log; rows keep their order and label columns.
    """
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    from pipelines.offline.export import export_training_set

    settings = _settings()
    refs = [ref.strip() for group in features for ref in group.split(",") if ref.strip()]
    if not refs:
        msg = "no feature references given"
        raise click.BadParameter(msg, param_hint="--features")
    client = _client(settings)
    try:
        definitions = _definitions(settings, client)
    finally:
        client.close()
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=as_json, transient=False) as bar:
        task = bar.add_task(f"export {spine.name}", total=100)
        result = export_training_set(
            definitions,
            refs,
            spine,
            out,
            settings.offline_root,
            mode,
            progress=lambda pct: bar.update(task, completed=pct),
            memory_limit=memory_limit,
            threads=threads,
        )
    summary = {
        "out": str(result.out),
        "rows": result.rows,
        "features": result.features,
        "mode": mode,
        "seconds": round(result.seconds, 3),
    }
    if as_json:
        click.echo(orjson.dumps(summary).decode())
    else:
        click.echo(
            f"wrote {result.rows:,} row(s) x {len(result.features)} feature(s) to {result.out}"
            f" ({mode}, {result.seconds:.1f} s)"
        )


@click.command()
@click.argument("views", nargs=-1)
@click.option("--view", "more_views", multiple=True, help="A view to rebuild (may repeat).")
@click.option("--from", "ts_from", default=None, help="Only entities with events from this time.")
@click.option("--to", "ts_to", default=None, help="Only entities with events up to this time.")
@click.option(
    "--import",
    "import_",
    nargs=2,
    default=None,
    metavar="SOURCE FILE",
    help="First import a historical JSON-lines/Parquet FILE of SOURCE into the log.",
)
@click.option("--force", is_flag=True, help="Run even if the pipeline seems to be running.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backfill(
    views: tuple[str, ...],
    more_views: tuple[str, ...],
    ts_from: str | None,
    ts_to: str | None,
    import_: tuple[str, str] | None,
    force: bool,
    as_json: bool,
) -> None:
    """Rebuild online tiles of VIEWS (default: all) from the offline log.

    For a view applied after its events arrived, a time range (--from/--to: the entities
    with events in it are rebuilt whole), or a lost Redis. With --import SOURCE FILE the
    file is validated (invalid events become dead letters), written to the log with
    _ingested_at = event time, and the views of SOURCE are rebuilt for its entities.
    Stop the pipeline first (docs/semantics.md, "Backfill"): it resumes on the rebuilt
    tiles without a gap or a double count.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from pipelines.backfill import Backfill, EntityFilter, PipelineRunningError, pipeline_running

    settings = _settings()
    client = _client(settings)
    definitions = _definitions(settings, client)
    names = list(dict.fromkeys([*views, *more_views]))
    for name in names:
        definitions.view(name)  # unknown view: one clear error with a suggestion
    entity_filter = EntityFilter(_time(ts_from, "--from"), _time(ts_to, "--to"))
    source_name = import_[0] if import_ else None
    if source_name is not None:
        source = definitions.source(source_name)
        of_source = [v.name for v in definitions.views_of_source(source.name)]
        names = [n for n in names if n in of_source] if names else of_source
    elif not names:
        names = sorted(definitions.views)
    sources = sorted({definitions.view(n).source for n in names} | {source_name or ""} - {""})
    if not force and pipeline_running(client, settings.project, sources, wait_s=3.0):
        msg = (
            "the pipeline is running (its counters keep moving): stop it first, or pass --force"
            " (a running pipeline may overwrite entities it has cached)"
        )
        raise PipelineRunningError(msg)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), disable=as_json, transient=False) as bar:
        imported = None
        if import_ is not None:
            imported = _import(client, settings, definitions, import_, names, bar)
        tasks: dict[str, Any] = {}

        def progress(view: str, done: int, total: int) -> None:
            if view not in tasks:
                tasks[view] = bar.add_task(f"backfill {view}", total=max(total, 1))
            bar.update(tasks[view], completed=done, total=max(total, 1))

        runner = Backfill(client, settings.project, definitions, settings.offline_root)
        reports = []
        for name in names:
            chosen = entity_filter
            if imported is not None:
                keys = imported.entities(definitions.join_keys(name))
                if keys is None:
                    continue
                chosen = EntityFilter(keys=keys)
            reports.extend(runner.run([name], chosen, progress).views)
    out: dict[str, Any] = {
        "views": [{"view": r.view, "events": r.events, "entities": r.entities} for r in reports]
    }
    if imported is not None:
        out["import"] = {
            "accepted": imported.accepted,
            "invalid": imported.invalid,
            "files": len(imported.files),
        }
    if as_json:
        click.echo(orjson.dumps(out).decode())
        return
    if imported is not None:
        click.echo(
            f"imported {imported.accepted:,} event(s) into the log; {imported.invalid:,} invalid"
            " → dead letters"
        )
    for r in reports:
        click.echo(f"rebuilt {r.entities:,} entit(ies) of {r.view!r} from {r.events:,} event(s)")


def _import(
    client: Any, settings: Any, definitions: Any, spec: tuple[str, str], names: list[str], bar: Any
) -> Any:
    """Run the import part of `backfill --import` with its own progress bar."""
    from pipelines.offline.history import import_file

    source_name, file_name = spec
    path = Path(file_name)
    if not path.is_file():
        msg = f"--import file {path} does not exist"
        raise RilletError(msg)
    source = definitions.source(source_name)
    keys = list(dict.fromkeys(definitions.join_keys(n) for n in names))
    task = bar.add_task(f"import {path.name}", total=max(path.stat().st_size, 1))
    return import_file(
        client,
        settings.project,
        source,
        path,
        settings.offline_root,
        keys,
        progress=lambda done, total: bar.update(task, completed=done, total=max(total, 1)),
    )
