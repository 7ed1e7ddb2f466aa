"""Benchmark: batch validation (`features.schema.SourceValidator`) against a bare JSON loop.

Runs 1000-event batches of the example `transactions` source, all valid and 5% invalid,
interleaved with a baseline (`orjson.loads` plus reading the key, id and time of each
event) in the same process, and prints medians of process CPU time (a busy machine's
other processes don't count) in events/s and µs/event, with the ratio to the baseline.
Usage: `python bench/validate.py [--batch 1000] [--rounds 60]`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from features.loader import load_definitions
from features.schema import SourceValidator

DEFINITIONS = Path(__file__).resolve().parents[1] / "features" / "definitions"
CATEGORIES = ["grocery", "electronics", "travel", "restaurants", "fuel", "fashion", "other"]


def event(rng: random.Random, i: int) -> dict[str, Any]:
    """One valid transaction (ISO or epoch-ms time, some nulls, a correlation id)."""
    return {
        "txn_id": f"t{i:09d}",
        "user_id": f"u{rng.randrange(5000)}",
        "amount": round(rng.uniform(0, 500), 2),
        "currency": rng.choice(["USD", "EUR", "GBP"]),
        "merchant": None if rng.random() < 0.1 else f"m{rng.randrange(300)}",
        "merchant_category": rng.choice(CATEGORIES),
        "country": rng.choice(["US", "GB", "DE", "FR", "NL", "ES"]),
        "channel": rng.choice(["online", "pos", "atm"]),
        "card_present": rng.random() < 0.5,
        "ts": f"2026-01-01T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}.{i % 1000:03d}Z",
        "correlation_id": f"c{i}",
    }


def spoil(rng: random.Random, ev: dict[str, Any]) -> None:
    """Make one event invalid in one of several ways."""
    kind = rng.randrange(5)
    if kind == 0:
        ev["amount"] = -ev["amount"] - 1
    elif kind == 1:
        ev["country"] = "XX"
    elif kind == 2:
        del ev["user_id"]
    elif kind == 3:
        ev["ts"] = "yesterday"
    else:
        ev["card_present"] = 1


def batch(rng: random.Random, size: int, invalid: float, start: int) -> list[bytes]:
    out = []
    for i in range(start, start + size):
        ev = event(rng, i)
        if rng.random() < invalid:
            spoil(rng, ev)
        out.append(orjson.dumps(ev))
    return out


def baseline(payloads: list[bytes]) -> int:
    """What any consumer must do at least: parse and read key, id and time."""
    n = 0
    for p in payloads:
        d = orjson.loads(p)
        if d.get("user_id") and d.get("txn_id") and d.get("ts"):
            n += 1
    return n


def timed(fn: Callable[..., Any], arg: Any) -> float:
    """CPU seconds of this process for one call: other processes on a busy machine don't count."""
    start = time.process_time()
    fn(arg)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    rng = random.Random(7)
    source = load_definitions(DEFINITIONS).source("transactions")
    validator = SourceValidator(source)
    valid = [batch(rng, args.batch, 0.0, r * args.batch) for r in range(8)]
    mixed = [batch(rng, args.batch, 0.05, r * args.batch) for r in range(8)]
    for warm in valid[:2] + mixed[:2]:  # pandera's lazy imports, remembered values
        validator.validate(warm)
    times: dict[str, list[float]] = {"baseline": [], "valid": [], "5% invalid": []}
    for r in range(args.rounds):
        times["baseline"].append(timed(baseline, valid[r % 8]))
        times["valid"].append(timed(validator.validate, valid[r % 8]))
        times["5% invalid"].append(timed(validator.validate, mixed[r % 8]))
    rejected = sum(len(validator.validate(m)[1]) for m in mixed)
    print(f"batches of {args.batch} events, {args.rounds} rounds; process CPU time, medians;")
    print("ratio = median of per-round ratios to the baseline measured next to it")
    for name, values in times.items():
        med = statistics.median(values)
        ratio = statistics.median(v / b for v, b in zip(values, times["baseline"], strict=True))
        print(
            f"{name:>11}: {args.batch / med:>10,.0f} events/s  "
            f"{med / args.batch * 1e6:6.2f} µs/event  ratio {ratio:5.2f}"
        )
    print(f"rejected in the 5% batches: {rejected} of {8 * args.batch}")


if __name__ == "__main__":
    main()
