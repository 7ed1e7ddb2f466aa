"""Benchmark of the stream pipeline: throughput, freshness and memory (issue 3).

    python bench/ingest.py [--events 1000000] [--keys 100000] [--rate 5000] [--seconds 30]

Starts a private redis-server unless `--redis-url` is given. Prints, all in one run so the
figures share one machine state:

1. end-to-end events/s with `events` generated events already in the Redis streams → tiles
   in Redis + Parquet log (recovery on), for 1 and 2 workers, next to a bare Bytewax flow
   that reads the same streams and discards them (the engine's own floor);
2. peak RSS of the 1-worker run (`keys` entities × 3 views);
3. freshness (event appended → its tiles visible in Redis) p50/p99 at a steady `rate`, over
   `seconds` that span an epoch close (its snapshots and Parquet files run on the worker).

Each pipeline run is a child process (`--child`), so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import redis
from hiredis import pack_command

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from features import layout  # noqa: E402
from features.model import (  # noqa: E402
    Checks,
    Column,
    Definitions,
    Entity,
    Feature,
    FeatureView,
    Source,
)
from features.tiles import default_granularity  # noqa: E402

S = 1_000_000
M, H, D = 60 * S, 3600 * S, 86400 * S
PARTITIONS = 4


def bench_definitions() -> Definitions:
    """One source keyed by user feeding three views of the user (7 features in all)."""

    def f(name: str, function: str, column: str | None, window: int, n: int | None = None) -> Any:
        return Feature(name, function, column, window, default_granularity(window), n)

    source = Source(
        name="events",
        topic="events",
        key=("user_id",),
        event_id="event_id",
        timestamp="ts",
        allowed_lateness=H,
        schema=(
            Column("event_id", "string"),
            Column("user_id", "string"),
            Column("amount", "float", checks=Checks(ge=0)),
            Column("merchant", "string", nullable=True),
            Column("ts", "timestamp"),
        ),
    )
    views = (
        FeatureView(
            "v_counts",
            "user",
            "events",
            7 * D,
            (
                f("count_1h", "count", None, H),
                f("count_24h", "count", None, D),
                f("amount_sum_24h", "sum", "amount", D),
            ),
        ),
        FeatureView(
            "v_amounts",
            "user",
            "events",
            7 * D,
            (
                f("amount_mean_7d", "mean", "amount", 7 * D),
                f("amount_max_7d", "max", "amount", 7 * D),
            ),
        ),
        FeatureView(
            "v_last",
            "user",
            "events",
            7 * D,
            (
                f("last_merchant", "last", "merchant", 7 * D),
                f("last_3_amounts_1h", "last_n", "amount", H, 3),
            ),
        ),
    )
    return Definitions(
        entities={"user": Entity("user", ("user_id",))},
        sources={"events": source},
        views={v.name: v for v in views},
    )


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (make test installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no", "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def scratch_redis(url: str | None, prefix: str) -> Iterator[tuple[str, Path]]:
    """A scratch directory and a Redis URL: `url`, or a private redis-server started in the
    directory. The server stops and the directory goes when the block ends."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    server = None
    if url is None:
        server, url = start_redis(work)
    try:
        yield url, work
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def append(client: redis.Redis, project: str, events: list[dict[str, Any]]) -> None:
    """XADD events to their partitions in packed chunks (fast, so generation is not timed)."""
    conn = client.connection_pool.get_connection()
    try:
        for start in range(0, len(events), 20_000):
            chunk = events[start : start + 20_000]
            data = b"".join(
                pack_command(
                    (
                        "XADD",
                        layout.stream_key(
                            project, "events", layout.partition_of([e["user_id"]], PARTITIONS)
                        ),
                        "*",
                        "d",
                        orjson.dumps(e),
                    )
                )
                for e in chunk
            )
            conn.send_packed_command([data])
            for _ in chunk:
                conn.read_response()
    finally:
        client.connection_pool.release(conn)


def events_file(directory: Path, n: int, keys: int) -> Path:
    """`generate(n, keys)` as JSON lines in `directory`: generated once, read by every child
    process of a benchmark (generating and encoding 1M events takes longer than reading)."""
    path = directory / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in generate(n, keys)))
    return path


def generate(n: int, keys: int, seed: int = 1) -> list[dict[str, Any]]:
    """`n` events over the last 6 hours (broker order ≈ time order) for `keys` users."""
    rng = random.Random(seed)
    now = time.time_ns() // 1000
    start = now - 6 * H
    merchants = [f"m{i}" for i in range(200)] + [None]
    return [
        {
            "event_id": f"e{i}",
            "user_id": f"u{rng.randrange(keys)}",
            "amount": round(rng.random() * 200, 2),
            "merchant": rng.choice(merchants),
            "ts": (start + i * (6 * H) // n + rng.randrange(-M, M)) // 1000,
            "correlation_id": f"c{i}",
        }
        for i in range(n)
    ]


def clear_outputs(client: redis.Redis, project: str) -> None:
    """Delete everything a run wrote (keep the input streams)."""
    keep = f"rillet:{project}:stream:"
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"rillet:{project}:*", count=5000):
        if not key.decode().startswith(keep):
            batch.append(key)
            if len(batch) >= 5000:
                client.unlink(*batch)
                batch = []
    if batch:
        client.unlink(*batch)


def settings_env(redis_url: str, project: str, work: Path, workers: int) -> dict[str, str]:
    return {
        "RILLET_REDIS_URL": redis_url,
        "RILLET_PROJECT": project,
        "RILLET_OFFLINE_ROOT": str(work / "offline"),
        "RILLET_RECOVERY_DIR": str(work / "recovery"),
        "RILLET_RECOVERY_PARTITIONS": "16",
        "RILLET_STREAM_PARTITIONS": str(PARTITIONS),
        "RILLET_WORKERS": str(workers),
        "RILLET_METRICS_PORT": "0",
        "RILLET_LOG_LEVEL": "WARNING",
    }


def time_stages() -> dict[str, float]:
    """Wrap the pipeline's steps so each adds its wall time to the returned dict.

    The steps run on the worker thread one after another, so their times add up to the
    run's busy time; what is left is Bytewax itself (exchange, scheduling, snapshots).
    """
    from pipelines import dataflow, decoding, judging, tile_router, tiling, view_tiles
    from pipelines.sinks import parquet_log
    from pipelines.sources import redis_streams

    spent: dict[str, float] = {}

    def wrap(owner: Any, attr: str, label: str, generator: bool = False) -> None:
        fn = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            if generator:
                out = list(out)
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
            return out

        setattr(owner, attr, timed)

    wrap(redis_streams._StreamPartition, "next_batch", "read (XREAD + parse)")
    wrap(decoding.Decoder, "__call__", "decode + validate", generator=True)
    wrap(judging.LedgerShard, "on_batch", "judge (lateness, dedup)")
    wrap(dataflow.ToLog, "__call__", "log: Arrow table")
    # The worker thread's share of the log (full buffers go to the sink's writer thread).
    wrap(parquet_log._LogPartition, "write_batch", "log: Parquet files")
    wrap(parquet_log._LogPartition, "snapshot", "log: Parquet files")
    wrap(tile_router.TileRouter, "__call__", "tiles: route", generator=True)
    wrap(tiling.TileEngine, "_load", "tiles: load misses")
    wrap(view_tiles.ViewTiles, "apply", "tiles: fold")
    wrap(tiling.TileEngine, "_write", "tiles: encode + send")
    wrap(tiling.TileEngine, "flush", "tiles: total")
    wrap(tiling.TileEngine, "drain", "tiles: drain at epoch")
    return spent


def child(mode: str, until_idle: bool) -> None:
    """Run one flow in this process and print timings and peak RSS as JSON."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.run import cli_main

    from pipelines.plan import PlanSource
    from pipelines.run import run_pipeline
    from pipelines.settings import PipelineSettings
    from pipelines.sources.redis_streams import RedisStreamSource

    settings = PipelineSettings()
    plans = PlanSource(bench_definitions())
    stages = time_stages() if os.environ.get("BENCH_STAGES") else {}
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "bare":

        class Discard(StatelessSinkPartition[Any]):
            def write_batch(self, items: list[Any]) -> None:
                pass

        class DiscardSink(DynamicSink[Any]):
            def build(self, step_id: str, worker_index: int, worker_count: int) -> Discard:
                return Discard()

        flow = Dataflow("bare")
        source = RedisStreamSource(
            settings.redis_url, settings.project, PARTITIONS, plans, settings.read_count, True
        )
        op.output("discard", op.input("read", flow, source), DiscardSink())
        cli_main(flow, workers_per_process=settings.workers)
    else:
        addresses = os.environ.get("BENCH_ADDRESSES")
        run_pipeline(
            settings,
            plans,
            until_idle=until_idle,
            addresses=addresses.split(";") if addresses else (),
            process_id=int(os.environ.get("BENCH_PROCESS", "0")),
        )
    out = {
        "seconds": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stages": stages,
    }
    print(orjson.dumps(out).decode(), flush=True)


def run_child(env: dict[str, str], mode: str, processes: int = 1) -> dict[str, Any]:
    """Run the flow in `processes` child processes (a local cluster); their figures.

    With several processes, each measures from its own start; the cluster only runs once
    all have joined, so the shortest time is the cluster's and the RSS is the sum.
    """
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    procs = []
    for i in range(processes):
        extra = {"BENCH_ADDRESSES": addresses, "BENCH_PROCESS": str(i)} if processes > 1 else {}
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--child", mode],
                env={**os.environ, **env, **extra},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"child {mode} failed:\n{err.decode()[-3000:]}")
        results.append(orjson.loads(out.decode().strip().splitlines()[-1]))
    return {
        "seconds": min(r["seconds"] for r in results),
        "cpu": sum(r["cpu"] for r in results),
        "maxrss_mib": sum(r["maxrss_mib"] for r in results),
        "stages": results[0].get("stages") or {},
    }


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used so far (user + system, all its threads)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --------------------------------------------------------------------------- sections


def throughput(redis_url: str, work: Path, events: int, keys: int, runs: int) -> float:
    client = redis.Redis.from_url(redis_url)
    project = "bench"
    print(f"generating {events:,} events over {keys:,} keys ...", flush=True)
    data = generate(events, keys)
    append(client, project, data)
    del data
    entries = sum(client.xlen(layout.stream_key(project, "events", p)) for p in range(PARTITIONS))
    print(f"  {entries:,} entries in the streams\n")
    results: dict[str, list[dict[str, float]]] = {}
    plan = [("bare", 1, 1), ("pipeline", 1, 1), ("pipeline", 2, 1), ("pipeline", 1, 2)]
    for round_ in range(runs):
        for mode, workers, processes in plan:
            clear_outputs(client, project)
            run_dir = work / f"{mode}-{workers}-{processes}-{round_}"
            env = settings_env(redis_url, project, run_dir, workers)
            if mode == "pipeline":
                env["BENCH_STAGES"] = "1"  # a clock read per step call: negligible
            label = f"{mode} {workers}w" + (f" x {processes} processes" if processes > 1 else "")
            redis_cpu = redis_cpu_seconds(client)
            result = run_child(env, "bare" if mode == "bare" else "pipeline-idle", processes)
            result["redis_cpu"] = redis_cpu_seconds(client) - redis_cpu
            if mode == "pipeline":
                applied = int(
                    client.hget(layout.source_stats_key(project, "events"), "applied") or 0
                )
                if applied != events:
                    sys.exit(f"pipeline applied {applied} of {events} events")
            results.setdefault(label, []).append(result)
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"  {label:26s} {events / result['seconds']:>10,.0f} events/s"
                  f"  ({result['seconds']:.1f} s wall, {result['cpu']:.1f} s CPU,"
                  f" Redis {result['redis_cpu']:.1f} s CPU,"
                  f" peak RSS {result['maxrss_mib']:,.0f} MiB)", flush=True)  # fmt: skip
    print("\nend-to-end throughput (median of runs):")
    bare = statistics.median(events / r["seconds"] for r in results["bare 1w"])
    for name, rs in results.items():
        rate = statistics.median(events / r["seconds"] for r in rs)
        cpu_rate = statistics.median(events / r["cpu"] for r in rs)
        print(f"  {name:26s} {rate:>10,.0f} events/s ({rate / bare:5.1%} of the bare read)"
              f"   {cpu_rate:>10,.0f} events per CPU-second")  # fmt: skip
    redis_us = statistics.median(r["redis_cpu"] for r in results["pipeline 1w"]) / events * 1e6
    core = redis_us * 50_000 / 1e6
    print(f"\nRedis's own CPU per event, 1 worker: {redis_us:.1f} µs (tile writes and reads,"
          f" XREADs; at 50,000 events/s: {core:.2f} of a core)")  # fmt: skip
    rss = statistics.median(r["maxrss_mib"] for r in results["pipeline 1w"])
    print(f"\npeak RSS, 1 worker, {keys:,} keys x 3 views: {rss:,.0f} MiB\n")
    last = results["pipeline 1w"][-1]
    print("where the 1-worker run's wall time went (µs per event; tiles: total includes")
    print("its load, fold and encode lines):")
    for stage, spent in last["stages"].items():
        print(f"  {stage:26s} {spent / events * 1e6:7.1f} µs  ({spent / last['seconds']:5.1%})")
    # already inside "tiles: total"
    inner = ("tiles: load misses", "tiles: fold", "tiles: encode + send")
    rest = last["seconds"] - sum(v for k, v in last["stages"].items() if k not in inner)
    share = rest / last["seconds"]
    print(f"  {'Bytewax and the rest':26s} {rest / events * 1e6:7.1f} µs  ({share:5.1%})\n")
    return statistics.median(events / r["seconds"] for r in results["pipeline 1w"])


def freshness(redis_url: str, work: Path, rate: int, seconds: float, workers: int) -> None:
    """Steady `rate` events/s; probe events on fresh entities; time until their key appears."""
    client = redis.Redis.from_url(redis_url)
    project = f"fresh{rate}w{workers}"
    env = settings_env(redis_url, project, work / project, workers)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", "pipeline-tail"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stats_key = layout.source_stats_key(project, "events")
    warm = {"event_id": "warm", "user_id": "warm", "amount": 1.0, "merchant": None,
            "ts": time.time_ns() // 1_000_000}  # fmt: skip
    append(client, project, [warm])
    deadline = time.monotonic() + 120
    while client.hget(stats_key, "applied") is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"pipeline did not start:\n{proc.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
        time.sleep(0.05)
    appended: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()
    rng = random.Random(2)

    def produce() -> None:
        tick, per_tick = 0.01, max(1, rate // 100)
        next_at, i = time.perf_counter(), 0
        end = next_at + seconds
        while next_at < end:
            now_ms = time.time_ns() // 1_000_000
            batch = []
            probes = []
            for k in range(per_tick):
                user = f"u{rng.randrange(100_000)}"
                if k == 0:  # one probe per tick on a never-seen entity
                    user = f"probe{i}"
                    probes.append(user)
                batch.append({"event_id": f"f{i}", "user_id": user, "amount": 1.0,
                              "merchant": "m", "ts": now_ms})  # fmt: skip
                i += 1
            append(client, project, batch)
            t = time.perf_counter()
            for user in probes:
                appended[user] = t
            next_at += tick
            time.sleep(max(0.0, next_at - time.perf_counter()))
        done.set()

    def poll() -> None:
        reader = redis.Redis.from_url(redis_url)
        while not done.is_set() or len(seen) < len(appended):
            waiting = [u for u in list(appended) if u not in seen]
            if waiting:
                pipe = reader.pipeline(transaction=False)
                for user in waiting:
                    pipe.exists(layout.view_key(project, "v_counts", user))
                found = pipe.execute()
                t = time.perf_counter()
                for user, ok in zip(waiting, found, strict=True):
                    if ok:
                        seen[user] = t
            if done.is_set() and time.perf_counter() - max(appended.values(), default=0) > 10:
                break
            time.sleep(0.002)

    t_start = time.perf_counter()
    producer = threading.Thread(target=produce)
    poller = threading.Thread(target=poll)
    producer.start()
    poller.start()
    producer.join()
    sent_for = time.perf_counter() - t_start
    poller.join()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    lat = sorted(seen[u] - appended[u] for u in seen)
    sent = len(appended) * max(1, rate // 100)
    if not lat:
        sys.exit("no probe became visible")
    p50 = lat[len(lat) // 2]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"freshness, {workers} worker(s), at a steady {sent / sent_for:,.0f} events/s for"
          f" {seconds:.0f} s ({len(lat)} of {len(appended)} probes seen):")  # fmt: skip
    print(f"  p50 {p50 * 1000:,.0f} ms   p99 {p99 * 1000:,.0f} ms   max {lat[-1] * 1000:,.0f} ms\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1, help="rounds of the throughput runs")
    parser.add_argument("--rate", type=int, nargs="+", default=[5000])
    parser.add_argument("--fresh-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="freshness run; spans an epoch close (20 s)"
    )
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument("--child", choices=["bare", "pipeline-idle", "pipeline-tail"])
    args = parser.parse_args()
    if args.child:
        child(args.child, until_idle=args.child != "pipeline-tail")
        return
    with scratch_redis(args.redis_url, "rillet-bench-") as (url, work):
        print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}\n")
        if not args.skip_throughput:
            throughput(url, work, args.events, args.keys, args.runs)
        if not args.skip_freshness:
            for rate in args.rate:
                for workers in args.fresh_workers:
                    freshness(url, work, rate, args.seconds, workers)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
