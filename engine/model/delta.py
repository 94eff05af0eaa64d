"""A shard's small committed write as the catalog logs it (``engine.physical.shardlog``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Delta:
    """A small write as the shard log keeps it: the addresses of the rows it removed, and the rows it added
    (with the provisional addresses they hold until folded into Lance). See ``engine.physical.shardlog``."""

    gone: bytes  # uint64 addresses, little-endian
    rows: bytes  # an Arrow IPC stream
