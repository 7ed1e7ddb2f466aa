"""`rillet validate`, `rillet plan` and `rillet apply`: definitions to the applied registry.

Options fall back to `RILLET_*` settings: `RILLET_DEFINITIONS` (default
`features/definitions`), `RILLET_REDIS_URL`, `RILLET_PROJECT`, and for the JSON mirror of
the registry `RILLET_REGISTRY_MIRROR`, else `registry.json` beside the offline root
(`RILLET_OFFLINE_ROOT`, default `./data/offline`, hence `./data/registry.json`).
Exit codes: 0 ok, 2 invalid definitions, 3 breaking change refused, 1 anything else.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import redis

    from features.model import Definitions
    from features.registry import Plan, Registry

EXIT_INVALID = 2


class RegistryCliSettings(BaseSettings):
    """The settings of the registry commands; command-line options take precedence."""

    model_config = SettingsConfigDict(env_prefix="RILLET_", extra="ignore", frozen=True)

    definitions: Path = Path("features/definitions")
    redis_url: str = "redis://127.0.0.1:6379/0"
    project: str = "default"
    offline_root: Path = Path("data/offline")
    registry_mirror: Path | None = None

    @property
    def mirror(self) -> Path:
        """Where the applied registry is mirrored as JSON."""
        return self.registry_mirror or self.offline_root.parent / "registry.json"


def _settings(**given: Any) -> RegistryCliSettings:
    return RegistryCliSettings(**{k: v for k, v in given.items() if v is not None})


definitions_option = click.option(
    "--definitions",
    type=click.Path(path_type=Path),
    help="Definitions directory or file [env RILLET_DEFINITIONS; default features/definitions].",
)
redis_option = click.option(
    "--redis-url", help="Redis URL [env RILLET_REDIS_URL; default redis://127.0.0.1:6379/0]."
)
project_option = click.option("--project", help="Project namespace [env RILLET_PROJECT].")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
mirror_option = click.option(
    "--mirror",
    type=click.Path(path_type=Path),
    help="JSON mirror of the applied registry [env RILLET_REGISTRY_MIRROR; default "
    "<RILLET_OFFLINE_ROOT>/../registry.json, i.e. ./data/registry.json].",
)


@click.command()
@definitions_option
@json_option
def validate(definitions: Path | None, as_json: bool) -> None:
    """Check definition files and list every problem as path:line:column: message."""
    settings = _settings(definitions=definitions)
    defs = _load(settings.definitions, as_json)
    from features.registry import content_hash

    digest = content_hash(defs)
    if as_json:
        _echo_json(
            {
                "ok": True,
                "definitions": str(settings.definitions),
                "content_hash": digest,
                "entities": sorted(defs.entities),
                "sources": sorted(defs.sources),
                "views": {name: len(v.features) for name, v in sorted(defs.views.items())},
            }
        )
        return
    features = sum(len(v.features) for v in defs.views.values())
    click.echo(
        f"ok: {settings.definitions}: {len(defs.entities)} entities, {len(defs.sources)} "
        f"sources, {len(defs.views)} views, {features} features (hash {digest[:12]})"
    )


@click.command()
@definitions_option
@redis_option
@project_option
@json_option
def plan(
    definitions: Path | None, redis_url: str | None, project: str | None, as_json: bool
) -> None:
    """Show what apply would change: added, removed, changed; compatible or breaking."""
    from features.registry import content_hash, load_applied
    from features.registry import plan as make_plan

    settings = _settings(definitions=definitions, redis_url=redis_url, project=project)
    defs = _load(settings.definitions, as_json)
    client = _client(settings.redis_url)
    try:
        current = load_applied(client, settings.project)
    finally:
        client.close()
    result = make_plan(current, defs)
    new_hash = content_hash(defs)
    if as_json:
        _echo_json(_plan_json(settings.project, current, result, new_hash))
    else:
        _print_plan(settings.project, current, result, new_hash)


@click.command()
@definitions_option
@redis_option
@project_option
@mirror_option
@click.option("--allow-breaking", is_flag=True, help="Apply even if a change is breaking.")
@json_option
def apply(
    definitions: Path | None,
    redis_url: str | None,
    project: str | None,
    mirror: Path | None,
    allow_breaking: bool,
    as_json: bool,
) -> None:
    """Store the definitions as the applied registry (Redis, mirrored to a JSON file)."""
    from features.registry import apply as apply_registry
    from features.registry import load_applied
    from features.registry import plan as make_plan

    settings = _settings(
        definitions=definitions, redis_url=redis_url, project=project, registry_mirror=mirror
    )
    defs = _load(settings.definitions, as_json)
    client = _client(settings.redis_url)
    try:
        before = load_applied(client, settings.project)
        registry = apply_registry(
            client, settings.project, defs, settings.mirror, allow_breaking=allow_breaking
        )
    finally:
        client.close()
    changed = before is None or before.content_hash != registry.content_hash
    result = make_plan(before, defs)
    if as_json:
        doc = _plan_json(settings.project, before, result, registry.content_hash)
        doc.update(applied=changed, mirror=str(settings.mirror), applied_at=registry.applied_at)
        _echo_json(doc)
        return
    if not changed:
        click.echo(
            f"no changes: registry {registry.content_hash[:12]} is already applied to project "
            f"{settings.project!r} (mirror {settings.mirror})"
        )
        return
    _print_plan(settings.project, before, result, registry.content_hash, applied=True)
    click.echo(f"applied {registry.content_hash[:12]} to project {settings.project!r}")
    click.echo(f"mirrored to {settings.mirror}")


def _load(path: Path, as_json: bool) -> Definitions:
    """Load definitions; with `--json`, problems are printed as JSON (exit code 2)."""
    from features.errors import DefinitionError
    from features.loader import load_definitions

    try:
        return load_definitions(path)
    except DefinitionError as exc:
        if not as_json:
            raise
        problems = [
            {"path": p.path, "line": p.line, "column": p.column, "message": p.message}
            for p in exc.problems
        ]
        _echo_json({"ok": False, "problems": problems})
        sys.exit(EXIT_INVALID)


def _client(url: str) -> redis.Redis:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    from features.errors import StorageError

    try:
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 1),  # a CLI fails fast
        )
    except ValueError as exc:
        msg = f"invalid Redis URL (RILLET_REDIS_URL / --redis-url): {exc}"
        raise StorageError(msg) from None


def _plan_json(
    project: str, current: Registry | None, result: Plan, new_hash: str
) -> dict[str, Any]:
    views = sorted(set(result.new_versions) | set(result.current_versions))
    return {
        "project": project,
        "current_hash": current.content_hash if current else None,
        "new_hash": new_hash,
        "changes": [
            {"kind": c.kind, "subject": c.subject, "detail": c.detail, "breaking": c.breaking}
            for c in result.changes
        ],
        "breaking": len(result.breaking),
        "versions": {
            v: {"current": result.current_versions.get(v), "new": result.new_versions.get(v)}
            for v in views
        },
    }


def _print_plan(
    project: str, current: Registry | None, result: Plan, new_hash: str, applied: bool = False
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    base = current.content_hash[:12] if current else "nothing applied"
    console.print(f"project {project!r}: {base} → {new_hash[:12]}")
    if not result.changes:
        console.print("no changes")
    else:
        table = Table("change", "subject", "detail", "compatibility")
        for c in result.changes:
            flag = "[bold red]breaking[/]" if c.breaking else "[green]compatible[/]"
            table.add_row(c.kind, c.subject, c.detail, flag)
        console.print(table)
    versions = Table("view", "current version", "new version")
    for view in sorted(set(result.new_versions) | set(result.current_versions)):
        old, new = result.current_versions.get(view), result.new_versions.get(view)
        versions.add_row(view, _cell(old), _cell(new) if new is not None else "removed")
    console.print(versions)
    if result.breaking and not applied:
        console.print(
            f"{len(result.breaking)} breaking change(s): `rillet apply` will refuse them "
            "unless a view is renamed or --allow-breaking is given"
        )


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _echo_json(doc: Any) -> None:
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
