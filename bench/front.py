"""Benchmark of the pipeline's front half, stage by stage, in-process (no Bytewax).

    python bench/front.py [--events 200000] [--keys 100000] [--rounds 5] [--rev REV]

Appends `events` events of `bench/ingest.py`'s generator (a fraction `--invalid` spoiled)
to a private redis-server, then each round a child process runs the stages over them as
the flow does, one batch at a time through every stage (then dropped): `read` (one
`next_batch` of a Redis Streams partition, partitions in turn), `decode` (the `validate`
step: JSON, schema, shard split), `judge` (one `LedgerShard` per shard key, fresh each
round) and `log` (the `to_log` step's Arrow table). It prints the median process CPU per
event of each stage, and the time one snapshot of every shard's ledgers takes at the end.
`FRONT_NO_GC=1` turns the garbage collector off in the children (its share, by difference).
With `--rev`, the same child also runs on that git revision's `features/` and `pipelines/`
(interleaved rounds against the same Redis data), and the ratios are printed.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
TREE = os.environ.get("FRONT_TREE")  # a child running another revision's code
sys.path[:0] = [*([TREE] if TREE else []), str(ROOT), str(ROOT / "bench")]

STAGES = ("read", "decode", "judge", "log")
PROJECT = "front"


def child(redis_url: str, count: int) -> dict[str, float]:
    """One pass of every stage over the streams; CPU seconds per stage."""
    import ingest

    from pipelines.decoding import Decoder
    from pipelines.judging import LedgerShard
    from pipelines.plan import PlanSource
    from pipelines.records import AcceptedBatch, RawBatch
    from pipelines.sinks.parquet_log import events_to_table
    from pipelines.sources.redis_streams import RedisStreamSource

    def log_table(source: Any, batch: Any) -> Any:
        """What the revision's `to_log` step does: the decoder's table, or (older
        revisions) a table built from the events."""
        table = getattr(batch, "table", None)
        return events_to_table(source, batch.events, batch.ingested) if table is None else table

    assert Decoder.__module__ in sys.modules
    here = Path(sys.modules[Decoder.__module__].__file__ or "")
    assert here.is_relative_to(TREE or ROOT), here  # the revision asked for
    plans = PlanSource(ingest.bench_definitions())
    source = RedisStreamSource(redis_url, PROJECT, ingest.PARTITIONS, plans, count, True)
    # The collector as `rillet run` tunes it: young collections every 50,000 allocations,
    # survivors frozen about once a second (here: every 50,000 events, the target rate).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if os.environ.get("FRONT_NO_GC"):
        gc.disable()
    frozen_at = 0
    validator = plans.current().sources["events"].validator
    validator.validate([orjson.dumps(ingest.generate(1, 1)[0])])  # pandera's lazy imports
    cpu = time.process_time
    out = dict.fromkeys(STAGES, 0.0)
    decoder = Decoder(plans)
    logics: dict[str, LedgerShard] = {}
    partitions = [source.build_part("read", part, None) for part in source.list_parts()]
    rows = 0
    while partitions:  # one batch per partition in turn, each through every stage and dropped
        partition = partitions.pop(0)
        t0 = cpu()
        try:
            raws = [x for x in partition.next_batch() if isinstance(x, RawBatch)]
        except StopIteration:
            partition.close()
            continue
        partitions.append(partition)
        t1 = cpu()
        by_key: dict[str, list[Any]] = {}
        for raw in raws:
            for item in decoder(raw):
                if isinstance(item, tuple):
                    by_key.setdefault(item[0], []).append(item[1])
        t2 = cpu()
        judged: list[Any] = []
        for key in sorted(by_key):  # Bytewax visits keys in sorted order
            logic = logics.get(key)
            if logic is None:
                logic = logics[key] = LedgerShard(plans, None, True)
            judged.extend(logic.on_batch(by_key[key])[0])
        t3 = cpu()
        for item in judged:
            if isinstance(item, AcceptedBatch):  # the `to_log` step
                definition = plans.current().sources[item.source].source
                rows += len(log_table(definition, item))
        t4 = cpu()
        del raws, by_key, judged
        if rows - frozen_at >= 50_000:
            gc.freeze()
            frozen_at = rows
        for stage, took in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            out[stage] += took
    t = cpu()
    for logic in logics.values():
        logic.snapshot()
    out["snapshot"] = cpu() - t
    out["rows"] = rows
    return out


def export(rev: str, into: Path) -> Path:
    """`features/` and `pipelines/` of git revision `rev`, extracted under `into`."""
    tree = into / rev.replace("/", "_")
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "features", "pipelines"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_child(redis_url: str, count: int, tree: Path | None) -> dict[str, float]:
    env = {**os.environ}
    env.pop("FRONT_TREE", None)
    if tree is not None:
        env["FRONT_TREE"] = str(tree)
    cmd = [sys.executable, __file__, "--child", "--redis-url", redis_url, "--count", str(count)]
    proc = subprocess.run(cmd, env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"child failed:\n{proc.stderr.decode()[-3000:]}")
    result: dict[str, float] = orjson.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result


def spoil(events: list[dict[str, Any]], fraction: float) -> None:
    """Make every 1/fraction-th event invalid in one of three ways (dead-letter path)."""
    if fraction <= 0:
        return
    step = max(1, round(1 / fraction))
    for n, i in enumerate(range(0, len(events), step)):
        kind = n % 3
        if kind == 0:
            events[i]["amount"] = -1.0
        elif kind == 1:
            events[i]["user_id"] = None
        else:
            events[i]["ts"] = "yesterday"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--invalid", type=float, default=0.0, help="fraction spoiled")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000, help="entries per XREAD")
    parser.add_argument("--rev", default=None, help="git revision to compare against")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(orjson.dumps(child(args.redis_url, args.count)).decode(), flush=True)
        return

    import ingest
    import redis

    with ingest.scratch_redis(args.redis_url, "rillet-front-") as (url, work):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"rillet:{PROJECT}:*"):
            client.unlink(key)
        events = ingest.generate(args.events, args.keys)
        spoil(events, args.invalid)
        ingest.append(client, PROJECT, events)
        del events
        trees: dict[str, Path | None] = {"current": None}
        if args.rev:
            trees = {args.rev: export(args.rev, work), "current": None}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                results[name].append(run_child(url, args.count, tree))
        n = args.events
        print(f"{n:,} events over {args.keys:,} keys, {args.invalid:.1%} invalid, XREAD count"
              f" {args.count}; median of {args.rounds} rounds, CPU µs per event:")  # fmt: skip
        header = "".join(f"{s:>9s}" for s in (*STAGES, "total"))
        print(f"  {'code':12s}{header}   log rows   judge snapshot (all keys, once)")
        medians: dict[str, dict[str, float]] = {}
        for name, rs in results.items():
            med = {s: statistics.median(r[s] for r in rs) / n * 1e6 for s in STAGES}
            med["total"] = statistics.median(sum(r[s] for s in STAGES) for r in rs) / n * 1e6
            medians[name] = med
            cells = "".join(f"{med[s]:9.2f}" for s in (*STAGES, "total"))
            snap = statistics.median(r["snapshot"] for r in rs) * 1000
            print(f"  {name:12s}{cells}   {int(rs[-1]['rows']):,}   {snap:,.0f} ms")
        if args.rev:
            base, cur = medians[args.rev], medians["current"]
            cells = "".join(f"{cur[s] / base[s]:9.2f}" for s in (*STAGES, "total"))
            print(f"  {'ratio':12s}{cells}   (current / {args.rev})")


if __name__ == "__main__":
    main()
