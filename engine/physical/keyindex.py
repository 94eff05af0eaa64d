"""A shard's index of its primary keys, kept as a sorted array of their 64-bit hashes.

Checking a batch of new keys costs a binary search per key instead of rebuilding a hash set of the whole shard
on every insert; exact key comparison is needed only where hashes collide, which for real keys is almost never.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from engine.logical.hashing import hash_columns


class KeyIndex:
    def __init__(self, hashes: np.ndarray | None = None, *, presorted: bool = False) -> None:
        if hashes is None:
            hashes = np.zeros(0, np.uint64)
        self._sorted = hashes if presorted else np.sort(hashes)

    @classmethod
    def of(cls, columns: Sequence[pa.Array | pa.ChunkedArray]) -> KeyIndex:
        return cls(hash_columns(columns) if len(columns[0]) else None)

    def sorted_hashes(self) -> np.ndarray:
        return self._sorted

    def __len__(self) -> int:
        return len(self._sorted)

    def maybe_contains(self, hashes: np.ndarray) -> np.ndarray:
        """True where a hash is present: the key may exist (exact check needed), False: it certainly does not."""
        if len(self._sorted) == 0:
            return np.zeros(len(hashes), bool)
        pos = np.searchsorted(self._sorted, hashes)
        pos[pos == len(self._sorted)] = 0
        return self._sorted[pos] == hashes

    def add(self, hashes: np.ndarray, *, presorted: bool = False) -> KeyIndex:
        """A new index with ``hashes`` added; this one is unchanged."""
        new = hashes if presorted else np.sort(hashes)
        if len(self._sorted) == 0:
            return KeyIndex(new, presorted=True)
        return KeyIndex(np.insert(self._sorted, np.searchsorted(self._sorted, new), new), presorted=True)

    def remove(self, hashes: np.ndarray) -> KeyIndex:
        """A new index without one occurrence of each hash (a multiset: colliding keys share a hash)."""
        if len(hashes) == 0:
            return self
        keep = np.ones(len(self._sorted), bool)
        values, counts = np.unique(hashes, return_counts=True)
        start = np.searchsorted(self._sorted, values)
        for s, c in zip(start.tolist(), counts.tolist(), strict=True):
            keep[s : s + c] = False
        return KeyIndex(self._sorted[keep], presorted=True)


def duplicated(sorted_hashes: np.ndarray) -> np.ndarray:
    """Hashes that occur more than once in sorted ``hashes`` (candidates for duplicate keys within one batch)."""
    s = sorted_hashes
    return np.unique(s[1:][s[1:] == s[:-1]])
