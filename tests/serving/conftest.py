"""Serving fixtures: the real app under uvicorn on a free loopback port, real Redis, real tiles.

`serve(**settings)` starts `create_app(Settings(...))` under uvicorn in a thread (fast, so
each test gets a server configured as it needs); `rillet serve` itself runs as a
subprocess in `test_cli_serve.py`. Tiles are written with the pipeline's own code
(`ViewTiler.apply` + `write_tiles`), never by hand.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from features.loader import load_definitions
from features.model import Definitions
from features.registry import apply_registry
from features.tiles import EntityTiles, ViewTiler
from pipelines.sinks.redis_tiles import write_tiles
from serving.app import create_app
from serving.settings import Settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "t"


@dataclass
class Api:
    """A running server and an HTTP client bound to it."""

    url: str
    http: httpx.Client
    settings: Settings


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[Api]:
    """Serve `create_app(settings)` with uvicorn in a thread until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            yield Api(url, http, settings)
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="session")
def defs() -> Definitions:
    """The example feature repository (features/definitions)."""
    return load_definitions(ROOT / "features" / "definitions")


@pytest.fixture
def applied(redis_client: redis.Redis, defs: Definitions) -> Definitions:
    """The example definitions applied as the registry of project `t`."""
    apply_registry(redis_client, PROJECT, defs)
    return defs


@pytest.fixture
def serve(redis_url: str) -> Iterator[Callable[..., Api]]:
    """Start servers on the clean test database: `serve(api_keys="k:read", ...)`."""
    stack = contextlib.ExitStack()

    def start(**overrides: Any) -> Api:
        options: dict[str, Any] = {
            "redis_url": redis_url,
            "project": PROJECT,
            "registry_poll_s": 0.1,
            "log_level": "WARNING",
        }
        options.update(overrides)
        return stack.enter_context(running(Settings(**options)))

    with stack:
        yield start


@pytest.fixture
def api(applied: Definitions, serve: Callable[..., Api]) -> Api:
    """A server over the applied example registry, no API keys."""
    return serve()


def write_entity_events(
    client: redis.Redis,
    defs: Definitions,
    view_name: str,
    key_values: Sequence[Any],
    events: Sequence[tuple[int, Any, Mapping[str, Any]]],
    now: int,
    project: str = PROJECT,
) -> EntityTiles:
    """Fold `(ts, event_id, row)` events of one entity with the real tiler and write them."""
    view = defs.views[view_name]
    tiler = ViewTiler(view)
    state = EntityTiles()
    changed: set[tuple[int, int]] = set()
    for ts, eid, row in events:
        changed |= tiler.apply(state, ts, eid, row, now=now)
    dropped = tiler.prune(state, now)
    pipe = client.pipeline(transaction=False)
    write_tiles(pipe, project, view, list(key_values), state, changed - dropped, dropped)
    pipe.execute()
    return state
