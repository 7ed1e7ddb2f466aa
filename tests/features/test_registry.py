"""The registry: content hash, plan (every kind of change), apply against real Redis, watcher."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from features.errors import BreakingChangeError, RegistryError, StorageError
from features.layout import registry_channel, registry_key
from features.loader import load_definitions
from features.model import Checks, Column, Definitions, Entity, Feature, FeatureView, Source
from features.registry import (
    Change,
    RegistryWatcher,
    applied_hash,
    apply,
    content_hash,
    load_applied,
    plan,
    read_mirror,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "features" / "definitions"
H = 3_600_000_000
D = 24 * H
PROJECT = "regtest"


def base() -> Definitions:
    """A small repository: two entities, two sources, two views."""
    txns = Source(
        "txns", "txns", ("user_id",), "txn_id", "ts", H,
        (Column("txn_id", "string"), Column("user_id", "string"),
         Column("amount", "float", checks=Checks(ge=0)), Column("note", "string", nullable=True),
         Column("spare", "int", nullable=True), Column("ts", "timestamp")),
    )  # fmt: skip
    clicks = Source(
        "clicks", "clicks", ("item_id",), "click_id", "ts", H,
        (Column("click_id", "int"), Column("item_id", "string"), Column("ts", "timestamp")),
    )  # fmt: skip
    spend = FeatureView(
        "spend", "user", "txns", 7 * D,
        (Feature("n_1h", "count", None, H, 60_000_000),
         Feature("sum_1d", "sum", "amount", D, H),
         Feature("last_3", "last_n", "amount", D, H, 3)),
        owner="risk", tags=(("tier", "gold"),),
    )  # fmt: skip
    hits = FeatureView("hits", "item", "clicks", D, (Feature("n_1d", "count", None, D, H),))
    return Definitions(
        entities={"user": Entity("user", ("user_id",)), "item": Entity("item", ("item_id",))},
        sources={"txns": txns, "clicks": clicks},
        views={"spend": spend, "hits": hits},
    )


def with_view(defs: Definitions, view: FeatureView) -> Definitions:
    return replace(defs, views={**defs.views, view.name: view})


def without_view(defs: Definitions, name: str) -> Definitions:
    return replace(defs, views={k: v for k, v in defs.views.items() if k != name})


def with_source(defs: Definitions, source: Source) -> Definitions:
    return replace(defs, sources={**defs.sources, source.name: source})


def change_feature(defs: Definitions, view: str, feat: str, **changes: Any) -> Definitions:
    v = defs.views[view]
    feats = tuple(replace(f, **changes) if f.name == feat else f for f in v.features)
    return with_view(defs, replace(v, features=feats))


def change_column(defs: Definitions, source: str, col: str, **changes: Any) -> Definitions:
    s = defs.sources[source]
    cols = tuple(replace(c, **changes) if c.name == col else c for c in s.schema)
    return with_source(defs, replace(s, schema=cols))


def add_column(defs: Definitions, source: str, column: Column) -> Definitions:
    s = defs.sources[source]
    return with_source(defs, replace(s, schema=(*s.schema, column)))


def drop_column(defs: Definitions, source: str, col: str) -> Definitions:
    s = defs.sources[source]
    return with_source(defs, replace(s, schema=tuple(c for c in s.schema if c.name != col)))


def changes_of(old: Definitions, new: Definitions) -> list[tuple[str, str, bool]]:
    registry = apply_fresh(old)
    return [(c.kind, c.subject, c.breaking) for c in plan(registry, new).changes]


def apply_fresh(defs: Definitions) -> Any:
    from features.registry import Registry

    return Registry(defs, content_hash(defs), dict.fromkeys(defs.views, 1), 0)


# ---- content hash -------------------------------------------------------------------------


def test_hash_ignores_item_order_and_file_layout(tmp_path: Path) -> None:
    defs = load_definitions(EXAMPLES)
    reordered = Definitions(
        entities=dict(reversed(list(defs.entities.items()))),
        sources=dict(reversed(list(defs.sources.items()))),
        views={
            k: replace(v, tags=tuple(reversed(v.tags))) for k, v in reversed(defs.views.items())
        },
    )
    assert content_hash(reordered) == content_hash(defs)
    # the same files merged into one, in reverse order: same content, same hash
    merged: dict[str, list[Any]] = {"entities": [], "sources": [], "feature_views": []}
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    for file in sorted(EXAMPLES.glob("*.yaml"), reverse=True):
        doc = yaml.load(file.read_text()) or {}
        for section, items in doc.items():
            merged[section] = list(reversed(items)) + merged[section]
    one = tmp_path / "all.yaml"
    with one.open("w") as out:
        YAML().dump(merged, out)
    assert content_hash(load_definitions(one)) == content_hash(defs)


def test_hash_changes_with_content() -> None:
    defs = base()
    h = content_hash(defs)
    assert len(h) == 64
    assert content_hash(with_view(defs, replace(defs.views["hits"], description="x"))) != h
    assert content_hash(change_column(defs, "txns", "amount", checks=Checks(ge=1))) != h


# ---- plan ---------------------------------------------------------------------------------


def test_first_plan_adds_everything_at_version_1() -> None:
    result = plan(None, base())
    assert {(c.kind, c.subject.split()[0]) for c in result.changes} == {
        ("added", "entity"), ("added", "source"), ("added", "view"),
    }  # fmt: skip
    assert not result.breaking
    assert result.new_versions == {"hits": 1, "spend": 1}


def test_unchanged_definitions_plan_nothing() -> None:
    result = plan(apply_fresh(base()), base())
    assert result.changes == [] and result.new_versions == {"hits": 1, "spend": 1}


@pytest.mark.parametrize(
    ("attr", "value", "detail"),
    [
        ("window", 2 * D, "window 1d → 2d"),
        ("function", "mean", "function sum → mean"),
        ("column", "spare", "column amount → spare"),
        ("granularity", 60_000_000, "granularity 1h → 1m"),
    ],
)
def test_changed_feature_is_breaking(attr: str, value: Any, detail: str) -> None:
    new = change_feature(base(), "spend", "sum_1d", **{attr: value})
    result = plan(apply_fresh(base()), new)
    assert result.changes == [Change("changed", "feature spend:sum_1d", detail, True)]
    assert result.new_versions == {"spend": 2, "hits": 1}


def test_changed_n_is_breaking() -> None:
    new = change_feature(base(), "spend", "last_3", n=5)
    assert changes_of(base(), new) == [("changed", "feature spend:last_3", True)]


def test_additions_are_compatible_and_bump_only_their_view() -> None:
    old = base()
    spend = old.views["spend"]
    new = with_view(
        old, replace(spend, features=(*spend.features, Feature("max_1d", "max", "amount", D, H)))
    )
    new = with_view(
        new, FeatureView("spend2", "user", "txns", D, (Feature("c", "count", None, D, H),))
    )
    new = replace(new, entities={**new.entities, "shop": Entity("shop", ("shop_id",))})
    new = with_source(
        new,
        Source(
            "s2", "s2", ("k",), "k", "ts", 0, (Column("k", "string"), Column("ts", "timestamp"))
        ),
    )
    new = add_column(new, "txns", Column("channel", "string", nullable=True))
    result = plan(apply_fresh(old), new)
    assert not result.breaking
    assert {(c.kind, c.subject) for c in result.changes} == {
        ("added", "entity shop"),
        ("added", "source s2"),
        ("added", "source txns column channel"),
        ("added", "feature spend:max_1d"),
        ("added", "view spend2"),
    }
    assert result.new_versions == {"spend": 2, "spend2": 1, "hits": 1}


def test_removed_feature_and_view_are_breaking() -> None:
    old = base()
    spend = old.views["spend"]
    new = with_view(old, replace(spend, features=spend.features[:2]))
    new = without_view(new, "hits")
    assert changes_of(old, new) == [
        ("removed", "view hits", True),
        ("removed", "feature spend:last_3", True),
    ]


def test_metadata_changes_are_compatible_but_versioned() -> None:
    old = base()
    new = with_view(
        old,
        replace(
            old.views["spend"],
            owner="fraud",
            tags=(("tier", "silver"),),
            ttl=8 * D,
            description="d",
        ),
    )
    result = plan(apply_fresh(old), new)
    assert {(c.subject, c.detail, c.breaking) for c in result.changes} == {
        ("view spend", "ttl 7d → 8d", False),
        ("view spend", "owner", False),
        ("view spend", "tags", False),
        ("view spend", "description", False),
    }
    assert result.new_versions["spend"] == 2


def test_schema_column_rules() -> None:
    old = base()
    # retyped or removed while used by a view: breaking; unused: compatible
    assert changes_of(old, change_column(old, "txns", "amount", dtype="int")) == [
        ("changed", "source txns column amount", True)
    ]
    assert changes_of(old, change_column(old, "txns", "spare", dtype="float")) == [
        ("changed", "source txns column spare", False)
    ]
    assert changes_of(old, drop_column(old, "txns", "note")) == [
        ("removed", "source txns column note", False)
    ]
    dropped = drop_column(change_feature(old, "spend", "sum_1d", column="spare"), "txns", "amount")
    dropped = with_view(
        dropped, replace(dropped.views["spend"], features=dropped.views["spend"].features[:2])
    )
    assert ("removed", "source txns column amount", True) in changes_of(old, dropped)
    # a new required column on a used source rejects its producers' events; nullable is fine
    assert changes_of(old, add_column(old, "txns", Column("must", "string"))) == [
        ("added", "source txns column must", True)
    ]
    unused = without_view(old, "hits")
    assert ("added", "source clicks column must", False) in changes_of(
        unused, add_column(unused, "clicks", Column("must", "string"))
    )
    # nullability: relaxing is compatible, tightening a used column is breaking
    assert changes_of(old, change_column(old, "txns", "amount", nullable=True)) == [
        ("changed", "source txns column amount", False)
    ]
    # checks are compatible, but the view using the column gets a new version
    checked = change_column(old, "txns", "amount", checks=Checks(ge=1))
    result = plan(apply_fresh(old), checked)
    assert [(c.subject, c.breaking) for c in result.changes] == [
        ("source txns column amount", False)
    ]
    assert result.new_versions == {"spend": 2, "hits": 1}


def test_source_identity_and_entity_keys_are_breaking_when_used() -> None:
    old = base()
    txns = old.sources["txns"]
    for changes in ({"key": ("txn_id",)}, {"event_id": "user_id"}, {"timestamp": "ts2"}):
        new = with_source(old, replace(txns, **changes))
        assert changes_of(old, new) == [("changed", "source txns", True)], changes
    relaxed = with_source(old, replace(txns, topic="t2", allowed_lateness=2 * H))
    assert changes_of(old, relaxed) == [("changed", "source txns", False)] * 2
    keyed = replace(old, entities={**old.entities, "user": Entity("user", ("txn_id",))})
    assert changes_of(old, keyed) == [("changed", "entity user", True)]
    lonely = replace(old, entities={**old.entities, "x": Entity("x", ("k",))})
    assert changes_of(
        lonely, replace(lonely, entities={**old.entities, "x": Entity("x", ("j",))})
    ) == [("changed", "entity x", False)]


# ---- apply against real Redis -------------------------------------------------------------


def test_apply_stores_document_hash_and_mirror(redis_client: redis.Redis, tmp_path: Path) -> None:
    mirror = tmp_path / "reg" / "registry.json"
    assert load_applied(redis_client, PROJECT) is None
    assert applied_hash(redis_client, PROJECT) is None
    registry = apply(redis_client, PROJECT, base(), mirror)
    assert registry.content_hash == content_hash(base())
    assert registry.versions == {"hits": 1, "spend": 1}
    assert abs(registry.applied_at - time.time() * 1e6) < 60e6
    assert applied_hash(redis_client, PROJECT) == registry.content_hash
    stored = load_applied(redis_client, PROJECT)
    assert stored == registry
    assert stored is not None and stored.definitions == base()
    assert mirror.read_bytes() == redis_client.get(registry_key(PROJECT))
    assert read_mirror(mirror) == registry
    assert [p.name for p in mirror.parent.iterdir()] == ["registry.json"]  # no temp file left
    doc = orjson.loads(mirror.read_bytes())
    assert doc["content_hash"] == registry.content_hash and doc["versions"] == registry.versions


def test_apply_again_is_a_no_op(redis_client: redis.Redis, tmp_path: Path) -> None:
    first = apply(redis_client, PROJECT, base(), tmp_path / "r.json")
    again = apply(redis_client, PROJECT, base(), tmp_path / "r.json")
    assert again == first


def test_additive_apply_bumps_only_the_changed_view(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    apply(redis_client, PROJECT, base(), tmp_path / "r.json")
    spend = base().views["spend"]
    grown = with_view(
        base(), replace(spend, features=(*spend.features, Feature("m", "max", "amount", D, H)))
    )
    registry = apply(redis_client, PROJECT, grown, tmp_path / "r.json")
    assert registry.versions == {"spend": 2, "hits": 1}
    assert load_applied(redis_client, PROJECT) == registry


def test_breaking_apply_is_refused_and_changes_nothing(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    mirror = tmp_path / "r.json"
    apply(redis_client, PROJECT, base(), mirror)
    before_doc, before_mirror = redis_client.get(registry_key(PROJECT)), mirror.read_bytes()
    before_hash = applied_hash(redis_client, PROJECT)
    broken = change_feature(base(), "spend", "sum_1d", window=2 * D)
    with pytest.raises(BreakingChangeError) as info:
        apply(redis_client, PROJECT, broken, mirror)
    assert info.value.changes == ["changed feature spend:sum_1d: window 1d → 2d (breaking)"]
    assert redis_client.get(registry_key(PROJECT)) == before_doc
    assert mirror.read_bytes() == before_mirror
    assert applied_hash(redis_client, PROJECT) == before_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    registry = apply(redis_client, PROJECT, broken, mirror, allow_breaking=True)
    assert registry.versions == {"spend": 2, "hits": 1}
    assert mirror.read_bytes() == redis_client.get(registry_key(PROJECT))


def test_apply_publishes_the_new_hash(redis_client: redis.Redis) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(registry_channel(PROJECT))
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    registry = apply(redis_client, PROJECT, base(), None)
    message = pubsub.get_message(timeout=2)
    pubsub.close()
    assert message is not None and message["data"] == registry.content_hash.encode()


def test_concurrent_applies_never_interleave(redis_url: str) -> None:
    """Two applies that each remove what the other adds: exactly one may win each round."""
    client = redis.Redis.from_url(redis_url)
    apply(client, PROJECT, base(), None)
    view = base().views["hits"]
    a = with_view(base(), replace(view, name="a"))
    b = with_view(base(), replace(view, name="b"))
    for _ in range(10):
        apply(client, PROJECT, base(), None, allow_breaking=True)
        barrier = threading.Barrier(2)
        outcome: dict[str, str] = {}

        def run(
            name: str,
            defs: Definitions,
            barrier: threading.Barrier = barrier,
            outcome: dict[str, str] = outcome,
        ) -> None:
            own = redis.Redis.from_url(redis_url)
            barrier.wait()
            try:
                apply(own, PROJECT, defs, None)
                outcome[name] = "applied"
            except BreakingChangeError:
                outcome[name] = "refused"
            finally:
                own.close()

        threads = [threading.Thread(target=run, args=x) for x in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outcome.values()) == ["applied", "refused"]
        winner = a if outcome["a"] == "applied" else b
        stored = load_applied(client, PROJECT)
        assert stored is not None and stored.content_hash == content_hash(winner)
        assert applied_hash(client, PROJECT) == stored.content_hash
    client.close()


def test_unreadable_document_and_unreachable_redis(redis_client: redis.Redis) -> None:
    redis_client.set(registry_key(PROJECT), b"{not json")
    with pytest.raises(RegistryError, match="unreadable"):
        load_applied(redis_client, PROJECT)
    with pytest.raises(RegistryError, match="--allow-breaking"):
        apply(redis_client, PROJECT, base(), None)
    assert apply(redis_client, PROJECT, base(), None, allow_breaking=True).versions["spend"] == 1
    assert load_applied(redis_client, PROJECT) is not None
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    with pytest.raises(StorageError, match=r"127\.0\.0\.1:1\b"):
        load_applied(dead, PROJECT)
    with pytest.raises(StorageError):
        apply(dead, PROJECT, base(), None)


def test_watcher_notices_a_new_apply(redis_client: redis.Redis) -> None:
    watcher = RegistryWatcher(redis_client, PROJECT, interval_s=0.05)
    assert watcher.current() is None
    first = apply(redis_client, PROJECT, base(), None)
    time.sleep(0.06)
    seen = watcher.current()
    assert seen == first
    time.sleep(0.06)
    assert watcher.current() is seen  # same hash: not re-read
    spend = base().views["spend"]
    grown = with_view(base(), replace(spend, description="v2"))
    second = apply(redis_client, PROJECT, grown, None)
    deadline = time.monotonic() + 5
    while watcher.current() != second and time.monotonic() < deadline:
        time.sleep(0.02)
    assert watcher.current() == second
    assert watcher.current().versions["spend"] == 2  # type: ignore[union-attr]


def test_watcher_keeps_the_last_registry_when_redis_goes_away(tmp_path: Path) -> None:
    from tests.conftest import start_redis

    server = start_redis(tmp_path / "redis")
    client = server.client()
    try:
        apply(client, PROJECT, base(), None)
        watcher = RegistryWatcher(client, PROJECT, interval_s=0.01)
        known = watcher.current()
        assert known is not None
        server.stop()
        time.sleep(0.02)
        assert watcher.current() == known
        fresh = RegistryWatcher(client, PROJECT, interval_s=0.01)
        with pytest.raises(StorageError):
            fresh.current()
    finally:
        client.close()
        server.stop()


def test_example_repository_applies(redis_client: redis.Redis, tmp_path: Path) -> None:
    copy = tmp_path / "defs"
    shutil.copytree(EXAMPLES, copy)
    registry = apply(redis_client, PROJECT, load_definitions(copy), tmp_path / "r.json")
    assert set(registry.versions) == set(load_definitions(EXAMPLES).views)
    assert set(registry.versions.values()) == {1}
