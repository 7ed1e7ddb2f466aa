"""`rillet run` SIGKILLed several times mid-stream on one recovery dir, then drained.

Afterwards every online value equals the brute force, the Parquet log holds every accepted
event exactly once and no partial file, and counters and dead letters are not doubled.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis

from features import layout
from features.durations import now_us
from features.registry import apply
from tests.pipelines.scenario import (
    PROJECT,
    Workload,
    definitions,
    expected_stats,
    generate,
    mismatches,
    push,
    read_log,
    stats,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RILLET_REDIS_URL=redis_url,
        RILLET_PROJECT=PROJECT,
        RILLET_OFFLINE_ROOT=str(tmp_path / "offline"),
        RILLET_RECOVERY_DIR=str(tmp_path / "recovery"),
        RILLET_RECOVERY_PARTITIONS="4",
        RILLET_EPOCH_SECONDS="1",
        RILLET_METRICS_PORT="0",
        RILLET_READ_COUNT="20",
        RILLET_STREAM_PARTITIONS="4",
        RILLET_LOG_LEVEL="WARNING",
    )
    return env


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "serving.cli.main", "run", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_stream_then_resume_gives_exact_results(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    defs = definitions()
    apply(redis_client, PROJECT, defs, None)
    now = now_us()
    work = generate(defs, now, n_txns=4000, n_clicks=4000, seed=5)
    env = _env(redis_url, tmp_path)

    def applied() -> int:
        return sum(stats(redis_client, s).get("applied", 0) for s in defs.sources)

    # Each run gets a new slice of events and is killed soon after its first write.
    size = len(work.sent) // 5 + 1
    slices = [work.sent[i : i + size] for i in range(0, len(work.sent), size)]
    rng = random.Random(3)
    before, mid_stream = 0, 0
    for part in slices[:4]:
        push(redis_client, Workload(defs, part))
        pushed = sum(1 for s in part if s.verdict == "accept")
        proc = _start(env)
        deadline = time.monotonic() + 60
        while applied() <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.1))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        after = applied()
        assert after > before
        if after - before < pushed * 0.9:
            mid_stream += 1
        before = after
    push(redis_client, Workload(defs, slices[4]))
    final = _start(env, "--until-idle")
    _, err = final.communicate(timeout=180)
    assert final.returncode == 0, err.decode()[-3000:]

    assert mismatches(redis_client, work, now_us()) == []
    root = tmp_path / "offline"
    assert not list(root.rglob("*.tmp"))
    for path in root.rglob("*.parquet"):
        pq.read_metadata(path)  # every file is complete and readable
    for name, source in defs.sources.items():
        rows = read_log(root, name)
        ids = Counter(r["_event_id"] for r in rows)
        assert set(ids) == {p[source.event_id] for p in work.accepted(name)}
        assert max(ids.values()) == 1  # exactly once, even before dedup on read
        assert stats(redis_client, name) == expected_stats(work, name)
        letters = redis_client.xlen(layout.dead_letter_key(PROJECT, name))
        assert letters == work.count(name, "invalid") + work.count(name, "late")
    assert mid_stream >= 2  # at least two kills interrupted a run with events left to apply
