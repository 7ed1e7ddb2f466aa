"""`rillet demo` and `rillet up` as a user runs them: real subprocesses, Redis, Bytewax, HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def rillet(*args: str) -> list[str]:
    return [sys.executable, "-m", "serving.cli.main", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RILLET_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", **extra})
    return env


@pytest.mark.timeout(240)
def test_demo_runs_end_to_end_against_a_configured_redis(redis_url: str, tmp_path: Path) -> None:
    state = tmp_path / "demo"
    started = time.monotonic()
    result = subprocess.run(
        rillet("demo", "--events", "20000", "--state-dir", str(state), "--spine-rows", "200"),
        cwd=ROOT,
        env=clean_env(RILLET_REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=200,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "using the configured Redis" in output  # no redis-server of its own
    # Feature vectors fetched over HTTP, for users, user-item pairs and items.
    assert "Feature vectors" in output
    for ref in ("user_txn:txn_count_1h", "user_item_engagement:view_count_7d", "item_popularity"):
        assert ref in output, ref
    counts = re.search(r"user_txn:txn_count_24h[\s│|]+(\d+)", output)
    assert counts and int(counts.group(1)) > 0, "the busiest user has transactions in 24 h"
    # Status, checked against the generator's own labels.
    assert "match the generator's labels" in output, output[-4000:]
    # The training export: one row per spine row, the label kept, the features added.
    export = pq.read_table(state / "training.parquet")
    assert export.num_rows == 200
    names = export.column_names
    assert "label" in names and "user_id" in names
    assert any("txn_count_1h" in n for n in names), names
    assert any((state / "offline").rglob("*.parquet")), "the offline log was written"
    assert "demo finished" in output
    print(f"demo with 20k events: {elapsed:.1f} s")


@pytest.mark.timeout(120)
def test_up_runs_until_interrupted_then_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    process = subprocess.Popen(
        rillet("up", "--port", str(port), "--state-dir", str(state)),
        cwd=ROOT,
        env=clean_env(),  # no RILLET_REDIS_URL: `up` starts its own redis-server
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Rillet is up" in line or len(lines) > 400:
                break
        assert any("Rillet is up" in line for line in lines), "".join(lines)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        catalog = httpx.get(f"http://127.0.0.1:{port}/v1/feature-views", timeout=5)
        assert {v["name"] for v in catalog.json()["feature_views"]} >= {"user_txn"}
        redis_pid = int((state / "redis" / "redis-server.pid").read_text())
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(lines) + rest
    assert process.returncode == 0, output[-3000:]
    assert "api stopped" in output and "pipeline stopped" in output, output[-3000:]
    assert "redis-server stopped" in output
    assert not Path(f"/proc/{redis_pid}").exists(), "the project-owned redis-server is gone"
    assert list((state / "redis").glob("appendonly*")), "AOF on: the data survives"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
