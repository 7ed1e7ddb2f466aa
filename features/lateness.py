"""Lateness and event-id deduplication per source key (SPEC §4).

Checked in broker order after schema validation: an event older than the newest accepted
event time of its source key minus `allowed_lateness` is late; otherwise a repeated event
id of an accepted event is a duplicate; otherwise the event is accepted. Ids are kept
while their event time is within the lateness horizon: older copies are judged late first,
so forgetting them changes no verdict for copies that carry the same event time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal

Verdict = Literal["accept", "late", "duplicate"]
ACCEPT: Verdict = "accept"
LATE: Verdict = "late"
DUPLICATE: Verdict = "duplicate"
# The columns of `pack_ledgers`: a list per field, so pickling them is C work, not a
# Python `__reduce__` per ledger (about 2x faster for 100,000 keys, at every epoch close).
LedgerColumns = tuple[list[Any], list[int | None], list[dict[Any, int]], list[int]]


@dataclass(slots=True)
class KeyLedger:
    """Lateness/dedup state of one source key; picklable for Bytewax recovery.

    Slotted: the judge reads two fields of 100,000s of ledgers at random, and fields kept
    in the object save a cache miss per event on a `__dict__` (~15% of the judge).

    >>> ledger = KeyLedger()
    >>> [ledger.judge(ts, eid, lateness=10) for ts, eid in [(100, "a"), (100, "a"), (85, "b")]]
    ['accept', 'duplicate', 'late']
    """

    max_ts: int | None = None
    seen: dict[Any, int] = field(default_factory=dict)
    prune_at: int = 64

    def judge(self, ts: int, eid: Any, lateness: int) -> Verdict:
        """Judge one event and, if accepted, remember it (`judge_events` of one event: the
        rule is written once)."""
        accepted, late = judge_events({None: self}, [None], [ts], [eid], lateness)
        return ACCEPT if accepted else LATE if late else DUPLICATE

    def __setstate__(self, state: Any) -> None:
        """Restore a pickled ledger: `(None, fields)` as slots pickle, or the `__dict__` of
        one pickled before the class had slots (a format-1 recovery store)."""
        fields = state[1] if isinstance(state, tuple) else state
        for name, value in fields.items():
            setattr(self, name, value)

    def _prune(self, lateness: int) -> None:
        if self.max_ts is None:
            return
        horizon = self.max_ts - lateness
        self.seen = {eid: ts for eid, ts in self.seen.items() if ts >= horizon}
        self.prune_at = max(64, 2 * len(self.seen))


def judge_events(
    ledgers: dict[Any, KeyLedger],
    keys: Iterable[Any],
    times: Iterable[int],
    eids: Iterable[Any],
    lateness: int,
) -> tuple[list[int], list[int]]:
    """Judge events in order, each by the ledger of its key (made on first sight); the
    events come as columns: their keys, event times and event ids.

    Returns the positions of the accepted and of the late events; the rest are duplicates.

    >>> ledgers: dict[Any, KeyLedger] = {}
    >>> judge_events(ledgers, ["a", "a", "b", "a"], [100, 100, 5, 85], [1, 1, 1, 2], 10)
    ([0, 2], [3])
    """
    accepted: list[int] = []
    late: list[int] = []
    accept, reject_late, get = accepted.append, late.append, ledgers.get
    # The hot loop of the judge step: one pass, the rule inlined (`KeyLedger.judge` calls it).
    for i, (key, ts, eid) in enumerate(zip(keys, times, eids, strict=True)):
        ledger = get(key)
        if ledger is None:
            ledger = ledgers[key] = KeyLedger()
        top = ledger.max_ts
        if top is not None and ts < top - lateness:
            reject_late(i)
            continue
        seen = ledger.seen
        if eid in seen:
            continue
        seen[eid] = ts
        if top is None or ts > top:
            ledger.max_ts = ts
        if len(seen) > ledger.prune_at:
            ledger._prune(lateness)
        accept(i)
    return accepted, late


def pack_ledgers(ledgers: dict[Any, KeyLedger]) -> LedgerColumns:
    """The ledgers as columns (keys, max_ts, seen, prune_at), for a fast snapshot.

    >>> unpack_ledgers(pack_ledgers({"a": KeyLedger(5, {"e": 5})}))
    {'a': KeyLedger(max_ts=5, seen={'e': 5}, prune_at=64)}
    """
    values = list(ledgers.values())
    return (
        list(ledgers),
        list(map(_MAX_TS, values)),
        list(map(_SEEN, values)),
        list(map(_PRUNE_AT, values)),
    )


def unpack_ledgers(columns: LedgerColumns) -> dict[Any, KeyLedger]:
    """The ledgers `pack_ledgers` packed (they share its `seen` dicts)."""
    keys, max_ts, seen, prune_at = columns
    return dict(zip(keys, map(KeyLedger, max_ts, seen, prune_at), strict=True))


_MAX_TS, _SEEN, _PRUNE_AT = attrgetter("max_ts"), attrgetter("seen"), attrgetter("prune_at")
