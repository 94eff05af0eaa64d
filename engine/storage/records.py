"""What the catalog stores and is told, as frozen data: a table's record, a shard's committed state, and the
changes a commit publishes (``SqliteCatalog.commit``).

Data only, apart from the catalog's SQLite machinery (``engine.storage.catalog``), so the planner, the readers and
the client name tables and shard versions without importing it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine.model.delta import Delta
from engine.model.schema import TableSchema


@dataclass(frozen=True)
class ShardState:
    version: int
    row_count: int


@dataclass(frozen=True)
class TableRecord:
    id: str
    name: str
    schema: TableSchema
    shards: int
    created_at: str
    version: int  # increases by one with every commit that touches the table
    layout: int = 0  # increases by one with every schema change (a computed column added or dropped)


@dataclass(frozen=True)
class SchemaChange:
    """Replace a table's schema (its computed columns) in a commit, provided its layout is still ``layout``."""

    table_id: str
    layout: int
    schema: TableSchema
    stale: tuple[str, ...] = ()  # computed columns to mark stale (a UDF they call was replaced)


@dataclass(frozen=True)
class ShardChange:
    """Publish ``new_version`` for a shard, provided the catalog still names ``base_version``.

    The shard log records the new version as built on Lance version ``lance`` (default: ``new_version``, a shard
    whose versions are Lance's) plus ``delta`` and the deltas logged since ``lance`` was written. ``token`` is the
    fencing token of the writer slot grant the version was staged under (``engine.physical.host``).
    """

    table_id: str
    shard: int
    base_version: int
    new_version: int
    row_count: int
    lance: int | None = None
    delta: Delta | None = None
    token: int = 0


def now_iso() -> str:
    """The records' timestamps (``created_at``, a computed column's ``last_computed``): UTC, to the millisecond."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
