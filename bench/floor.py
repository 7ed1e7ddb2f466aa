"""The floor of the stream's per-event work in CPython: what one worker could reach at best.

    python bench/floor.py [--events 1000000] [--keys 100000] [--rounds 3]

Runs the work every event of `bench/ingest.py`'s workload needs (three views, seven
features) in the plainest loop: no Bytewax, no schema checks, no lateness, no Parquet, no
recovery, no cache eviction, the garbage collector off. Stages are cumulative, each adding
one piece of the real code to the one before:

- `decode`: `orjson.loads` of each payload, the event time to µs;
- `dedup`: a set of event ids per source key (the judge's duplicate check, alone);
- `fold`: `ViewTiler.apply_into` of every view, with the replay marks (the tiles step);
- `encode`: `pack_stream_write` (below: the per-event design's), one `HSET` per (event, view);
- `send`: those bytes to a private redis-server through `TileConnection`, replies counted.

Each (stage, round) is a fresh child process; it prints the median CPU µs per event and
the events/s that cost allows, next to the 20 µs per event that 50,000 events/s allows.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

_FIELD_NAMES: dict[Any, bytes] = {}  # tile key → its field name as a RESP bulk string
_dumps = orjson.dumps


def tile_field(tile: Any) -> bytes:
    """The RESP bulk string of a tile's hash field name (`layout.tile_field`), cached."""
    name = _FIELD_NAMES.get(tile)
    if name is None:
        if len(_FIELD_NAMES) > 100_000:
            _FIELD_NAMES.clear()
        from features import layout
        from pipelines.sinks.redis_tiles import bulk

        name = _FIELD_NAMES[tile] = bulk(layout.tile_field(tile).encode())
    return name


def pack_stream_write(
    key: bytes,
    head: bytes,
    state: Any,
    changed: Iterable[Any],
    marks: dict[str, Any],
    clear_pending: bool,
) -> bytes:
    """The per-event design's `HSET` of one entity as RESP bytes (one command), as the
    stream's tiles step wrote it before it folded column-wise (kept here as the floor's).

    `key` is the RESP bulk string of the hash key and `head` the entity's `meta_head`. It
    sets the changed tiles, `m` (`max_ts`, `folded`, the replay marks as `pos`) and `p`
    when events are pending, or as `[]` when `clear_pending` (it held some before), so no
    `HDEL` is needed.
    """
    # Few, large appends: this runs once per (entity, view) written, ~3 times per event.
    parts = [b"", b"$4\r\nHSET\r\n", key]
    count = 4  # HSET, key, "m" and its value
    tiles, names = state.tiles, _FIELD_NAMES
    for tile in changed:
        value = tiles.get(tile)
        if value is not None:
            data = _dumps(value)
            parts += (names.get(tile) or tile_field(tile), b"$%d\r\n" % len(data), data, b"\r\n")
            count += 2
    max_ts = state.max_ts
    meta = b'%b,"max_ts":%b,"folded":%d,"pos":%b}' % (
        head,
        b"null" if max_ts is None else b"%d" % max_ts,
        state.folded_until,
        _dumps(marks),
    )
    parts += (b"$1\r\nm\r\n$%d\r\n" % len(meta), meta, b"\r\n")
    if state.pending:
        data = _dumps(state.pending)
        parts += (b"$1\r\np\r\n$%d\r\n" % len(data), data, b"\r\n")
        count += 2
    elif clear_pending:
        parts.append(b"$1\r\np\r\n$2\r\n[]\r\n")
        count += 2
    parts[0] = b"*%d\r\n" % count
    return b"".join(parts)


STAGES = ("decode", "dedup", "fold", "encode", "send")
TARGET = 50_000  # events/s on one worker (issue 3)
BATCH = 2000
PROJECT = "floor"


def child(stage: int, events_path: Path, redis_url: str) -> float:
    """CPU seconds of stages `0..stage` over the events of `events_path` (JSON lines)."""
    import ingest
    import redis

    from features import layout
    from features.durations import now_us
    from features.tiles import EntityTiles
    from pipelines.plan import PlanSource
    from pipelines.sinks.redis_tiles import bulk, meta_head
    from pipelines.sinks.redis_writer import TileConnection

    payloads = events_path.read_bytes().split(b"\n")
    routes = list(PlanSource(ingest.bench_definitions()).current().views.values())
    conn = TileConnection(redis.Redis.from_url(redis_url))
    seen: dict[str, set[str]] = {}
    # per view: entity -> [state, marks, RESP key, meta head]
    cached: list[dict[str, list[Any]]] = [{} for _ in routes]
    now = now_us()
    gc.collect()
    gc.freeze()
    gc.disable()
    start = time.process_time()
    position = 0
    for first in range(0, len(payloads), BATCH):
        packed: list[bytes] = []
        for payload in payloads[first : first + BATCH]:
            event = orjson.loads(payload)
            ts = event["ts"] = event["ts"] * 1000
            if stage < 1:
                continue
            user, eid = event["user_id"], event["event_id"]
            ids = seen.get(user)
            if ids is None:
                ids = seen[user] = set()
            if eid in ids:
                continue
            ids.add(eid)
            if stage < 2:
                continue
            position += 1
            for route, cache in zip(routes, cached, strict=True):
                item = cache.get(user)
                if item is None:
                    key = bulk(layout.view_key(PROJECT, route.view.name, user).encode())
                    item = cache[user] = [EntityTiles(), {}, key, meta_head([user], route.version)]
                state, marks = item[0], item[1]
                last = marks.get("p0#0")
                if last is not None and (1, position) <= last:
                    continue  # the replay guard's cost: never taken, positions only grow
                marks["p0#0"] = (1, position)
                changed: set[tuple[int, int]] = set()
                route.tiler.apply_into(state, ts, eid, event, now, changed)
                if stage >= 3:
                    packed.append(pack_stream_write(item[2], item[3], state, changed, marks, False))
        if stage >= 4:
            conn.send(packed, len(packed))
    if stage >= 4:
        conn.drain()
    spent = time.process_time() - start
    gc.enable()
    return spent


def main() -> None:
    import ingest
    import redis

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--events-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    if args.child is not None:
        print(child(args.child, args.events_file, args.redis_url))
        return

    costs: dict[int, list[float]] = {i: [] for i in range(len(STAGES))}
    with ingest.scratch_redis(args.redis_url, "rillet-floor-") as (url, work):
        events = ingest.events_file(work, args.events, args.keys)
        client = redis.Redis.from_url(url)
        for rnd in range(args.rounds):
            for i, name in enumerate(STAGES):
                client.flushdb()
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(i), "--events-file", str(events),
                     "--redis-url", url],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                us = float(out.stdout.strip()) / args.events * 1e6
                costs[i].append(us)
                print(f"  round {rnd + 1} {name:7s} {us:6.1f} µs/event", flush=True)

    budget = 1e6 / TARGET
    print(
        f"\nper-event floor in CPython ({args.events:,} events, {args.keys:,} keys, 3 views;"
        f" median of {args.rounds}; stages are cumulative):"
    )
    before = 0.0
    for i, name in enumerate(STAGES):
        us = statistics.median(costs[i])
        print(
            f"  + {name:7s} {us:6.1f} µs/event (+{us - before:5.1f})"
            f"  -> at most {1e6 / us:>9,.0f} events/s  ({us / budget:4.2f}x the budget)"
        )
        before = us
    print(f"  {TARGET:,} events/s on one worker allows {budget:.1f} µs of CPU per event.")


if __name__ == "__main__":
    main()
