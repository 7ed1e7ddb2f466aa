"""`rillet run`, `rillet push` and `rillet dlq`: the stream pipeline's command line.

`run` runs the Bytewax pipeline in the foreground (or until every partition is drained);
`push` validates a JSON-lines or Parquet file and appends it to the broker; `dlq` lists a
source's dead letters and can re-submit them once they pass validation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from features.errors import RilletError


def _settings() -> Any:
    from pipelines.settings import PipelineSettings

    return PipelineSettings()


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


@click.command()
@click.option("--workers", "-w", type=click.IntRange(1), default=None, help="Worker threads.")
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(1),
    default=1,
    help="Local processes, each with --workers threads (Python threads share one core).",
)
@click.option(
    "--until-idle",
    "--once",
    "until_idle",
    is_flag=True,
    help="Stop once every partition is drained (tests, demo, benches).",
)
@click.option("--no-recovery", is_flag=True, help="Run without Bytewax recovery state.")
@click.option(
    "--replay",
    "replays",
    nargs=2,
    multiple=True,
    metavar="SOURCE FILE",
    help="Read events of SOURCE from a JSON-lines/Parquet FILE instead of the broker.",
)
@click.option("--process-id", type=int, default=None, hidden=True)
@click.option("--addresses", default=None, hidden=True)
def run(
    workers: int | None,
    processes: int,
    until_idle: bool,
    no_recovery: bool,
    replays: tuple[tuple[str, str], ...],
    process_id: int | None,
    addresses: str | None,
) -> None:
    """Run the Bytewax stream pipeline: broker → validation → tiles in Redis + Parquet log.

    State (stream positions, lateness ledgers, tiles) is kept in RILLET_RECOVERY_DIR, so a
    restart resumes where the last epoch ended. Counters and freshness go to Redis and to
    Prometheus on RILLET_METRICS_PORT.
    """
    from features.logs import configure_logging
    from pipelines.metrics import serve_metrics
    from pipelines.run import registry_plans, run_pipeline

    settings = _settings()
    configure_logging(settings.log_level)
    if processes > 1 and process_id is None:
        sys.exit(_spawn_processes(processes, workers, until_idle, no_recovery, replays))
    files: dict[str, list[Path]] = {}
    for source, path in replays:
        files.setdefault(source, []).append(Path(path))
    client = _redis(settings.redis_url)
    plans = registry_plans(settings, client)
    for source in files:
        plans.current().definitions.source(source)  # unknown source: one clear error
    if settings.metrics_port:
        port = settings.metrics_port + (process_id or 0)
        try:
            serve_metrics(port, settings.metrics_host)
        except OSError as exc:
            click.echo(f"warning: metrics not served on port {port}: {exc}", err=True)
    run_pipeline(
        settings,
        plans,
        workers=workers,
        until_idle=until_idle,
        recovery=not no_recovery,
        files=files or None,
        addresses=addresses.split(";") if addresses else (),
        process_id=process_id or 0,
    )


def _spawn_processes(
    processes: int,
    workers: int | None,
    until_idle: bool,
    no_recovery: bool,
    replays: tuple[tuple[str, str], ...],
) -> int:
    """Run `processes` local cluster members of one flow; returns the worst exit code."""
    from pipelines.run import ensure_recovery_dir, free_ports

    settings = _settings()
    if not no_recovery:
        ensure_recovery_dir(settings.recovery_dir, settings.recovery_partitions)
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(processes))
    base = [sys.executable, "-m", "serving.cli.main", "run", "--addresses", addresses]
    if workers:
        base += ["--workers", str(workers)]
    if until_idle:
        base.append("--until-idle")
    if no_recovery:
        base.append("--no-recovery")
    for source, path in replays:
        base += ["--replay", source, path]
    children = [
        subprocess.Popen([*base, "--process-id", str(i)], env=os.environ.copy())
        for i in range(processes)
    ]
    try:
        codes = [child.wait() for child in children]
    except KeyboardInterrupt:
        for child in children:
            child.terminate()
        codes = [child.wait() for child in children]
    return max(codes, key=abs)


@click.command()
@click.argument("source")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse the whole file if any event is invalid (default: dead-letter the invalid).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def push(source: str, file: Path, strict: bool, as_json: bool) -> None:
    """Send the events of FILE (JSON lines or Parquet) to SOURCE's broker topic.

    Events are validated first. Invalid ones go to the source's dead-letter stream (see
    `rillet dlq`) and the rest are sent; with --strict nothing is sent if any is invalid.
    """
    from rich.progress import Progress

    from pipelines.push import push_file
    from pipelines.run import current_definitions

    settings = _settings()
    client = _redis(settings.redis_url)
    definitions, _ = current_definitions(settings, client)
    src = definitions.source(source)
    with Progress(disable=as_json, transient=False) as progress:
        task = progress.add_task(f"push {source}", total=file.stat().st_size)
        result = push_file(
            settings,
            client,
            src,
            file,
            strict=strict,
            progress=lambda done: progress.update(task, completed=done),
        )
    if as_json:
        click.echo(orjson.dumps(result.to_dict()).decode())
    else:
        click.echo(
            f"pushed {result.sent:,} event(s) of {source!r} from {file.name}; "
            f"{result.invalid:,} invalid → dead letters"
        )
    if result.refused:
        first = "; ".join(result.first_reasons)
        msg = f"{result.invalid:,} invalid event(s) in {file}; nothing was sent ({first})"
        raise RilletError(msg)


@click.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many.")
@click.option(
    "--replay", is_flag=True, help="Re-submit the listed letters that now pass validation."
)
@click.option("--include-late", is_flag=True, help="With --replay, also re-submit late events.")
def dlq(source: str, as_json: bool, limit: int | None, replay: bool, include_late: bool) -> None:
    """List SOURCE's dead letters (oldest first) with their reasons, or replay them.

    --replay validates each listed letter against the current schema, sends the valid ones
    to the broker and removes them from the dead-letter stream; the rest stay.
    """
    from pipelines.push import replay_letters
    from pipelines.run import current_definitions
    from pipelines.sinks.dead_letters import read_letters

    settings = _settings()
    client = _redis(settings.redis_url)
    definitions, _ = current_definitions(settings, client)
    src = definitions.source(source)
    letters = read_letters(client, settings.project, src.name, limit)
    if replay:
        result = replay_letters(settings, client, src, letters, include_late=include_late)
        if as_json:
            click.echo(orjson.dumps(result).decode())
        else:
            click.echo(
                f"replayed {result['replayed']:,} dead letter(s) of {source!r}; "
                f"{result['still_invalid']:,} still invalid, {result['skipped_late']:,} late "
                "skipped"
            )
        return
    if as_json:
        for letter in letters:
            click.echo(orjson.dumps(letter.to_dict()).decode())
        return
    _print_letters(source, letters)


def _print_letters(source: str, letters: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not letters:
        console.print(f"no dead letters for {source!r}")
        return
    table = Table(title=f"dead letters of {source} ({len(letters)})")
    for column in ("id", "time", "stage", "reasons", "correlation id", "payload"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        payload = letter.payload if len(letter.payload) <= 120 else letter.payload[:117] + "..."
        table.add_row(
            letter.id,
            letter.time,
            letter.stage,
            "\n".join(letter.reasons),
            letter.correlation_id or "",
            payload,
        )
    console.print(table)
