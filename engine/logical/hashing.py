"""A stable, vectorised hash of key columns that places each row on a shard.

Placement is durable, so the hash must never change between versions or processes: it is written here in
numpy (splitmix64 for integers, a polynomial hash over UTF-8 bytes for strings) rather than borrowed from a
library whose hash is documented as unstable. ``tests/engine/test_hashing_index.py`` pins golden values.

Nothing is cached between calls: the powers of the string hash's multiplier are computed per call (O(longest
key), vectorised), so one long key neither stalls the process in a Python loop nor pins a large table in memory.
Keys written through the engine are at most ``engine.model.coerce.MAX_KEY_BYTES`` long; the hash itself takes
any length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_P = np.uint64(1099511628211)
# String bytes hashed per pass: each byte takes a few uint64 temporaries (8 bytes each), so a pass over a large
# insert's keys stays within tens of MiB instead of growing with the batch.
_CHUNK_BYTES = 1 << 20
_SHORT = 4096  # up to this many powers, one cumulative product is quicker than the blocked computation


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def _int_hash(values: pa.Array) -> np.ndarray:
    return _mix(values.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64))


def _string_hash(values: pa.Array) -> np.ndarray:
    """``mix(sum(byte_i * P^(len-1-i)) xor len)`` over each string's UTF-8 bytes, all mod 2^64."""
    values = pc.cast(values, pa.large_string()) if values.type != pa.large_string() else values
    n = len(values)
    if n == 0:
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(values.buffers()[1], np.int64, n + 1, values.offset * 8)
    data = np.frombuffer(values.buffers()[2], np.uint8) if values.buffers()[2] is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    powers = _powers(int(lengths.max()))
    sums = np.empty(n, np.uint64)
    for lo, hi in _chunks(offsets):
        sums[lo:hi] = _polynomial(data, offsets[lo : hi + 1], powers)
    return _mix(sums ^ lengths.astype(np.uint64))


def _chunks(offsets: np.ndarray) -> Iterator[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of about ``_CHUNK_BYTES`` bytes each (a longer string is a range of its own)."""
    n = len(offsets) - 1
    if offsets[-1] - offsets[0] <= _CHUNK_BYTES:  # the usual case: one pass
        yield 0, n
        return
    lo = 0
    while lo < n:
        hi = int(np.searchsorted(offsets, offsets[lo] + _CHUNK_BYTES, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        yield lo, hi
        lo = hi


def _polynomial(data: np.ndarray, offsets: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """``sum(byte_i * P^(len-1-i))`` of the strings between consecutive ``offsets``, computed for all at once."""
    start, end = offsets[:-1], offsets[1:]
    lengths = end - start
    sums = np.zeros(len(start), np.uint64)
    nonempty = lengths > 0
    if not nonempty.any():
        return sums
    byts = data[start[0] : end[-1]].astype(np.uint64)
    pos_from_end = np.repeat(end, lengths) - np.arange(start[0], end[-1]) - 1
    with np.errstate(over="ignore"):
        weighted = byts * powers[pos_from_end]
        sums[nonempty] = np.add.reduceat(weighted, (start - start[0])[nonempty])
    return sums


def _powers(n: int) -> np.ndarray:
    """``P^0 .. P^(n-1)`` mod 2^64: a block of ``b`` consecutive powers times every ``b``-th power.

    Past ``_SHORT`` powers: two short cumulative products and one outer product (for a 64 MiB key ~40 ms here,
    against ~0.8 s for one ``np.cumprod`` over all of them and ~25 s for the Python loop this replaced). Modular
    products are exact, so the values are the same as multiplying by ``P`` one step at a time.
    """
    if n <= _SHORT:
        return _geometric(n, _P)
    b = math.isqrt(n - 1) + 1  # b * b >= n
    with np.errstate(over="ignore"):
        low = _geometric(b, _P)
        high = _geometric(-(-n // b), low[-1] * _P)
        return np.multiply.outer(high, low).ravel()[:n]


def _geometric(n: int, ratio: np.uint64) -> np.ndarray:
    """``ratio^0 .. ratio^(n-1)`` mod 2^64."""
    steps = np.full(max(n, 0), ratio, np.uint64)
    steps[:1] = 1
    return np.cumprod(steps)


def hash_columns(columns: Sequence[pa.Array | pa.ChunkedArray]) -> np.ndarray:
    """One uint64 per row, combining every key column in order."""
    h: np.ndarray | None = None
    for col in columns:
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            part = _string_hash(arr)
        elif pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
            part = _int_hash(
                pc.cast(arr, pa.int64())
                if pa.types.is_timestamp(arr.type)
                else pc.cast(arr, pa.int32()).cast(pa.int64())
            )
        else:
            part = _int_hash(arr)
        with np.errstate(over="ignore"):
            h = part if h is None else _mix(h * _P ^ part)
    assert h is not None
    return h


def shard_ids(columns: Sequence[pa.Array | pa.ChunkedArray], shards: int) -> np.ndarray:
    """The shard of each row: ``hash(key) mod shards``."""
    return (hash_columns(columns) % np.uint64(shards)).astype(np.int64)
