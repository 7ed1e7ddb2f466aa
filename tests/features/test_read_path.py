"""The online read path's shortcuts give exactly the reference values.

`ViewTiler.evaluate` merges each feature's tiles with per-function shortcuts, and
`layout.TileDecoder` with a horizon decodes only the tiles an evaluation as of T reads.
Both must give the very values of `ViewTiler.evaluate_feature` over the full state (the
reference definition, itself checked against the brute force in test_semantics): equal
JSON, so an int never becomes a float and -0.0 never becomes 0.0.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.layout import TileDecoder, decode_tiles, encode_tiles
from features.tiles import EntityTiles, ViewTiler
from tests.features.strategies import apply_events, event_sets, scenarios, times

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(tiler: ViewTiler, state: EntityTiles, names: list[str], as_of: int) -> bytes:
    return orjson.dumps({n: tiler.evaluate_feature(state, n, as_of) for n in names})


@PROPERTY
@given(data=st.data())
def test_evaluate_equals_the_reference_per_feature(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    events = data.draw(event_sets(scenario))
    tiler, state = apply_events(data, scenario, events)
    every = [f.name for f in scenario.view.features]
    # A subset in any order, repeats allowed (a request may name a feature twice).
    names = data.draw(st.lists(st.sampled_from(every), min_size=1, max_size=2 * len(every)))
    # Any query time: both sides define a value even before `folded_until`.
    for as_of in data.draw(st.lists(times(scenario), min_size=1, max_size=6)):
        wanted = list(dict.fromkeys(names))
        assert orjson.dumps(tiler.evaluate(state, as_of, names)) == reference(
            tiler, state, wanted, as_of
        )
        assert orjson.dumps(tiler.evaluate(state, as_of)) == reference(tiler, state, every, as_of)


@PROPERTY
@given(data=st.data())
def test_decoding_only_the_tiles_read_changes_no_value(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    events = data.draw(event_sets(scenario))
    tiler, state = apply_events(data, scenario, events)
    fields: dict[Any, Any] = {
        k.encode(): v for k, v in encode_tiles(state, state.tiles, ["u1"]).items()
    }
    flat = [x for pair in fields.items() for x in pair]  # RESP2's HGETALL reply
    every = [f.name for f in scenario.view.features]
    names = data.draw(st.lists(st.sampled_from(every), min_size=1, max_size=len(every)))
    full = decode_tiles(fields)
    assert full is not None
    assert full.tiles == state.tiles
    for as_of in data.draw(st.lists(times(scenario), min_size=1, max_size=6)):
        decoder = TileDecoder(tiler.read_horizon(names), as_of)
        for reply in (fields, flat):
            part = decoder.decode(reply)
            assert part is not None
            assert set(part.tiles) <= set(state.tiles)
            assert (part.max_ts, part.folded_until, part.pending) == (
                state.max_ts,
                state.folded_until,
                state.pending,
            )
            assert orjson.dumps(tiler.evaluate(part, as_of, names)) == reference(
                tiler, state, list(dict.fromkeys(names)), as_of
            )


def test_a_decoder_skips_tiles_outside_the_horizon_and_unknown_sizes() -> None:
    reply = {
        b"t:60:0": b'{"n": 1}',
        b"t:60:60": b'{"n": 2}',
        b"t:60:120": b'{"n": 5}',
        b"t:60:180": b'{"n": 3}',
        b"t:10:120": b'{"n": 4}',
        b"m": b'{"max_ts": 130, "folded": 130}',
    }
    state = TileDecoder({60: 60}, 130).decode(reply)
    assert state is not None
    assert state.tiles == {(60, 120): {"n": 5}}  # 0 and 60 start before 130 - 60
    assert state.max_ts == 130
    assert TileDecoder({60: 60}, 130).decode({}) is None
    text = {k.decode(): v.decode() for k, v in reply.items()}
    assert TileDecoder({60: 60}, 130).decode(text) == state
