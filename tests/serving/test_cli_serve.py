"""`rillet serve` as a real process (two workers), its JSON logs, and `rillet status`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from features.model import Definitions
from pipelines.stats import StatsWriter
from tests.conftest import free_port
from tests.serving.conftest import PROJECT

pytestmark = pytest.mark.timeout(90)
RILLET = str(Path(sys.executable).with_name("rillet"))


def env_for(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RILLET_", "PROMETHEUS_"))}
    env.update(RILLET_REDIS_URL=redis_url, RILLET_PROJECT=PROJECT, RILLET_REGISTRY_POLL_S="0.1")
    return env


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "rillet serve exited early"
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("rillet serve did not listen")


def json_lines(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(orjson.loads(line))
    return out


def test_serve_two_workers_logs_and_metrics(
    redis_url: str, applied: Definitions, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [RILLET, "serve", "--port", str(port), "--workers", "2"],
            env=env_for(redis_url),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        wait_listening(port, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for i in range(10):
                response = http.post(
                    "/v1/features/online",
                    json={"features": ["user_txn:*"], "entities": [{"user_id": "u1"}]},
                    headers={"X-Correlation-ID": f"cli-{i}"},
                )
                assert response.status_code == 200
                assert response.headers["x-correlation-id"] == f"cli-{i}"
            missing = http.get(
                "/v1/features/online/nope",
                params={"user_id": "u"},
                headers={"X-Correlation-ID": "cli-404"},
            )
            assert missing.status_code == 404
            metrics = http.get("/metrics").text
        # Both workers write to one multiprocess directory: /metrics counts all 10 requests.
        line = next(
            row
            for row in metrics.splitlines()
            if row.startswith("rillet_http_request_duration_seconds_count")
            and 'route="/v1/features/online"' in row
            and 'status="200"' in row
        )
        assert float(line.rsplit(" ", 1)[1]) == 10.0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    lines = json_lines(log_path)
    assert lines, log_path.read_text()[-2000:]
    by_id = {
        entry["correlation_id"]: entry for entry in lines if entry.get("logger") == "rillet.access"
    }
    for i in range(10):
        entry = by_id[f"cli-{i}"]
        assert entry["status"] == 200 and "/v1/features/online" in str(entry["message"])
    assert by_id["cli-404"]["status"] == 404
    assert {entry["level"] for entry in lines} <= {"debug", "info", "warning", "error"}


def test_status_command(redis_url: str, applied: Definitions, redis_client: redis.Redis) -> None:
    pipe = redis_client.pipeline(transaction=False)
    StatsWriter(redis_client, PROJECT).queue_parts(pipe, "logins", {("applied", "s00"): 12})
    pipe.execute()
    out = subprocess.run(
        [RILLET, "status", "--json"],
        env=env_for(redis_url),
        capture_output=True,
        check=True,
        timeout=60,
    )
    report = orjson.loads(out.stdout)
    logins = next(s for s in report["sources"] if s["name"] == "logins")
    assert logins["applied"] == 12
    assert [v["name"] for v in report["views"]] == sorted(applied.views)
    table = subprocess.run(
        [RILLET, "status"],
        env=env_for(redis_url),
        capture_output=True,
        check=True,
        timeout=60,
        text=True,
    )
    assert "logins" in table.stdout and "user_txn" in table.stdout


def test_status_command_without_registry(redis_url: str) -> None:
    out = subprocess.run(
        [RILLET, "status"], env=env_for(redis_url), capture_output=True, timeout=60, text=True
    )
    assert out.returncode != 0
    assert "rillet apply" in out.stderr and "Traceback" not in out.stderr
