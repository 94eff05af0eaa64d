"""What reads and writes return to the caller, and the info dictionaries of computed columns and UDFs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from engine.model.columns import ComputedColumn, Stats
from engine.model.udfs import Udf
from engine.storage.records import TableRecord

MAX_SHARDS = 256


@dataclass(frozen=True)
class QueryResult:
    rows: pa.Table
    total_count: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + self.rows.num_rows < self.total_count

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.rows.num_rows if self.has_more else None

    def to_pylist(self) -> list[dict[str, Any]]:
        return self.rows.to_pylist()


@dataclass(frozen=True)
class WriteResult:
    rows_affected: int
    rows: pa.Table | None = None  # inserted / upserted rows as stored


def column_info(column: ComputedColumn, stats: Stats | None) -> dict[str, Any]:
    """``ComputedColumnInfo``: the definition and what its last computation did."""
    stats = stats or Stats()
    return {
        **column.to_dict(),
        "last_computed": stats.last_computed,
        "computation_time_ms": stats.computation_time_ms,
        "errors": stats.errors,
        "stale": stats.stale,
    }


def udf_info(udf: Udf, usage: Mapping[str, int], used_by: Sequence[str]) -> dict[str, Any]:
    """``UDFInfo``: the definition, whether it runs inlined, its execute calls and the columns that call it."""
    info = udf.to_dict()
    info["inlined"] = info.pop("inline") is not None
    info["usage_count"] = usage.get(udf.name, 0)
    info["used_by"] = list(used_by)
    return info


def table_info(record: TableRecord, row_count: int) -> dict[str, Any]:
    """``TableInfo`` of a catalog record."""
    schema = record.schema
    return {
        "name": record.name,
        "column_count": len(schema.columns) + len(schema.computed),
        "row_count": row_count,
        "columns": [{**c.to_dict(), "is_computed": False} for c in schema.columns]
        + [
            {"name": c.name, "type": c.type, "nullable": True, "is_computed": True, "column_type": c.column_type}
            for c in schema.computed
        ],
        "created_at": record.created_at,
        "primary_key": list(schema.primary_key) or None,
        "shards": record.shards,
        "version": record.version,
    }
