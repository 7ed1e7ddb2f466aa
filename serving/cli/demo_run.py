"""The `rillet demo` scenario: one pass through the whole system on generated data.

Redis (project-owned unless `RILLET_REDIS_URL` is set) → `rillet apply` → generated events
→ `rillet push` → `rillet run` until drained → `rillet serve` → feature vectors and status
over HTTP → `rillet export`. Every step runs the real command in a subprocess, as a user
would; this module only orchestrates and prints.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from rich.console import Console

from features import layout
from features.loader import load_definitions
from features.model import Definitions
from pipelines.generator import GeneratorConfig, SourceEvents, generate
from serving.cli import demo_output as out
from serving.cli.children import Child, ChildError, run_child, start_child, wait_until_ready
from serving.cli.local_redis import LocalRedis, free_port, start_local_redis

PROJECT = "demo"


@dataclass(frozen=True)
class DemoOptions:
    """What `rillet demo` was asked to do."""

    events: int
    seed: int
    state_dir: Path
    definitions: Path
    redis_url: str | None
    port: int | None
    spine_rows: int
    timeout: float


@dataclass
class DemoRun:
    """One demo run: the processes it started and what it learned along the way."""

    options: DemoOptions
    console: Console
    redis_server: LocalRedis | None = None
    api: Child | None = None
    env: dict[str, str] = field(default_factory=dict)
    events: dict[str, SourceEvents] = field(default_factory=dict)
    defs: Definitions = field(init=False)

    def __post_init__(self) -> None:
        self.defs = load_definitions(self.options.definitions)  # fail fast on bad files

    def run(self) -> None:
        """Run every step; whatever happens, stop what was started."""
        started = time.monotonic()
        try:
            url = self._redis()
            self._prepare(url)
            with self._step("apply the example definitions"):
                run_child("apply", ["apply"], self.env, self.logs, timeout=60)
            self._generate()
            self._push_and_stream()
            base = self._serve()
            self._vectors(base)
            self._status(base)
            self._export()
        finally:
            self._shutdown()
        self.console.print(
            f"\n[bold green]demo finished in {time.monotonic() - started:.1f} s[/] "
            f"(state and logs in {self.options.state_dir})"
        )

    @property
    def logs(self) -> Path:
        return self.options.state_dir / "logs"

    @contextlib.contextmanager
    def _step(self, title: str) -> Iterator[None]:
        started = time.monotonic()
        with self.console.status(f"{title} …"):
            yield
        self.console.print(f"[green]✓[/] {title} [dim]({time.monotonic() - started:.1f} s)[/]")

    def _redis(self) -> str:
        if self.options.redis_url:
            self.console.print(
                f"[green]✓[/] using the configured Redis {_safe(self.options.redis_url)}"
            )
            return self.options.redis_url
        with self._step("start a project-owned redis-server"):
            self.redis_server = start_local_redis(self.options.state_dir / "redis", persist=False)
        self.console.print(
            f"  redis-server pid {self.redis_server.process.pid} on {self.redis_server.url}, "
            f"data dir {self.redis_server.directory}"
        )
        return self.redis_server.url

    def _prepare(self, url: str) -> None:
        """Fresh directories and a clean `demo` project, then the environment of the children."""
        state = self.options.state_dir
        for name in ("offline", "recovery", "events", "logs"):
            shutil.rmtree(state / name, ignore_errors=True)
            (state / name).mkdir(parents=True, exist_ok=True)
        client = redis.Redis.from_url(url)
        try:
            stale = list(client.scan_iter(match=f"rillet:{PROJECT}:*", count=1000))
            for start in range(0, len(stale), 1000):
                client.delete(*stale[start : start + 1000])
        finally:
            client.close()
        self.env = {
            **os.environ,
            "RILLET_REDIS_URL": url,
            "RILLET_PROJECT": PROJECT,
            "RILLET_BROKER": "redis",
            "RILLET_DEFINITIONS": str(self.options.definitions.resolve()),
            "RILLET_OFFLINE_ROOT": str((state / "offline").resolve()),
            "RILLET_RECOVERY_DIR": str((state / "recovery").resolve()),
            "RILLET_METRICS_PORT": str(free_port()),
            "RILLET_LOG_LEVEL": "WARNING",
        }

    def _generate(self) -> None:
        with self._step(f"generate {self.options.events:,} events over the last 7 days"):
            config = GeneratorConfig(events=self.options.events, seed=self.options.seed)
            self.events = generate(self.defs, config)
            for name, events in self.events.items():
                events.write_jsonl(self.options.state_dir / "events" / f"{name}.jsonl")
        self.console.print(out.generated_table(self.events))

    def _push_and_stream(self) -> None:
        """Push the events and stream them through the Bytewax pipeline at the same time.

        The pipeline starts once the producers are under way and runs with `--until-idle`.
        Should it catch up with the producers and stop early, it is started again and
        resumes from its recovery snapshot, until every event has been judged.
        """
        total = sum(len(e.events) for e in self.events.values())
        valid = total - sum(e.counts()["invalid"] for e in self.events.values())
        started = time.monotonic()
        pushes = [
            start_child(
                f"push-{name}",
                ["push", name, str(self.options.state_dir / "events" / f"{name}.jsonl")],
                self.env,
                self.logs,
            )
            for name in sorted(self.events)
        ]
        pipeline: Child | None = None
        runs, last_seen = 0, -1
        try:
            with out.stream_progress(self.console) as progress:
                sent = progress.add_task("push into the broker (rillet push)", total=valid)
                done = progress.add_task("stream through Bytewax (rillet run)", total=total)
                while True:
                    pushing = _pushing(pushes)
                    queued, judged = self._queued(), self._processed()
                    progress.update(sent, completed=min(queued, valid))
                    progress.update(done, completed=min(judged, total))
                    if pipeline is None and (not pushing or queued >= min(valid // 10, 20_000)):
                        pipeline = start_child(
                            "pipeline", ["run", "--until-idle"], self.env, self.logs
                        )
                        runs += 1
                    elif pipeline is not None and not pipeline.running():
                        if pipeline.process.returncode != 0:
                            code = pipeline.process.returncode
                            msg = f"the pipeline exited with code {code}:\n{pipeline.tail()}"
                            raise ChildError(msg)
                        if not pushing and (judged >= total or judged == last_seen):
                            break  # drained (a shortfall shows up in the status below)
                        pipeline, last_seen = None, judged  # caught up early: run again
                    if time.monotonic() - started > self.options.timeout:
                        msg = f"pushing and streaming took longer than {self.options.timeout:.0f} s"
                        raise ChildError(msg + (f":\n{pipeline.tail()}" if pipeline else ""))
                    time.sleep(0.3)
        finally:
            for child in [*pushes, *([pipeline] if pipeline else [])]:
                child.stop(signal.SIGINT)
        elapsed = time.monotonic() - started
        runs_note = "" if runs == 1 else f", {runs} pipeline runs"
        self.console.print(
            f"[green]✓[/] pushed {total:,} events and streamed them through the Bytewax pipeline "
            f"[dim]({elapsed:.1f} s, {total / max(elapsed, 1e-9):,.0f} events/s{runs_note})[/]"
        )

    def _serve(self) -> str:
        port = self.options.port or free_port()
        base = f"http://127.0.0.1:{port}"
        with self._step(f"start the API (rillet serve) on {base}"):
            self.api = start_child("api", ["serve", "--port", str(port)], self.env, self.logs)
            wait_until_ready(self.api, f"{base}/readyz", timeout=60)
        return base

    def _vectors(self, base: str) -> None:
        self.console.print("\n[bold]Feature vectors[/] (POST /v1/features/online)")
        with httpx.Client(base_url=base, timeout=10) as client:
            for entity, views in out.views_by_entity(self.defs).items():
                keys = list(self.defs.entities[entity].join_keys)
                entities = out.busiest_entities(self.events, self.defs, views, keys, n=3)
                if not entities:
                    continue
                body = {"features": [f"{v}:*" for v in views], "entities": entities}
                response = client.post("/v1/features/online", json=body)
                _check(response, "/v1/features/online")
                self.console.print(out.vector_table(entity, response.json()))

    def _status(self, base: str) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            response = client.get("/v1/status")
        _check(response, "/v1/status")
        report = response.json()
        self.console.print("\n[bold]Status[/] (GET /v1/status)")
        self.console.print(out.status_table(report, self.events))
        mismatches = out.count_mismatches(report, self.events)
        if mismatches:
            self.console.print("[yellow]counts differ from the generator's labels:[/]")
            for line in mismatches:
                self.console.print(f"  [yellow]{line}[/]")
        else:
            self.console.print(
                "[green]✓[/] applied, duplicate, late and invalid counts "
                "match the generator's labels"
            )

    def _export(self) -> None:
        state = self.options.state_dir
        spine_path, refs = out.write_spine(
            self.events, self.defs, state / "spine.parquet", self.options.spine_rows
        )
        target = state / "training.parquet"
        args = ["export", "--spine", str(spine_path), "--out", str(target)]
        for ref in refs:
            args += ["--features", ref]
        with self._step(
            f"write a training set with rillet export ({self.options.spine_rows} rows)"
        ):
            run_child("export", args, self.env, self.logs, timeout=self.options.timeout)
        self.console.print(out.export_preview(target))

    def _shutdown(self) -> None:
        if self.api is not None:
            self.api.stop(signal.SIGTERM, timeout=15)
        if self.redis_server is not None:
            self.redis_server.stop()
            self.console.print(
                f"[green]✓[/] stopped redis-server pid {self.redis_server.process.pid}"
            )

    def _queued(self) -> int:
        """How many entries the producers appended to the demo's streams."""
        from pipelines.settings import PipelineSettings

        partitions = PipelineSettings().stream_partitions
        client = redis.Redis.from_url(self.env["RILLET_REDIS_URL"])
        try:
            pipe = client.pipeline(transaction=False)
            for source in self.defs.sources.values():
                for p in range(partitions):
                    pipe.xlen(layout.stream_key(PROJECT, source.topic, p))
            return int(sum(pipe.execute()))
        finally:
            client.close()

    def _processed(self) -> int:
        """Events the pipeline has judged so far (from its counters in Redis)."""
        client = redis.Redis.from_url(self.env["RILLET_REDIS_URL"])
        try:
            pipe = client.pipeline(transaction=False)
            for name in self.defs.sources:
                pipe.hmget(layout.source_stats_key(PROJECT, name), out.COUNTERS)
            return sum(int(float(v)) for row in pipe.execute() for v in row if v is not None)
        except redis.RedisError:
            return 0
        finally:
            client.close()


def _pushing(pushes: list[Child]) -> bool:
    """Whether a producer is still running; a failed one raises `ChildError`."""
    for child in pushes:
        code = child.process.poll()
        if code not in (None, 0):
            msg = f"{child.name} failed with exit code {code}:\n{child.tail()}"
            raise ChildError(msg)
    return any(child.running() for child in pushes)


def _check(response: httpx.Response, path: str) -> None:
    if response.status_code != 200:
        msg = f"{path} answered HTTP {response.status_code}: {response.text[:500]}"
        raise ChildError(msg)


def _safe(url: str) -> str:
    """A Redis URL without its password."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"
