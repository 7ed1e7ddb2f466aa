"""A feasibility sketch: the tiles step of `bench/ingest.py`'s workload, vectorized per batch.

    python bench/vector_sketch.py [--events 1000000] [--keys 100000] [--rounds 3]

Not product code. It answers one question for issue 3: could a batch-at-a-time
re-expression of the tiles step, with only numpy and pyarrow (already dependencies), fit
the 20 µs of CPU per event that 50,000 events/s on one worker allows? `bench/floor.py`
shows that per-event CPython cannot (its floor is ~48 µs per event).

The sketch folds the workload's seven features (three views, five tile sizes) into
growable numpy columns, one row per (entity, tile); row ids come from pandas'
`Int64HashTable`, repeated rows accumulate through `ufunc.at`. It encodes one `HSET` per
(event, view) in the stream's layout (`t:<g>:<start>` tiles as JSON, and `m`) with
pyarrow string kernels, and sends them through `TileConnection`; each round runs it twice,
with today's hash per (entity, view) and with one hash per entity (fields namespaced by
view), and prints the CPU Redis spent too. Events and join keys are already columns (a
vectorized front half would make them so). It leaves out what the real step also does:
pending (future) events, replay marks per origin, loading entities from Redis, eviction,
pruning, expiry, JSON escaping of strings, orjson's exact float text (`100.0`, here
`100`), and event-id tie breaks (it orders equal times by arrival). At the end it reads
300 sampled entities back with `layout.decode_tiles` and compares every feature with
`ViewTiler` over the same events.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

M, H = 60_000_000, 3_600_000_000
PROJECT = "sketch"
_join = pc.binary_join_element_wise


def text(values: Any) -> pa.Array:
    """Numbers as strings (integers exact, floats in shortest round-trip form)."""
    return pc.cast(pa.array(values), pa.string())


def bulk(strings: pa.Array) -> pa.Array:
    """Each string as a RESP bulk string."""
    return _join("$", text(pc.binary_length(strings)), "\r\n", strings, "\r\n", "")


class Slot:
    """The tiles of one tile size of one view: (entity, tile start) → row, state columns."""

    def __init__(self, g: int, columns: dict[str, Any]) -> None:
        from pandas._libs.hashtable import Int64HashTable

        self.g, self.rows_of, self.size, self.capacity = g, Int64HashTable(), 0, 1 << 16
        self.col = {name: np.zeros(self.capacity, dtype=dt) for name, dt in columns.items()}

    def rows(self, entities: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row ids of the events' tiles (new tiles get new, zeroed rows) and tile starts."""
        start = ts - ts % self.g
        key = (entities << 32) | (start // self.g)
        rows = self.rows_of.lookup(key)
        missing = rows < 0
        if missing.any():
            new, where = np.unique(key[missing], return_inverse=True)
            ids = np.arange(self.size, self.size + len(new), dtype=np.int64)
            self.rows_of.map_keys_to_values(new, ids)
            self.size += len(new)
            if self.size > self.capacity:
                while self.capacity < self.size:
                    self.capacity *= 2
                for name, old in self.col.items():
                    grown = np.zeros(self.capacity, dtype=old.dtype)
                    grown[: len(old)] = old
                    self.col[name] = grown
            rows[missing] = ids[where]
        return rows, start

    def field(self, start: np.ndarray, prefix: str) -> pa.Array:
        return bulk(_join(f"{prefix}t:{self.g}:", text(start), ""))


def later(ts: np.ndarray, idx: np.ndarray, than_ts: np.ndarray, than_idx: np.ndarray) -> Any:
    return (ts > than_ts) | ((ts == than_ts) & (idx > than_idx))


def fold_last_n(col: dict[str, np.ndarray], rows: np.ndarray, ts: Any, idx: Any, v: Any) -> None:
    """Insert each event into its row's newest-first three slots; one pass per rank of a
    repeated row (rows rarely repeat within a batch)."""
    left = np.ones(len(rows), dtype=bool)
    while left.any():
        todo = np.flatnonzero(left)
        _, firsts = np.unique(rows[todo], return_index=True)
        pick = todo[firsts]
        left[pick] = False
        r, t, i, x = rows[pick], ts[pick], idx[pick], v[pick]
        k = col["k"][r]
        at = np.zeros(len(r), dtype=np.int64)  # slots newer than the event: a prefix
        for j in range(3):
            at += (j < k) & later(col[f"ts{j}"][r], col[f"idx{j}"][r], t, i)
        for j in (2, 1, 0):
            for name, new in (("ts", t), ("idx", i), ("v", x)):
                now = col[f"{name}{j}"][r]
                below = col[f"{name}{j - 1}"][r] if j else now
                col[f"{name}{j}"][r] = np.where(j < at, now, np.where(j == at, new, below))
        col["k"][r] = np.minimum(k + 1, 3)


def last_n_json(col: dict[str, np.ndarray], rows: np.ndarray) -> pa.Array:
    k = pa.array(col["k"][rows])
    items = [
        _join("," if j else "", "[", text(col[f"ts{j}"][rows]), ',"e', text(col[f"idx{j}"][rows]),
              '",', text(col[f"v{j}"][rows]), "]", "")
        for j in range(3)
    ]  # fmt: skip
    return _join(*[pc.if_else(pc.greater(k, j), items[j], "") for j in range(3)], "")


def child(
    events_path: Path, keys: int, batch: int, redis_url: str, one_hash: bool
) -> tuple[float, int]:
    """CPU seconds of folding, encoding and sending every event; feature values that differ
    from `ViewTiler` over 300 sampled entities."""
    import redis

    from pipelines.sinks.redis_writer import TileConnection

    raw = [orjson.loads(line) for line in events_path.read_bytes().split(b"\n")]
    events = len(raw)
    users = np.array([e["user_id"] for e in raw], dtype=object)
    ts_all = np.array([e["ts"] * 1000 for e in raw], dtype=np.int64)
    amount_all = np.array([e["amount"] for e in raw], dtype=np.float64)
    codes: dict[str, int] = {}
    merchant_all = np.array(
        [-1 if e["merchant"] is None else codes.setdefault(e["merchant"], len(codes)) for e in raw],
        dtype=np.int32,
    )
    names = pa.array(sorted(codes, key=codes.__getitem__))
    i64, f64 = np.int64, np.float64
    c1m = Slot(M, {"n": i64})
    c15m = Slot(15 * M, {"n": i64, "sum": f64})
    a1h = Slot(H, {"n": i64, "sum": f64, "max": f64})
    l1h = Slot(H, {"ts": i64, "idx": i64, "m": np.int32})
    l1m = Slot(M, {"k": np.int8, **{f"{x}{j}": t for j in range(3) for x, t in
                                    (("ts", i64), ("idx", i64), ("v", f64))}})  # fmt: skip
    max_ts = np.full(keys + 1, -1, dtype=np.int64)
    index: dict[str, int] = {}
    conn = TileConnection(redis.Redis.from_url(redis_url))
    gc.collect()
    gc.freeze()
    gc.disable()
    start_cpu = time.process_time()
    for first in range(0, events, batch):
        part = slice(first, first + batch)
        user, ts, amount, merchant = users[part], ts_all[part], amount_all[part], merchant_all[part]
        idx = np.arange(first, first + len(user), dtype=np.int64)
        ent = np.fromiter((index.setdefault(u, len(index)) for u in user), i64, len(user))
        np.maximum.at(max_ts, ent, ts)
        r1, s1 = c1m.rows(ent, ts)
        np.add.at(c1m.col["n"], r1, 1)
        r2, s2 = c15m.rows(ent, ts)
        np.add.at(c15m.col["n"], r2, 1)
        np.add.at(c15m.col["sum"], r2, amount)
        r3, s3 = a1h.rows(ent, ts)
        a1h.col["max"][r3[a1h.col["n"][r3] == 0]] = -np.inf
        np.add.at(a1h.col["n"], r3, 1)
        np.add.at(a1h.col["sum"], r3, amount)
        np.maximum.at(a1h.col["max"], r3, amount)
        r4, s4 = l1h.rows(ent, ts)
        has = np.flatnonzero(merchant >= 0)
        order = has[np.lexsort((idx[has], ts[has]))]  # oldest first: the last write wins
        rr, tt, ii = r4[order], ts[order], idx[order]
        win = order[later(tt, ii, l1h.col["ts"][rr], l1h.col["idx"][rr])]
        l1h.col["ts"][r4[win]], l1h.col["idx"][r4[win]] = ts[win], idx[win]
        l1h.col["m"][r4[win]] = merchant[win]
        r5, s5 = l1m.rows(ent, ts)
        fold_last_n(l1m.col, r5, ts, idx, amount)

        key_text = pa.array(user, pa.string())
        top = text(max_ts[ent])
        meta = bulk(_join('{"keys":["', key_text, '"],"v":"x","max_ts":', top, ',"folded":', top,
                          ',"pos":{"p0#0":[1,', text(idx), "]}}", ""))  # fmt: skip
        merchant_json = pc.fill_null(
            _join('"', pc.take(names, pa.array(l1h.col["m"][r4])), '"', ""), "null"
        )
        last = _join('{"last_merchant":[', text(l1h.col["ts"][r4]), ',"e',
                     text(l1h.col["idx"][r4]), '",', merchant_json, "]}", "")  # fmt: skip
        counts_15m = _join('{"count_24h":', text(c15m.col["n"][r2]), ',"amount_sum_24h":',
                           text(c15m.col["sum"][r2]), "}", "")  # fmt: skip
        amounts = _join('{"amount_mean_7d":[', text(a1h.col["n"][r3]), ",",
                        text(a1h.col["sum"][r3]), '],"amount_max_7d":',
                        text(a1h.col["max"][r3]), "}", "")  # fmt: skip
        last_3 = _join('{"last_3_amounts_1h":[', last_n_json(l1m.col, r5), "]}", "")
        c, a, v = ("v_counts:", "v_amounts:", "v_last:") if one_hash else ("", "", "")
        views = {
            "v_counts": [
                c1m.field(s1, c), bulk(_join('{"count_1h":', text(c1m.col["n"][r1]), "}", "")),
                c15m.field(s2, c), bulk(counts_15m), f"${len(c) + 1}\r\n{c}m\r\n", meta,
            ],
            "v_amounts": [a1h.field(s3, a), bulk(amounts), f"${len(a) + 1}\r\n{a}m\r\n", meta],
            "v_last": [l1h.field(s4, v), bulk(last), l1m.field(s5, v), bulk(last_3),
                       f"${len(v) + 1}\r\n{v}m\r\n", meta],
        }  # fmt: skip
        if one_hash:  # one hash per entity: all views' fields, namespaced by view
            views = {"": [f for fields in views.values() for f in fields]}
        packed: list[Any] = []
        for view, fields in views.items():
            suffix = f":{view}" if view else ""
            key = bulk(_join(f"rillet:{PROJECT}:{{", key_text, "}" + suffix, ""))
            head = f"*{2 + len(fields)}\r\n$4\r\nHSET\r\n"
            command = _join(head, key, *fields, "")
            buffers = command.buffers()
            offsets = np.frombuffer(buffers[1], dtype=np.int32)
            offsets = offsets[command.offset : command.offset + len(command) + 1]
            packed.append(memoryview(buffers[2])[offsets[0] : offsets[-1]])
        conn.send(packed, len(views) * len(user))
    conn.drain()
    spent = time.process_time() - start_cpu
    gc.enable()
    return spent, check(raw, redis.Redis.from_url(redis_url), one_hash)


def check(raw: list[dict[str, Any]], client: Any, one_hash: bool) -> int:
    """Feature values of 300 sampled entities, read back from Redis, that differ from
    `ViewTiler` over the same events (floats within 1e-9 relative)."""
    import ingest

    from features import layout
    from features.tiles import EntityTiles
    from pipelines.plan import PlanSource

    routes = PlanSource(ingest.bench_definitions()).current().views
    sample = set(random.Random(2).sample(sorted({e["user_id"] for e in raw}), 300))
    reference = {(view, user): EntityTiles() for view in routes for user in sample}
    for e in raw:
        if e["user_id"] in sample:
            for view, route in routes.items():
                route.tiler.apply(reference[(view, e["user_id"])], e["ts"] * 1000,
                                  e["event_id"], e, 2**62)  # fmt: skip
    as_of = max(e["ts"] for e in raw) * 1000 + 1
    wrong = 0
    for (view, user), state in reference.items():
        if one_hash:
            prefix = f"{view}:".encode()
            whole = client.hgetall(f"rillet:{PROJECT}:{{{user}}}")
            fields = {k[len(prefix) :]: x for k, x in whole.items() if k.startswith(prefix)}
        else:
            fields = client.hgetall(f"rillet:{PROJECT}:{{{user}}}:{view}")
        stored = layout.decode_tiles(fields)
        want = routes[view].tiler.evaluate(state, as_of)
        got = routes[view].tiler.evaluate(stored or EntityTiles(), as_of)
        for name, value in want.items():
            if isinstance(value, float) and got[name] is not None:
                wrong += abs(got[name] - value) > 1e-9 * max(1.0, abs(value))
            else:
                wrong += got[name] != value
    return wrong


def main() -> None:
    import ingest
    import redis

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--one-hash", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--events-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.events_file, args.keys, args.batch, args.redis_url, args.one_hash)
        print(orjson.dumps(result).decode())
        return
    layouts = {"hash per (entity, view)": False, "hash per entity": True}
    worker: dict[str, list[float]] = {name: [] for name in layouts}
    server: dict[str, list[float]] = {name: [] for name in layouts}
    with ingest.scratch_redis(args.redis_url, "rillet-sketch-") as (url, work):
        events = ingest.events_file(work, args.events, args.keys)
        client = redis.Redis.from_url(url)
        for rnd in range(args.rounds):
            for name, one_hash in layouts.items():
                client.flushdb()
                before = ingest.redis_cpu_seconds(client)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--events-file", str(events), "--keys",
                     str(args.keys), "--batch", str(args.batch), "--redis-url", url,
                     *(["--one-hash"] if one_hash else [])],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                cpu, wrong = orjson.loads(out.stdout)
                worker[name].append(cpu / args.events * 1e6)
                # the check's reads are a few hundred HGETALLs: noise against 1M HSETs
                server[name].append((ingest.redis_cpu_seconds(client) - before) / args.events * 1e6)
                print(f"  round {rnd + 1} {name:24s} worker {worker[name][-1]:5.1f} µs/event,"
                      f" Redis {server[name][-1]:5.1f} µs/event; {wrong} sampled feature"
                      " values differ from ViewTiler", flush=True)  # fmt: skip
    print(
        f"\nvectorized tiles sketch ({args.events:,} events, {args.keys:,} keys, 3 views, batches"
        f" of {args.batch:,}; medians of {args.rounds}; CPU per event):"
    )
    for name in layouts:
        us = statistics.median(worker[name])
        print(
            f"  {name:24s} worker {us:5.1f} µs (fold, encode, send: at most {1e6 / us:>7,.0f}"
            f" events/s)   Redis {statistics.median(server[name]):5.1f} µs"
        )
    print("  50,000 events/s on one worker allows 20.0 µs per event.")


if __name__ == "__main__":
    main()
