"""Stable shard hashing and the key index: pure functions, no Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from engine.logical.hashing import hash_columns, shard_ids
from engine.physical.keyindex import KeyIndex, duplicated


def test_hash_is_stable_across_releases() -> None:
    # Placement is durable: if these change, existing tables' rows are on the wrong shards.
    assert hash_columns([pa.array([0, 1, -1], pa.int64())]).tolist() == [
        16294208416658607535,
        10451216379200822465,
        16490336266968443936,
    ]
    assert (
        hash_columns([pa.array(["a", "", "héllo"])]).tolist()
        == hash_columns([pa.array(["a", "", "héllo"], pa.large_string())]).tolist()
    )


@given(st.lists(st.text(max_size=20), min_size=1, max_size=50))
def test_string_hash_matches_one_by_one(values: list[str]) -> None:
    whole = hash_columns([pa.array(values)]).tolist()
    single = [hash_columns([pa.array([v])])[0] for v in values]
    assert whole == single
    # a slice (non-zero offset) hashes the same as a fresh array
    assert hash_columns([pa.array(["pad", *values]).slice(1)]).tolist() == whole


def test_shards_are_balanced() -> None:
    counts = np.bincount(shard_ids([pa.array(np.arange(100_000))], 4), minlength=4)
    assert counts.min() > 24_000


def test_composite_keys_depend_on_every_column() -> None:
    a = hash_columns([pa.array([1, 1]), pa.array(["x", "y"])])
    assert a[0] != a[1]


@given(st.lists(st.integers(0, 50), max_size=100), st.lists(st.integers(0, 100), max_size=100))
def test_key_index_is_a_multiset(existing: list[int], probe: list[int]) -> None:
    index = KeyIndex(np.array(existing, np.uint64))
    assert index.maybe_contains(np.array(probe, np.uint64)).tolist() == [p in existing for p in probe]
    grown = index.add(np.array(probe, np.uint64))
    assert len(grown) == len(existing) + len(probe) and len(index) == len(existing)
    shrunk = grown.remove(np.array(probe, np.uint64))
    assert sorted(shrunk.sorted_hashes().tolist()) == sorted(existing)


def test_duplicated_finds_repeats() -> None:
    assert duplicated(np.sort(np.array([3, 1, 3, 2, 1, 1], np.uint64))).tolist() == [1, 3]
