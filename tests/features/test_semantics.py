"""SPEC §4 end to end in the core: tiles (and the ledger before them) == a brute-force scan.

Events are applied with a random writer clock `now` per event, so some stay raw in
`pending` (later than the clock) and some are folded into tiles. Tiles never hold an event
later than `folded_until`, so values are compared for query times `T >= folded_until`
(online reads use T = now >= folded_until); pending events after T must never count.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from features.lateness import KeyLedger
from features.model import Feature, FeatureView
from features.tiles import EntityTiles, ViewTiler
from tests.features.bruteforce import Event, feature_value, judge_all, same_value
from tests.features.strategies import (
    Scenario,
    apply_events,
    before_pending,
    check_values,
    clocks,
    event_sets,
    query_times,
    scenarios,
)

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIGHTER = settings(PROPERTY, max_examples=100)


@PROPERTY
@given(data=st.data())
def test_tiles_equal_brute_force_for_every_function(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    events = data.draw(event_sets(scenario))
    arrival = data.draw(st.permutations(events))
    tiler, state = apply_events(data, scenario, arrival)
    as_of = data.draw(query_times(scenario, events, state.folded_until, before_pending(state)))
    assert check_values(tiler, state, events, as_of) == len(as_of) * len(scenario.view.features)
    assert state.max_ts == max((e.ts for e in events), default=None)
    # Coverage of the interesting cases (see --hypothesis-show-statistics).
    event(f"pending: {bool(state.pending)}")
    event(f"a pending event after a query time: {any(r[0] > min(as_of) for r in state.pending)}")
    tail = any(
        e.ts < t - f.window <= (e.ts // f.granularity) * f.granularity
        or (e.ts // f.granularity) * f.granularity == t - f.window
        for e in events
        for t in as_of
        for f in scenario.view.features
    )
    event(f"an event in a window's partial or edge tail tile: {tail}")


@LIGHTER
@given(data=st.data())
def test_arrival_order_and_clock_do_not_change_values(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    events = data.draw(event_sets(scenario, min_size=1))
    tiler, one = apply_events(data, scenario, data.draw(st.permutations(events)))
    _, other = apply_events(data, scenario, data.draw(st.permutations(events)))
    floor = max(one.folded_until, other.folded_until)
    for t in data.draw(query_times(scenario, events, floor, before_pending(one, other))):
        a, b = tiler.evaluate(one, t), tiler.evaluate(other, t)
        assert all(same_value(a[name], b[name]) for name in a), (t, a, b)


@LIGHTER
@given(data=st.data())
def test_no_event_after_t_ever_contributes(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    drawn = data.draw(event_sets(scenario, min_size=2, max_size=30))
    cut = data.draw(st.integers(0, len(drawn) - 1))
    events, rest = drawn[:cut], drawn[cut:]
    tiler, state = apply_events(data, scenario, events)
    t = data.draw(st.integers(state.folded_until, state.folded_until + scenario.span))
    before = tiler.evaluate(state, t)
    check_values(tiler, state, events, [t])
    # Later events reach a writer whose clock is at most T, so they wait in `pending`.
    shifts = data.draw(
        st.lists(st.integers(1, scenario.span), min_size=len(rest), max_size=len(rest))
    )
    later = [Event(t + d, e.eid, e.row) for e, d in zip(rest, shifts, strict=True)]
    for e in later:
        now = data.draw(st.integers(state.folded_until, t))
        assert tiler.apply(state, e.ts, e.eid, e.row, now=now) == set()
    assert tiler.evaluate(state, t) == before
    # Once the clock passes them they count for later query times, exactly as the rule says.
    everything = events + later
    tiler.fold_pending(state, max(e.ts for e in everything))
    assert state.pending == []
    check_values(tiler, state, everything, [state.folded_until, state.folded_until + 1])


def lateness_events(data: st.DataObject, scenario: Scenario) -> list[Event]:
    """Events over a few source keys in broker order, with re-sent copies (same id, same time).

    Copies carry the event time of their original: the ledger forgets an id once its time
    falls out of the lateness horizon, which changes no verdict only because a copy with
    the same time is then late anyway (see features.lateness). A copy may carry a
    different payload, so which copy wins is visible.
    """
    keys = data.draw(
        st.lists(st.sampled_from(["k1", "k2", "k3"]), min_size=1, max_size=3, unique=True)
    )
    base = data.draw(event_sets(scenario, max_size=50))
    # Ids are unique within a key but may repeat across keys (not duplicates there).
    owners = data.draw(st.lists(st.sampled_from(keys), min_size=len(base), max_size=len(base)))
    originals = [Event(e.ts, e.eid, e.row, k) for e, k in zip(base, owners, strict=True)]
    if not originals:
        return []
    resent = data.draw(st.lists(st.sampled_from(originals), max_size=15))
    payloads = data.draw(st.lists(st.integers(-9, 9), min_size=len(resent), max_size=len(resent)))
    copies = [
        Event(o.ts, o.eid, {"x": x, "s": "copy"}, o.key)
        for o, x in zip(resent, payloads, strict=True)
    ]
    shared = data.draw(st.lists(st.sampled_from(originals), max_size=5))
    others = [Event(o.ts, o.eid, o.row, "k4") for o in shared]
    return data.draw(st.permutations(originals + copies + others))


@PROPERTY
@given(data=st.data())
def test_ledger_then_tiles_equal_brute_force(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    broker_order = lateness_events(data, scenario)
    lateness = data.draw(
        st.one_of(
            st.sampled_from((0, 1, *scenario.sizes, scenario.view.ttl)),
            st.integers(0, scenario.span),
        )
    )
    # A small first prune threshold makes the ledger forget ids within short tests.
    prune_at = data.draw(st.integers(0, 64))
    ledgers: dict[Any, KeyLedger] = {}
    states: dict[Any, EntityTiles] = {}
    tiler = ViewTiler(scenario.view)
    verdicts = []
    nows = data.draw(clocks(scenario, broker_order))
    for e, now in zip(broker_order, nows, strict=True):
        ledger = ledgers.setdefault(e.key, KeyLedger(prune_at=prune_at))
        verdict = ledger.judge(e.ts, e.eid, lateness)
        verdicts.append(verdict)
        if verdict == "accept":
            tiler.apply(states.setdefault(e.key, EntityTiles()), e.ts, e.eid, e.row, now)
    assert verdicts == judge_all(broker_order, lateness)
    accepted = [e for e, v in zip(broker_order, verdicts, strict=True) if v == "accept"]
    for key, state in states.items():
        own = [e for e in accepted if e.key == key]
        as_of = data.draw(query_times(scenario, own, state.folded_until, before_pending(state)))
        check_values(tiler, state, own, as_of)


TIES: list[tuple[list[Any], dict[str, Any]]] = [
    ([9, 10, 2], {"first": "id2", "last": "id10", "last3": ["id10", "id9", "id2"]}),
    # String ids compare as strings: "9" > "2" > "10".
    (["9", "10", "2"], {"first": "id10", "last": "id9", "last3": ["id9", "id2", "id10"]}),
]


@pytest.mark.parametrize(("eids", "expected"), TIES)
@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 0, 2]])
@pytest.mark.parametrize("fold", [False, True])
def test_tie_break_larger_event_id_is_later(
    eids: list[Any], expected: dict[str, Any], order: list[int], fold: bool
) -> None:
    g, window, ts = 1_000_000, 60_000_000, 5_000_000
    feats = (
        Feature("first", "first", "x", window, g),
        Feature("last", "last", "x", window, g),
        Feature("last3", "last_n", "x", window, g, 3),
    )
    tiler = ViewTiler(FeatureView("v", "user", "src", window, feats))
    state = EntityTiles()
    for i in order:
        # The event eids[1] arrives before the clock reaches it and waits in `pending`.
        tiler.apply(state, ts, eids[i], {"x": f"id{eids[i]}"}, now=ts - 1 if i == 1 else ts)
    assert len(state.pending) == 1
    if fold:
        tiler.fold_pending(state, ts)
        assert state.pending == []
    assert tiler.evaluate(state, ts) == expected
    events = [Event(ts, eid, {"x": f"id{eid}"}) for eid in eids]
    brute = {f.name: feature_value(f.function, events, ts, window, g, "x", f.n) for f in feats}
    assert brute == expected
