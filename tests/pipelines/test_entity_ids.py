"""Column-wise entity ids and shards (`layout.plain_entity_ids`, the decoder's shards)
held equal to the per-key reference: `layout.entity_id` and `decoding.shard_of`."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from features import layout
from pipelines.decoding import LEDGER_SHARDS, Decoder, shard_of
from pipelines.plan import PlanSource
from tests.pipelines.scenario import definitions

# Plain characters, and some that `entity_id` quotes; the empty string too.
TEXT = st.text(alphabet=st.sampled_from("abcXYZ019_.~-/|% {é"), max_size=6)
VALUE = st.one_of(TEXT, st.integers(-5, 5), st.none())
KEYS = st.integers(1, 2).flatmap(lambda width: st.lists(st.tuples(*[VALUE] * width)))


@given(KEYS)
def test_plain_entity_ids_are_the_entity_ids_or_none(keys: list[tuple[Any, ...]]) -> None:
    got = layout.plain_entity_ids(keys)
    if got is not None:
        assert got == [layout.entity_id(key) for key in keys]
        assert all(len(key) == 1 and type(key[0]) is str for key in keys)


def test_plain_entity_ids_take_every_plain_single_string_column() -> None:
    assert layout.plain_entity_ids([("u1",), ("",), ("a.b~c-d_e",)]) == ["u1", "", "a.b~c-d_e"]
    assert layout.plain_entity_ids([("",)]) is None  # nothing to match: the reference decides
    assert layout.plain_entity_ids([("u1", "i1")]) is None
    assert layout.plain_entity_ids([(1,)]) is None
    assert layout.plain_entity_ids([]) is None


@given(st.lists(st.one_of(TEXT, st.sampled_from(["u1", "u2", "u3"])), min_size=1))
def test_decoder_shards_equal_shard_of_per_key(values: list[str]) -> None:
    decoder = Decoder(PlanSource(definitions()))
    keys = [(v,) for v in values]
    ids, got = decoder._shards_of(keys)
    assert isinstance(got, np.ndarray)
    assert got.tolist() == [shard_of(key, LEDGER_SHARDS) for key in keys]
    assert ids is None or ids == [layout.entity_id(key) for key in keys]
