"""Lateness and duplicates per source key (features.lateness) against SPEC §4 read literally.

The brute force remembers every accepted id forever; the ledger forgets ids whose event
time left the lateness horizon. Re-sent copies carry their original's event time (a
producer re-sends the same event), which is what makes forgetting safe: such a copy is
judged late before it could be mistaken for a new event.
"""

from __future__ import annotations

import pickle
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from features.lateness import (
    ACCEPT,
    DUPLICATE,
    LATE,
    KeyLedger,
    judge_events,
    pack_ledgers,
    unpack_ledgers,
)
from tests.features.bruteforce import Event, judge_all
from tests.features.strategies import event_ids

PROPERTY = settings(max_examples=200, deadline=None)


@st.composite
def broker_orders(draw: st.DrawFn, min_size: int = 0, max_size: int = 60) -> list[Event]:
    """One key's events in broker order: random times, some re-sent (same id and time)."""
    size = draw(st.integers(min_size, max_size))
    eids = draw(event_ids(size))
    span = draw(st.sampled_from([3, 100, 10_000, 3_600_000_000]))
    ts = draw(st.lists(st.integers(-span, span), min_size=size, max_size=size))
    if draw(st.booleans()):
        # Mostly in order with a little jitter, the common shape of a real stream.
        ts = sorted(ts)
    originals = [Event(t, eid) for t, eid in zip(ts, eids, strict=True)]
    order = list(originals)
    if originals:
        resent = draw(st.lists(st.sampled_from(originals), max_size=size))
        places = draw(
            st.lists(st.integers(0, size + len(resent)), min_size=len(resent), max_size=len(resent))
        )
        for copy, place in zip(resent, places, strict=True):
            order.insert(place, copy)
    return order


def lateness_for(order: list[Event]) -> st.SearchStrategy[int]:
    spread = max((e.ts for e in order), default=0) - min((e.ts for e in order), default=0)
    return st.one_of(st.sampled_from([0, 1]), st.integers(0, max(spread, 1)))


@PROPERTY
@given(order=broker_orders(), data=st.data())
def test_verdicts_equal_the_rule_of_spec(order: list[Event], data: st.DataObject) -> None:
    lateness = data.draw(lateness_for(order))
    ledger = KeyLedger(prune_at=data.draw(st.integers(0, 80)))
    verdicts = [ledger.judge(e.ts, e.eid, lateness) for e in order]
    assert verdicts == judge_all(order, lateness)
    accepted = [e for e, v in zip(order, verdicts, strict=True) if v == ACCEPT]
    assert len({e.eid for e in accepted}) == len(accepted)
    assert ledger.max_ts == max((e.ts for e in accepted), default=None)


@dataclass(frozen=True)
class Keyed:
    """An event: what `judge_events` reads of it (its key, time and id)."""

    key: Any
    ts: int
    eid: Any


@st.composite
def keyed_streams(draw: st.DrawFn) -> tuple[list[Keyed], int]:
    """A few keys' events interleaved, ids repeated across and within keys, times spread
    a few lateness widths around each other (some in order with jitter), and a lateness."""
    lateness = draw(st.integers(0, 12))
    keys = st.sampled_from([("a",), ("b",), ("c", 1)])
    jitter = st.integers(-2 * lateness - 2, 2 * lateness + 2)
    drawn = draw(st.lists(st.tuples(keys, jitter, st.integers(0, 90)), max_size=200))
    drift = draw(st.sampled_from([0, 4]))  # 4: drifting forward, the usual shape
    events = [Keyed(k, t + (i // drift if drift else 0), e) for i, (k, t, e) in enumerate(drawn)]
    return events, lateness


@PROPERTY
@given(stream=keyed_streams(), prune_at=st.integers(0, 80), started=st.sets(st.sampled_from("ab")))
def test_judge_events_equals_judging_each_event(
    stream: tuple[list[Keyed], int], prune_at: int, started: set[str]
) -> None:
    """A batch is judged as its events one at a time (`KeyLedger.judge`): same verdicts,
    same ledgers after, pruning included (some keys start with a ledger of a low threshold,
    the rest fresh)."""
    events, lateness = stream
    start = {(k,): KeyLedger(prune_at=prune_at) for k in sorted(started)}
    ledgers = deepcopy(start)
    keys, times, eids = [e.key for e in events], [e.ts for e in events], [e.eid for e in events]
    accepted, late = judge_events(ledgers, keys, times, eids, lateness)
    reference = deepcopy(start)
    verdicts = []
    for e in events:
        if e.key not in reference:
            reference[e.key] = KeyLedger()
        verdicts.append(reference[e.key].judge(e.ts, e.eid, lateness))
    assert accepted == [i for i, v in enumerate(verdicts) if v == ACCEPT]
    assert late == [i for i, v in enumerate(verdicts) if v == LATE]
    assert list(ledgers) == list(reference)
    assert ledgers == reference


@settings(max_examples=25, deadline=None)
@given(order=broker_orders(min_size=150, max_size=300), data=st.data())
def test_forgetting_ids_changes_no_verdict_on_long_streams(
    order: list[Event], data: st.DataObject
) -> None:
    """With the default threshold the ledger prunes several times along the stream."""
    lateness = data.draw(lateness_for(order))
    ledger = KeyLedger()
    verdicts = [ledger.judge(e.ts, e.eid, lateness) for e in order]
    assert verdicts == judge_all(order, lateness)


@PROPERTY
@given(order=broker_orders(min_size=1), data=st.data(), packed=st.booleans())
def test_a_ledger_resumed_from_a_snapshot_judges_the_same(
    order: list[Event], data: st.DataObject, packed: bool
) -> None:
    """Bytewax recovery snapshots the ledger mid-stream, pickled as is or (the judge's way)
    in `pack_ledgers` columns; the resumed copy must agree."""
    lateness = data.draw(lateness_for(order))
    cut = data.draw(st.integers(0, len(order)))
    ledger = KeyLedger(prune_at=data.draw(st.integers(0, 80)))
    head = [ledger.judge(e.ts, e.eid, lateness) for e in order[:cut]]
    if packed:
        columns = pickle.loads(pickle.dumps(pack_ledgers({"k": ledger})))
        resumed = unpack_ledgers(columns)["k"]
    else:
        resumed = pickle.loads(pickle.dumps(ledger))
    assert resumed == ledger
    tail = [resumed.judge(e.ts, e.eid, lateness) for e in order[cut:]]
    assert head + tail == judge_all(order, lateness)


@settings(max_examples=50, deadline=None)
@given(lateness=st.integers(0, 50), count=st.integers(200, 600))
def test_memory_stays_bounded_on_an_ordered_stream(lateness: int, count: int) -> None:
    """Ids older than the horizon are dropped, so a long stream does not grow the ledger."""
    ledger = KeyLedger()
    for i in range(count):
        assert ledger.judge(i, i, lateness) == ACCEPT
        assert len(ledger.seen) <= max(64, 2 * (lateness + 1)) + 1


def test_boundaries_of_the_lateness_rule() -> None:
    ledger = KeyLedger()
    assert ledger.judge(100, "a", 10) == ACCEPT
    assert ledger.judge(90, "b", 10) == ACCEPT  # exactly newest - lateness: on time
    assert ledger.judge(89, "c", 10) == LATE
    assert ledger.judge(120, "d", 10) == ACCEPT  # newer: moves the horizon to 110
    assert ledger.judge(100, "e", 10) == LATE
    assert ledger.max_ts == 120


def test_late_is_judged_before_duplicate() -> None:
    """SPEC §4: schema, then lateness, then duplicates, so a late copy is dead-lettered as late."""
    ledger = KeyLedger()
    assert ledger.judge(5, "a", 0) == ACCEPT
    assert ledger.judge(5, "a", 0) == DUPLICATE
    assert ledger.judge(6, "b", 0) == ACCEPT
    assert ledger.judge(5, "a", 0) == LATE
    assert judge_all([Event(5, "a"), Event(5, "a"), Event(6, "b"), Event(5, "a")], 0) == [
        "accept", "duplicate", "accept", "late",
    ]  # fmt: skip


def test_a_rejected_event_moves_nothing() -> None:
    ledger = KeyLedger()
    ledger.judge(50, 1, 5)
    ledger.judge(10, 2, 5)  # late: must not be remembered
    ledger.judge(50, 1, 5)  # duplicate: must not move max_ts
    assert ledger.seen == {1: 50}
    assert ledger.max_ts == 50
    assert ledger.judge(48, 2, 5) == ACCEPT  # id 2 was never accepted


def test_ids_of_each_dtype_are_distinct() -> None:
    ledger = KeyLedger()
    ids: list[Any] = [1, "1", 2]
    assert [ledger.judge(0, eid, 0) for eid in ids] == [ACCEPT, ACCEPT, ACCEPT]
    assert [ledger.judge(0, eid, 0) for eid in ids] == [DUPLICATE] * 3


def test_a_ledger_pickled_before_it_had_slots_still_loads(monkeypatch: Any) -> None:
    """Format-1 recovery stores hold ledgers pickled when the class had no slots: their
    state is a `__dict__`. Such a pickle is made here with a slot-less class of that name."""
    import features.lateness

    @dataclass
    class KeyLedger:  # the class as it was: same module and name, fields in a `__dict__`
        max_ts: int | None = None
        seen: dict[Any, int] = field(default_factory=dict)
        prune_at: int = 64

    KeyLedger.__module__, KeyLedger.__qualname__ = "features.lateness", "KeyLedger"
    monkeypatch.setattr(features.lateness, "KeyLedger", KeyLedger)
    old = pickle.dumps(KeyLedger(120, {"a": 100, "b": 120}, 64))
    monkeypatch.undo()
    restored = pickle.loads(old)
    assert type(restored) is features.lateness.KeyLedger
    assert restored == features.lateness.KeyLedger(120, {"a": 100, "b": 120}, 64)
    assert restored.judge(121, "a", lateness=50) == DUPLICATE
    assert pickle.loads(pickle.dumps(restored)) == restored


TEXTS = st.text(st.characters(codec="utf-8"), max_size=4)
VALUES = st.one_of(TEXTS, st.integers(-(2**70), 2**70), st.none())


LEDGERS = st.builds(
    KeyLedger,
    st.one_of(st.none(), st.integers(-(2**62), 2**62)),
    st.dictionaries(
        st.one_of(TEXTS, st.integers(-(2**70), 2**70)),
        st.one_of(st.integers(-(2**62), 2**62), st.integers(2**63, 2**70)),
        max_size=5,
    ),
    st.integers(0, 200),
)
KEYS = st.one_of(
    st.tuples(TEXTS),
    st.tuples(st.integers(-5, 5), TEXTS),
    st.tuples(VALUES),
    TEXTS,  # entity ids, as the judge keys single string keys
    st.just(7),  # neither: kept as it is
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.dictionaries(TEXTS, LEDGERS, max_size=8), st.dictionaries(KEYS, LEDGERS, max_size=8)
    )
)
def test_packed_ledgers_come_back_equal_through_a_pickle(ledgers: dict[Any, KeyLedger]) -> None:
    """`pack_ledgers` flattens keys and seen ids into texts and int64 columns where every
    value allows it; whatever the keys and ids, the ledgers come back equal, in order."""
    back = unpack_ledgers(pickle.loads(pickle.dumps(pack_ledgers(ledgers))))
    assert list(back) == list(ledgers)
    assert back == ledgers
    for got, want in zip(back, ledgers, strict=True):
        assert type(got) is type(want)
        if isinstance(got, tuple):
            assert [type(v) for v in got] == [type(v) for v in want]
    for key, ledger in back.items():
        assert list(ledger.seen.items()) == list(ledgers[key].seen.items())
        assert all(type(a) is type(b) for a, b in zip(ledger.seen, ledgers[key].seen, strict=True))
