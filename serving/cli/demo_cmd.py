"""`rillet demo` (the whole loop once, on generated data) and `rillet up` (run it for real).

Both start a project-owned `redis-server` under `.rillet/` when `RILLET_REDIS_URL` is not
set, run the other `rillet` commands as child processes, and stop everything they started
— at the end of the demo, or on Ctrl-C for `up`.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click
from pydantic_settings import BaseSettings, SettingsConfigDict

EXIT_CHILD_FAILED = 1


class LocalSettings(BaseSettings):
    """The settings `demo` and `up` read themselves; the children read their own."""

    model_config = SettingsConfigDict(env_prefix="RILLET_", extra="ignore", frozen=True)

    redis_url: str | None = None  # unset: start a project-owned redis-server
    definitions: Path = Path("features/definitions")


@click.command()
@click.option(
    "--events",
    default=300_000,
    show_default=True,
    type=click.IntRange(100),
    help="Regular events to generate over all sources (duplicates, late and invalid on top).",
)
@click.option("--seed", default=7, show_default=True, type=int, help="Generator seed.")
@click.option(
    "--state-dir",
    default=Path(".rillet/demo"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo keeps Redis data, events, logs, the offline log and the export.",
)
@click.option("--port", default=None, type=int, help="API port (default: a free one).")
@click.option(
    "--spine-rows", default=1000, show_default=True, type=click.IntRange(1), help="Export rows."
)
@click.option(
    "--timeout",
    default=150.0,
    show_default=True,
    type=float,
    help="Seconds any one step may take before the demo gives up.",
)
def demo(
    events: int, seed: int, state_dir: Path, port: int | None, spine_rows: int, timeout: float
) -> None:
    """Run the end-to-end demo on generated data, print what it does, and exit.

    Starts Redis when RILLET_REDIS_URL is not set, applies the example definitions,
    generates a week of events (with duplicates, late and invalid ones), pushes them, streams
    them through the Bytewax pipeline, serves the API, prints feature vectors and the status,
    and writes a point-in-time training export. Uses the Redis project `demo`.
    """
    from rich.console import Console

    from serving.cli.demo_run import DemoOptions, DemoRun

    settings = LocalSettings()
    options = DemoOptions(
        events=events,
        seed=seed,
        state_dir=state_dir.resolve(),
        definitions=settings.definitions,
        redis_url=settings.redis_url,
        port=port,
        spine_rows=spine_rows,
        timeout=timeout,
    )
    with _terminate_as_interrupt():
        DemoRun(options=options, console=Console(highlight=False)).run()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="API interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="API port.")
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1), help="Pipeline workers."
)
@click.option(
    "--api-workers", default=1, show_default=True, type=click.IntRange(1), help="API workers."
)
@click.option(
    "--state-dir",
    default=Path(".rillet"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the project-owned Redis keeps its data (AOF) and the logs.",
)
@click.option("--apply/--no-apply", default=True, show_default=True, help="Apply definitions.")
def up(host: str, port: int, workers: int, api_workers: int, state_dir: Path, apply: bool) -> None:
    """Run Redis, the pipeline and the API in the foreground until Ctrl-C.

    Redis is project-owned (port 6479 when free, data in .rillet/redis with AOF on) unless
    RILLET_REDIS_URL is set. On Ctrl-C the API stops first, then the pipeline, then Redis.
    """
    from rich.console import Console

    from serving.cli.up_run import UpOptions, run_up

    options = UpOptions(
        host=host,
        port=port,
        workers=workers,
        api_workers=api_workers,
        state_dir=state_dir.resolve(),
        redis_url=LocalSettings().redis_url,
        apply=apply,
    )
    with _terminate_as_interrupt():
        ok = run_up(options, Console(highlight=False))
    if not ok:
        sys.exit(EXIT_CHILD_FAILED)


class _terminate_as_interrupt:
    """Treat SIGTERM like Ctrl-C inside the block, so `finally` clean-ups run.

    A shell starts background jobs with SIGINT ignored, and children inherit that; handling
    SIGINT here gives the children the default back, so SIGINT can stop the pipeline.
    """

    def __enter__(self) -> None:
        self.previous = signal.signal(signal.SIGTERM, self._raise)
        self.previous_int = signal.getsignal(signal.SIGINT)
        if self.previous_int is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous)
        signal.signal(signal.SIGINT, self.previous_int)

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt
