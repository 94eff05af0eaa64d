"""What reads and writes return to the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

MAX_SHARDS = 256
MAX_ROWS = 2**62  # bound on offset + limit handed to Arrow


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
