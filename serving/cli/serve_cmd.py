"""`rillet serve`: run the HTTP API with uvicorn (the app factory, one or more workers)."""

from __future__ import annotations

import os
import shutil
import tempfile

import click
from pydantic import ValidationError as SettingsValidationError

from features.logs import configure_logging
from serving.settings import Settings, get_settings


def cli_settings() -> Settings:
    """The server settings, or one clear line naming the bad `RILLET_*` variable."""
    try:
        return get_settings()
    except SettingsValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).upper()
        msg = f"invalid setting RILLET_{where}: {first['msg']}"
        raise click.ClickException(msg) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1), help="Worker processes."
)
def serve(host: str, port: int, workers: int) -> None:
    """Serve online features, event push, catalog and status over HTTP (SPEC §6).

    Configuration comes from RILLET_* variables (RILLET_REDIS_URL, RILLET_PROJECT,
    RILLET_API_KEYS, RILLET_MAX_ENTITIES, ...); see docs/api.md.
    """
    import uvicorn

    settings = cli_settings()
    configure_logging(settings.log_level)
    shared_metrics = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared_metrics = tempfile.mkdtemp(prefix="rillet-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_metrics
    try:
        uvicorn.run(
            "serving.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=10,
        )
    finally:
        if shared_metrics is not None:
            shutil.rmtree(shared_metrics, ignore_errors=True)
