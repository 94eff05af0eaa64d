"""Plans are data: validated, immutable descriptions of work, built at the edge and sent to shards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from engine.expr.core import Compiled
from engine.model.delta import Delta
from engine.model.types import OnError

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
    layout: int = 0  # the table's schema layout these specs were built from (see records.SchemaChange)
    # expression columns in dependency order: stored ones are computed for every row a write adds or changes,
    # the others when read
    computed: tuple[ColumnKernel, ...] = ()
    # the catalog that keeps the shard's log of small writes (``engine.physical.shardlog``); "": every write goes to Lance
    # and a version is a Lance version
    catalog: str = ""


@dataclass(frozen=True)
class ColumnKernel:
    """An expression column as a shard computes it."""

    name: str
    compiled: Compiled
    on_error: OnError
    stored: bool


@dataclass(frozen=True)
class Spooled:
    """Rows in an Arrow IPC file on a disk the shard host shares, which it maps instead of receiving them through
    Ray: an import's rows, gathered in bounded memory, reach the shard in one write (one transaction)."""

    path: str
    num_rows: int


@dataclass(frozen=True)
class Insert:
    rows: pa.Table | Spooled  # storage order; ``_row_id`` null when the shard assigns it
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


@dataclass(frozen=True)
class AddColumn:
    """Compute a new expression column over every row (stage with the spec that has it)."""

    name: str


@dataclass(frozen=True)
class Recompute:
    """Compute stored expression columns again: ``name`` over every row, or every stored one on ``where``'s rows."""

    name: str
    where: pc.Expression | None = None
    everything: bool = True  # False: only the rows ``where`` matches


@dataclass(frozen=True)
class DropColumn:
    name: str


ShardOp = Insert | Upsert | Update | Delete | Compact | AddColumn | Recompute | DropColumn


@dataclass(frozen=True)
class OpResult:
    rows_affected: int
    rows: pa.Table | None = None  # inserted rows as stored (with assigned row ids)
    errors: int = 0  # computed cells that failed (and were stored as null)


@dataclass(frozen=True)
class StageResult:
    base_version: int  # the committed version the write was built on
    version: int  # the staged version (base_version when the stage changed nothing)
    row_count: int
    results: tuple[OpResult, ...]
    lance: int = 0  # the Lance version the staged version is built on
    delta: Delta | None = None  # what the catalog logs for this version (None: ``lance`` holds it all)
    # the fencing token of the writer slot grant the stage ran under: the catalog refuses it once a later grant
    # of the shard has committed (see ``engine.physical.host``)
    token: int = 0


@dataclass(frozen=True)
class ReadPlan:
    columns: tuple[str, ...] | None = None
    where: pc.Expression | None = None
    order_by: tuple[tuple[str, Direction], ...] = ()
    limit: int | None = None  # rows each shard returns at most (the caller's offset + limit)
    count_only: bool = False
    keys: pa.Array | None = None  # the key values ``where`` pins the key to: a cheap pre-selection
    derive: tuple[ColumnKernel, ...] = ()  # extra columns to compute first (an aggregate's argument)
    partial: tuple[str, tuple[str, ...]] | None = None  # (function, group_by): return that partial aggregate


@dataclass(frozen=True)
class ReadResult:
    table: pa.Table | None
    matched: int  # rows matching ``where`` on this shard, before the limit
    extra: dict[str, int] = field(default_factory=dict)
