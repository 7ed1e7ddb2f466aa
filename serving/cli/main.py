"""The `rillet` entry point: a click group whose commands are imported only when used.

Lazy loading keeps `rillet validate` fast (no Bytewax or FastAPI import) and lets each
command group live in its own module. Every `RilletError` becomes one clear line on
stderr and a non-zero exit code; never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from features.errors import BreakingChangeError, DefinitionError, RilletError

# command name -> ("module:attribute", one-line help shown by `rillet --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": (
        "serving.cli.registry_cmds:validate",
        "Check definition files; list every problem.",
    ),
    "plan": ("serving.cli.registry_cmds:plan", "Show what apply would change in the registry."),
    "apply": ("serving.cli.registry_cmds:apply", "Store the definitions as the applied registry."),
    "run": ("serving.cli.pipeline_cmds:run", "Run the Bytewax stream pipeline."),
    "push": ("serving.cli.pipeline_cmds:push", "Send events from a JSON-lines or Parquet file."),
    "dlq": ("serving.cli.pipeline_cmds:dlq", "List or replay a source's dead letters."),
    "serve": ("serving.cli.serve_cmd:serve", "Serve the HTTP API."),
    "status": ("serving.cli.status_cmd:status", "Show lag, dead letters and freshness."),
    "export": ("serving.cli.offline_cmds:export", "Write a point-in-time training set."),
    "backfill": ("serving.cli.offline_cmds:backfill", "Recompute online tiles from the log."),
    "demo": ("serving.cli.demo_cmd:demo", "Run the end-to-end demo and exit."),
    "up": ("serving.cli.demo_cmd:up", "Run Redis, pipeline and API in the foreground."),
}

EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_BREAKING = 3


class LazyGroup(click.Group):
    """A group that imports a command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rillet")
def cli() -> None:
    """Rillet: a real-time ML feature store (definitions, pipeline, serving, training data)."""


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI, turning expected errors into one line and an exit code."""
    try:
        return cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BreakingChangeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BREAKING)
    except DefinitionError as exc:
        click.echo(str(exc), err=True)
        click.echo(f"error: {len(exc.problems)} problem(s); nothing was applied", err=True)
        sys.exit(EXIT_INVALID)
    except RilletError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
