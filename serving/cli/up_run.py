"""`rillet up`: Redis, the pipeline and the API in the foreground until Ctrl-C.

The children run in sessions of their own, so Ctrl-C reaches only this process, which
stops them in order: the API (SIGTERM, graceful), the pipeline (SIGINT, as if Ctrl-C were
pressed in its own terminal; Bytewax recovery makes any stop safe), then Redis (SIGTERM,
AOF flushed).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from serving.cli.children import Child, run_child, start_child, wait_until_ready
from serving.cli.local_redis import LocalRedis, start_local_redis

ANY_HOST = ("0.0.0.0", "::")  # noqa: S104  (bind addresses we translate for the probe)


@dataclass(frozen=True)
class UpOptions:
    """What `rillet up` was asked to run."""

    host: str
    port: int
    workers: int
    api_workers: int
    state_dir: Path
    redis_url: str | None
    apply: bool


def run_up(options: UpOptions, console: Console) -> bool:
    """Run until Ctrl-C (True) or until a child dies on its own (False)."""
    server: LocalRedis | None = None
    pipeline: Child | None = None
    api: Child | None = None
    ok = True
    try:
        url = options.redis_url
        if url is None:
            server = start_local_redis(options.state_dir / "redis", persist=True)
            url = server.url
            console.print(
                f"[green]✓[/] redis-server pid {server.process.pid} on {url} "
                f"(data in {server.directory})"
            )
        env = {**os.environ, "RILLET_REDIS_URL": url}
        if server is not None and "RILLET_RECOVERY_DIR" not in os.environ:
            # Stream positions in the recovery state belong to this Redis's streams: keep
            # them together, so removing .rillet/ resets both.
            env["RILLET_RECOVERY_DIR"] = str(options.state_dir / "recovery")
        if options.apply:
            run_child("apply", ["apply"], env, None, timeout=60)
        pipeline = start_child("pipeline", ["run", "--workers", str(options.workers)], env, None)
        serve = ["serve", "--host", options.host, "--port", str(options.port)]
        api = start_child("api", [*serve, "--workers", str(options.api_workers)], env, None)
        probe = "127.0.0.1" if options.host in ANY_HOST else options.host
        wait_until_ready(api, f"http://{probe}:{options.port}/readyz", timeout=60)
        console.print(
            f"[bold green]Rillet is up[/]: API http://{probe}:{options.port} (OpenAPI at /docs), "
            f"pipeline pid {pipeline.process.pid}.\n"
            f"In another terminal: [bold]export RILLET_REDIS_URL={url}[/] and use "
            "`rillet push SOURCE FILE`, `rillet status`, `rillet dlq SOURCE`.\n"
            "Press Ctrl-C to stop."
        )
        ok = _watch([pipeline, api], console)
    except KeyboardInterrupt:
        console.print("\nstopping …")
    finally:
        for child, sig in ((api, signal.SIGTERM), (pipeline, signal.SIGINT)):
            if child is not None:
                child.stop(sig, timeout=30)
                console.print(f"[green]✓[/] {child.name} stopped")
        if server is not None:
            server.stop()
            console.print(f"[green]✓[/] redis-server stopped (data kept in {server.directory})")
    return ok


def _watch(children: list[Child], console: Console) -> bool:
    """Block until Ctrl-C (raises KeyboardInterrupt) or a child exits (returns False)."""
    while True:
        for child in children:
            if not child.running():
                console.print(
                    f"[red]{child.name} exited with code {child.process.returncode}[/]; "
                    "shutting down"
                )
                return False
        time.sleep(0.5)
