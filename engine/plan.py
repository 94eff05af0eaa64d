"""Plans are data: validated, immutable descriptions of work, built at the edge and sent to shards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

Direction = Literal["ascending", "descending"]


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard host needs to (re)open a shard from storage."""

    table_id: str
    table: str
    shard: int
    shards: int
    uri: str
    key: tuple[str, ...]
    schema: pa.Schema
    assigns_row_ids: bool  # tables without a primary key: the shard assigns ``_row_id``


@dataclass(frozen=True)
class Insert:
    rows: pa.Table  # storage order; ``_row_id`` null when the shard assigns it
    return_rows: bool = False  # send the stored rows back (with assigned row ids)


@dataclass(frozen=True)
class Upsert:
    rows: pa.Table
    return_rows: bool = False


@dataclass(frozen=True)
class Update:
    where: pc.Expression | None
    set: tuple[tuple[str, pc.Expression], ...]  # column -> value expression over the row's current values
    keys: pa.Array | None = None  # the key values ``where`` pins the (single-column) key to, if it does


@dataclass(frozen=True)
class Delete:
    where: pc.Expression | None
    keys: pa.Array | None = None


@dataclass(frozen=True)
class Compact:
    """Rewrite small fragments into large ones: a new version with the same rows."""


ShardOp = Insert | Upsert | Update | Delete | Compact


@dataclass(frozen=True)
class OpResult:
    rows_affected: int
    rows: pa.Table | None = None  # inserted rows as stored (with assigned row ids)


@dataclass(frozen=True)
class StageResult:
    base_version: int  # the committed version the write was built on
    version: int  # the staged Lance version
    row_count: int
    results: tuple[OpResult, ...]


@dataclass(frozen=True)
class ReadPlan:
    columns: tuple[str, ...] | None = None
    where: pc.Expression | None = None
    order_by: tuple[tuple[str, Direction], ...] = ()
    limit: int | None = None  # rows each shard returns at most (the caller's offset + limit)
    count_only: bool = False
    keys: pa.Array | None = None  # the key values ``where`` pins the key to: a cheap pre-selection


@dataclass(frozen=True)
class ReadResult:
    table: pa.Table | None
    matched: int  # rows matching ``where`` on this shard, before the limit
    extra: dict[str, int] = field(default_factory=dict)
