"""The Redis fixture itself: a real server, a clean database per test."""

from __future__ import annotations

import redis


def test_real_server_answers(redis_client: redis.Redis) -> None:
    info = redis_client.info("server")
    assert info["redis_version"]
    assert redis_client.dbsize() == 0
    redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"


def test_database_is_clean_per_test(redis_client: redis.Redis) -> None:
    assert redis_client.get("k") is None
