"""Stable shard hashing and the key index: pure functions, no Ray."""

from __future__ import annotations

import datetime as dt
import gc
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.logical import hashing
from engine.logical.hashing import hash_columns, shard_ids
from engine.physical.keyindex import KeyIndex, duplicated

# Golden values, computed by the hash as it was first released (the Python loop over a cached table of powers).
# Placement is durable: if one of these changes, existing tables' rows are on the wrong shards.
GOLDEN: list[tuple[str, pa.Array, list[int]]] = [
    (
        "int64",
        pa.array([0, 1, -1, 2**63 - 1, -(2**63), 123456789], pa.int64()),
        [
            16294208416658607535,
            10451216379200822465,
            16490336266968443936,
            3055647633038352039,
            5196802822362493915,
            2466975172287755897,
        ],
    ),
    (
        "string",
        pa.array(["", "a", "b", "ab", "ba", "héllo", "日本語", "user-000042", "x" * 100, "a\x00b"]),
        [
            16294208416658607535,
            7075883509774426401,
            4824385676517010403,
            5433828021249829565,
            12498741250178953129,
            15414389746759283981,
            3566190675139814817,
            9905530645106409114,
            2986064305300836668,
            5648441391742146132,
        ],
    ),
    ("long string", pa.array(["k" * 5000, "ab" * 3000]), [7260832187842099921, 16056190916687335904]),
    (
        "timestamp",
        pa.array(
            [
                dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
                dt.datetime(2024, 2, 29, 12, 34, 56, 789012, tzinfo=dt.UTC),
                dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
            ],
            pa.timestamp("us", tz="UTC"),
        ),
        [16294208416658607535, 5322666580471296055, 11571390371031862482],
    ),
    (
        "date",
        pa.array([dt.date(1970, 1, 1), dt.date(2024, 2, 29), dt.date(1900, 1, 1)], pa.date32()),
        [16294208416658607535, 15820024857312553229, 5469286500030788685],
    ),
]


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


@pytest.mark.parametrize(("kind", "values", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_hashes_match_the_golden_values(kind: str, values: pa.Array, expected: list[int]) -> None:
    assert hash_columns([values]).tolist() == expected
    assert hash_columns([pa.chunked_array([values[:1], values[1:]])]).tolist() == expected


def test_composite_hash_matches_the_golden_values() -> None:
    key = [pa.array([1, 1, 2]), pa.array(["x", "y", "x"])]
    assert hash_columns(key).tolist() == [10333065477188679917, 11755363504648527014, 17044393571021897257]


def _reference(value: str) -> int:
    """The string hash by its definition, one byte at a time in Python integers."""
    data = value.encode()
    h = 0
    for byte in data:
        h = (h * int(hashing._P) + byte) % 2**64
    return int(hashing._mix(np.array([h ^ len(data)], np.uint64))[0])


@given(st.lists(st.text(max_size=300), min_size=1, max_size=30))
def test_string_hash_is_the_polynomial_of_its_bytes(values: list[str]) -> None:
    assert hash_columns([pa.array(values)]).tolist() == [_reference(v) for v in values]


def test_string_hash_is_the_same_across_pass_boundaries() -> None:
    # ~3 MiB of keys: hashed in several passes of about _CHUNK_BYTES, each row as if alone
    values = [chr(97 + i % 26) * (i * 37 % 20_000) for i in range(300)] + ["", "é" * 5000]
    whole = hash_columns([pa.array(values, pa.large_string())]).tolist()
    assert whole == [int(hash_columns([pa.array([v])])[0]) for v in values]
    assert whole[-1] == _reference(values[-1])


def test_hashing_a_long_key_keeps_no_memory() -> None:
    # A 3 MiB key needs 3 Mi powers (24 MiB); the old module-level table kept them for the life of the process.
    key = pa.array(["z" * (3 << 20)])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        hash_columns([key])
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1 << 20, f"{kept} bytes kept after hashing one long key"


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
