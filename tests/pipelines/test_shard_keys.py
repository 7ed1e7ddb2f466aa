"""The shard keys spread the shards evenly over Bytewax's workers, and a recovery store
keeps the keys it was made with.

The placement rule (`shard_keys.worker_of`) is checked against Bytewax itself: a flow with
several worker threads records which thread builds the state of each key.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSource, cluster_main

from pipelines import shard_keys
from pipelines.run import ensure_recovery_dir
from pipelines.shard_keys import BALANCED, LEGACY, worker_of


def placed_by_bytewax(keys: list[str], workers: int) -> list[frozenset[str]]:
    """The keys each worker thread of a `workers`-thread flow built state for."""
    built: dict[int, set[str]] = {}

    class Record(StatefulBatchLogic[str, Any, bytes]):
        def __init__(self, key: str) -> None:
            built.setdefault(threading.get_ident(), set()).add(key)

        def on_batch(self, values: list[str]) -> tuple[list[Any], bool]:
            return [], StatefulBatchLogic.RETAIN

        def snapshot(self) -> bytes:
            return b""

    flow = Dataflow("placement")
    items = op.input("in", flow, TestingSource(keys, batch_size=1))
    keyed = op.key_on("key", items, lambda k: k)
    # The builder gets only the resume state: each item carries its key as the value.
    state = op.stateful_batch("state", keyed, lambda _resume: _Lazy(Record))
    op.inspect("done", state, lambda *_: None)
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return sorted((frozenset(keys) for keys in built.values()), key=sorted)


class _Lazy(StatefulBatchLogic[str, Any, bytes]):
    """Builds the real logic on the first batch, when the key (the value) is known."""

    def __init__(self, make: Any) -> None:
        self.make, self.logic = make, None

    def on_batch(self, values: list[str]) -> tuple[list[Any], bool]:
        if self.logic is None:
            self.logic = self.make(values[0])
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return b""


def predicted(keys: list[str], workers: int) -> list[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for key in keys:
        groups.setdefault(worker_of(key, workers), set()).add(key)
    return sorted((frozenset(keys) for keys in groups.values()), key=sorted)


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_worker_of_is_where_bytewax_places_a_key(workers: int) -> None:
    keys = [*LEGACY, *BALANCED]
    assert placed_by_bytewax(keys, workers) == predicted(keys, workers)


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 15, 16])
def test_balanced_keys_spread_the_shards_evenly(workers: int) -> None:
    counts = Counter(worker_of(key, workers) for key in BALANCED)
    assert len(counts) == workers
    assert max(counts.values()) - min(counts.values()) <= 1
    assert [worker_of(key, workers) for key in BALANCED] == [i % workers for i in range(16)]


def test_the_legacy_keys_were_uneven() -> None:
    counts = Counter(worker_of(key, 2) for key in LEGACY)
    assert sorted(counts.values()) == [4, 12]


def test_balanced_keys_are_what_the_search_finds() -> None:
    assert [shard_keys.balanced_key(i) for i in range(16)] == list(BALANCED)


def test_a_new_store_uses_balanced_keys_and_an_older_one_keeps_its_keys(tmp_path: Path) -> None:
    new = tmp_path / "new"
    assert ensure_recovery_dir(new, 2) == BALANCED
    assert ensure_recovery_dir(new, 2) == BALANCED  # reopened: read from its marker
    older = tmp_path / "older"
    ensure_recovery_dir(older, 2)
    (older / shard_keys.MARKER).unlink()  # as a store made before the marker
    assert ensure_recovery_dir(older, 2) == LEGACY
