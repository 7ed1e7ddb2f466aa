"""`rillet status`: pipeline lag, dead letters and counters per source; freshness per view.

Reads the same data as `GET /v1/status` (`serving.report`) in one Redis round trip.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from features.errors import RegistryError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status(as_json: bool) -> None:
    """Show what the pipeline has done: lag, dead letters, counters, freshness."""
    import redis

    from features.durations import now_us
    from features.registry import load_applied
    from serving.cli.serve_cmd import cli_settings
    from serving.report import build_status, queue_status, registry_info

    settings = cli_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        registry = load_applied(client, settings.project)
        if registry is None:
            msg = f"no registry is applied to project {settings.project!r}: run `rillet apply`"
            raise RegistryError(msg)
        pipe = client.pipeline(transaction=False)
        queue_status(pipe, settings.project, registry.definitions)
        replies = pipe.execute()
    except redis.RedisError as exc:
        msg = f"cannot read status from Redis at {settings.redis_url.rpartition('@')[2]}: {exc}"
        raise click.ClickException(msg) from None
    finally:
        client.close()
    info = registry_info(registry.content_hash, registry.applied_at)
    report = build_status(registry.definitions, info, replies, now_us())
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        _print_tables(report)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _print_tables(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    reg = report["registry"]
    console.print(f"registry {reg['content_hash'][:12]} applied {_cell(reg['applied_at'])}")
    sources = Table(title="sources")
    columns = ("name", "applied", "duplicates", "late", "invalid", "dead_letters")
    for name in (*columns, "lag_messages", "lag_seconds", "updated_at"):
        sources.add_column(name, justify="left" if name in ("name", "updated_at") else "right")
    for row in report["sources"]:
        sources.add_row(
            *(_cell(row[c]) for c in (*columns, "lag_messages", "lag_seconds", "updated_at"))
        )
    console.print(sources)
    views = Table(title="feature views")
    for name in ("name", "source", "freshness", "age_seconds"):
        views.add_column(name, justify="right" if name == "age_seconds" else "left")
    for row in report["views"]:
        views.add_row(*(_cell(row[c]) for c in ("name", "source", "freshness", "age_seconds")))
    console.print(views)
