"""Backfill and the real stream pipeline hand over without a gap or a double count.

A view applied after its events arrived is backfilled from the log while the pipeline is
stopped; the pipeline then resumes (from its recovery state) with new events: every view
equals the brute force. Then Redis is flushed entirely and rebuilt by backfill: it serves
the same values as before, and the stream carries on from there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from features.durations import now_us
from features.model import FeatureView
from features.tiles import ViewTiler
from pipelines.backfill import Backfill
from pipelines.plan import PlanSource
from tests.pipelines.flows import run_until_idle
from tests.pipelines.scenario import (
    PROJECT,
    D,
    H,
    M,
    Workload,
    close,
    definitions,
    entities_of,
    feature,
    generate,
    mismatches,
    online_values,
    push,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

NEW_VIEW = FeatureView(
    "user_txn_late",
    "user",
    "txns",
    D,
    (
        feature("count_30m", "count", None, 30 * M),
        feature("amount_sum_2h", "sum", "amount", 2 * H),
        feature("amount_std_1d", "stddev", "amount", D),
        feature("last_merchant_1d", "last", "merchant", D),
        feature("last_2_amounts_1h", "last_n", "amount", H, 2),
    ),
)


def part(work: Workload, lo: int, hi: int) -> Workload:
    return Workload(work.defs, work.sent[lo:hi])


def test_new_view_backfilled_then_streamed_and_lost_redis_rebuilt(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    old, new = definitions(), definitions(extra_views=[NEW_VIEW])
    root, recovery = tmp_path / "offline", tmp_path / "recovery"
    work = generate(new, now_us(), n_txns=900, n_clicks=500, seed=11)
    cut, cut2 = len(work.sent) // 2, len(work.sent) * 3 // 4

    # 1. The pipeline runs on the old definitions: the new view does not exist yet.
    push(redis_client, part(work, 0, cut))
    run_until_idle(redis_url, PlanSource(old), root, recovery_dir=recovery)
    before = part(work, 0, cut)
    assert mismatches(redis_client, before, now_us(), views=["user_txn"]) == []
    assert online_values(redis_client, NEW_VIEW, entities_of(work, NEW_VIEW), now_us()) == {
        e: ViewTiler(NEW_VIEW).empty_values() for e in entities_of(work, NEW_VIEW)
    }

    # 2. Applied later, backfilled from the log with the pipeline stopped.
    report = Backfill(redis_client, PROJECT, new, root).run([NEW_VIEW.name])
    assert report.views[0].events == len(before.accepted("txns"))
    assert mismatches(redis_client, before, now_us(), views=[NEW_VIEW.name]) == []

    # 3. The pipeline resumes on the new definitions with the rest of the events.
    push(redis_client, part(work, cut, cut2))
    run_until_idle(redis_url, PlanSource(new), root, recovery_dir=recovery)
    as_of = now_us()
    assert mismatches(redis_client, part(work, 0, cut2), as_of) == []

    # 4. Redis lost entirely: a backfill of every view serves the same values as before.
    served = {
        name: online_values(redis_client, view, entities_of(work, view), as_of)
        for name, view in new.views.items()
    }
    redis_client.flushdb()
    # Rebuilt as of the same instant: a backfill prunes the tiles no window can read from
    # its own `now` on, so one run even a second later may drop a tile `as_of` reads.
    Backfill(redis_client, PROJECT, new, root, now=as_of).run(sorted(new.views))
    for name, view in new.views.items():
        rebuilt = online_values(redis_client, view, entities_of(work, view), as_of)
        assert rebuilt.keys() == served[name].keys()
        for entity, values in rebuilt.items():
            for feat, value in values.items():
                assert close(value, served[name][entity][feat]), (name, entity, feat)

    # 5. ... and the stream carries on from the rebuilt tiles.
    push(redis_client, part(work, cut2, len(work.sent)))
    run_until_idle(redis_url, PlanSource(new), root, recovery_dir=recovery)
    assert mismatches(redis_client, work, now_us()) == []
