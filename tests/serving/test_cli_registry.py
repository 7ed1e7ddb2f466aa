"""`rillet validate / plan / apply` as a user runs them: the console script against real Redis."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis

from features.layout import registry_key

RILLET = str(Path(sys.executable).parent / "rillet")
EXAMPLES = Path(__file__).resolve().parents[2] / "features" / "definitions"
PROJECT = "clitest"
REPO = """\
entities:
  - {name: user, join_keys: [user_id]}
sources:
  - name: txns
    topic: txns
    key: [user_id]
    event_id: txn_id
    timestamp: ts
    schema:
      txn_id: {dtype: string}
      user_id: {dtype: string}
      amount: {dtype: float, checks: {ge: 0}}
      ts: {dtype: timestamp}
feature_views:
  - name: spend
    entity: user
    source: txns
    ttl: 7d
    features:
      - {name: n_1h, function: count, window: 1h}
      - {name: sum_1d, function: sum, column: amount, window: 1d}
  - name: counts
    entity: user
    source: txns
    ttl: 1d
    features:
      - {name: n_1d, function: count}
"""
BROKEN = """\
entities:
  - {name: brk_user, join_keys: [user_id]}
sources:
  - name: brk_src
    topic: brk
    key: [user_id]
    event_id: id
    timestamp: ts
    schema:
      id: {dtype: string}
      user_id: {dtype: string}
      ts: {dtype: timestamp}
feature_views:
  - name: brk_view
    entity: brk_user
    source: brk_src
    ttl: 1d
    features:
      - {name: f1, function: summ, column: id, window: 1h}
      - {name: f2, function: sum, column: nope, window: 1h}
"""


@pytest.fixture
def cli_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RILLET_")}
    env.update(
        RILLET_REDIS_URL=redis_url,
        RILLET_PROJECT=PROJECT,
        RILLET_REGISTRY_MIRROR=str(tmp_path / "mirror" / "registry.json"),
    )
    return env


def rillet(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RILLET, *map(str, args)], env=env, capture_output=True, text=True, timeout=120
    )


def write_repo(path: Path, text: str = REPO) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "repo.yaml").write_text(text)
    return path


def test_validate_the_example_repository(cli_env: dict[str, str]) -> None:
    done = rillet(cli_env, "validate", "--definitions", EXAMPLES)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ")
    cli_env["RILLET_DEFINITIONS"] = str(EXAMPLES)
    done = rillet(cli_env, "validate", "--json")
    assert done.returncode == 0, done.stderr
    doc = orjson.loads(done.stdout)
    assert doc["ok"] is True and len(doc["content_hash"]) == 64 and doc["views"]


def test_a_broken_copy_lists_every_problem_and_applies_nothing(
    cli_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    copy = tmp_path / "defs"
    shutil.copytree(EXAMPLES, copy)
    (copy / "zz_broken.yaml").write_text(BROKEN)
    for command in ("validate", "plan", "apply"):
        done = rillet(cli_env, command, "--definitions", copy)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        located = [ln for ln in lines if re.match(r"^\S*zz_broken\.yaml:\d+:\d+: \S", ln)]
        assert len(located) >= 2, done.stderr
        assert any("summ" in ln and "sum" in ln for ln in located)
        assert any("nope" in ln for ln in located)
        assert "nothing was applied" in lines[-1]
        assert "Traceback" not in done.stderr
    assert redis_client.get(registry_key(PROJECT)) is None
    assert not Path(cli_env["RILLET_REGISTRY_MIRROR"]).exists()
    done = rillet(cli_env, "validate", "--definitions", copy, "--json")
    assert done.returncode == 2
    problems = orjson.loads(done.stdout)["problems"]
    assert {p["path"].endswith("zz_broken.yaml") for p in problems} == {True}
    assert all(p["line"] >= 1 and p["column"] >= 1 for p in problems)


def test_plan_then_apply_then_additive_then_breaking(
    cli_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    repo = write_repo(tmp_path / "repo")
    mirror = Path(cli_env["RILLET_REGISTRY_MIRROR"])
    cli_env["RILLET_DEFINITIONS"] = str(repo)

    done = rillet(cli_env, "plan", "--json")
    assert done.returncode == 0, done.stderr
    first = orjson.loads(done.stdout)
    assert first["current_hash"] is None and first["breaking"] == 0
    assert {c["kind"] for c in first["changes"]} == {"added"}
    assert first["versions"] == {
        "counts": {"current": None, "new": 1},
        "spend": {"current": None, "new": 1},
    }
    done = rillet(cli_env, "plan")
    assert done.returncode == 0 and "view spend" in done.stdout and "compatible" in done.stdout

    done = rillet(cli_env, "apply")
    assert done.returncode == 0, done.stderr
    assert "applied" in done.stdout
    stored = redis_client.get(registry_key(PROJECT))
    assert stored is not None and mirror.read_bytes() == stored
    done = rillet(cli_env, "apply")
    assert done.returncode == 0 and "no changes" in done.stdout

    # additive: a new feature in `spend` — accepted, only `spend` gets a new version
    grown = REPO.replace(
        "      - {name: sum_1d, function: sum, column: amount, window: 1d}\n",
        "      - {name: sum_1d, function: sum, column: amount, window: 1d}\n"
        "      - {name: max_1d, function: max, column: amount, window: 1d}\n",
    )
    write_repo(repo, grown)
    plan_doc = orjson.loads(rillet(cli_env, "plan", "--json").stdout)
    assert [(c["kind"], c["subject"], c["breaking"]) for c in plan_doc["changes"]] == [
        ("added", "feature spend:max_1d", False)
    ]
    done = rillet(cli_env, "apply", "--json")
    assert done.returncode == 0, done.stderr
    applied = orjson.loads(done.stdout)
    assert applied["applied"] is True
    assert applied["versions"] == {
        "counts": {"current": 1, "new": 1},
        "spend": {"current": 1, "new": 2},
    }

    # breaking: a changed window — plan marks it, apply refuses with exit 3, nothing changes
    before_doc, before_mirror = redis_client.get(registry_key(PROJECT)), mirror.read_bytes()
    broken = grown.replace("column: amount, window: 1d}", "column: amount, window: 2d}", 1)
    write_repo(repo, broken)
    done = rillet(cli_env, "plan")
    assert done.returncode == 0
    assert "breaking" in done.stdout and "feature spend:sum_1d" in done.stdout
    done = rillet(cli_env, "apply")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "window 1d → 2d" in done.stderr and "--allow-breaking" in done.stderr
    assert "Traceback" not in done.stderr
    assert redis_client.get(registry_key(PROJECT)) == before_doc
    assert mirror.read_bytes() == before_mirror

    done = rillet(cli_env, "apply", "--allow-breaking", "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["versions"]["spend"] == {"current": 2, "new": 3}
    assert mirror.read_bytes() == redis_client.get(registry_key(PROJECT))


def test_options_override_settings(
    cli_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    repo = write_repo(tmp_path / "repo")
    mirror = tmp_path / "elsewhere.json"
    done = rillet(cli_env, "apply", "--definitions", repo, "--project", "other", "--mirror", mirror)
    assert done.returncode == 0, done.stderr
    assert redis_client.get(registry_key("other")) == mirror.read_bytes()
    assert redis_client.get(registry_key(PROJECT)) is None


def test_redis_unreachable_is_one_clear_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo")
    for command in ("plan", "apply"):
        done = rillet(
            cli_env, command, "--definitions", repo, "--redis-url", "redis://127.0.0.1:1/0"
        )
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: Redis at 127.0.0.1:1"), lines
    assert not Path(cli_env["RILLET_REGISTRY_MIRROR"]).exists()


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_help(cli_env: dict[str, str], command: str) -> None:
    done = rillet(cli_env, command, "--help")
    assert done.returncode == 0 and "--definitions" in done.stdout
