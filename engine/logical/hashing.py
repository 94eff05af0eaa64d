"""A stable, vectorised hash of key columns that places each row on a shard.

Placement is durable, so the hash must never change between versions or processes: it is written here in
numpy (splitmix64 for integers, a polynomial hash over UTF-8 bytes for strings) rather than borrowed from a
library whose hash is documented as unstable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_P = np.uint64(1099511628211)


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def _int_hash(values: pa.Array) -> np.ndarray:
    return _mix(values.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64))


def _string_hash(values: pa.Array) -> np.ndarray:
    values = pc.cast(values, pa.large_string()) if values.type != pa.large_string() else values
    n = len(values)
    if n == 0:
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(values.buffers()[1], np.int64, n + 1, values.offset * 8)
    data = np.frombuffer(values.buffers()[2], np.uint8) if values.buffers()[2] is not None else np.zeros(0, np.uint8)
    start, end = offsets[:-1], offsets[1:]
    lengths = end - start
    byts = data[start[0] : end[-1]].astype(np.uint64)
    # h = sum(byte_i * P^(len-1-i)) mod 2^64, computed for every string at once.
    pos_from_end = np.repeat(end - start[0], lengths) - np.arange(start[0], end[-1]) + start[0] - 1
    with np.errstate(over="ignore"):
        powers = _powers(int(lengths.max()) if len(lengths) else 0)
        weighted = byts * powers[pos_from_end]
        sums = np.zeros(n, np.uint64)
        nonempty = lengths > 0
        if nonempty.any():
            sums[nonempty] = np.add.reduceat(weighted, (start - start[0])[nonempty])
        return _mix(sums ^ lengths.astype(np.uint64))


_POWERS = np.ones(1, np.uint64)


def _powers(n: int) -> np.ndarray:
    global _POWERS
    if len(_POWERS) < n:
        out = np.ones(max(n, 2 * len(_POWERS)), np.uint64)
        with np.errstate(over="ignore"):
            for i in range(1, len(out)):
                out[i] = out[i - 1] * _P
        _POWERS = out
    return _POWERS


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
