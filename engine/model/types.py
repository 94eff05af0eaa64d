"""Column types and their Arrow storage types.

``json`` cells are stored as JSON text; media cells (``image`` ...) hold a URL or stored reference as text.
"""

from __future__ import annotations

from typing import Literal, get_args

import pyarrow as pa

OnError = Literal["null", "abort"]  # what a computed cell that fails becomes: null, or the whole computation fails

ColumnType = Literal[
    "int", "float", "string", "bool", "json", "timestamp", "date", "image", "video", "audio", "document"
]
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)
MEDIA_TYPES = frozenset({"image", "video", "audio", "document"})
KEY_TYPES = frozenset({"int", "string", "date", "timestamp"})

TIMESTAMP = pa.timestamp("us", tz="UTC")

_ARROW: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "json": pa.string(),
    "timestamp": TIMESTAMP,
    "date": pa.date32(),
    **{m: pa.string() for m in MEDIA_TYPES},
}


def arrow_type(column_type: str) -> pa.DataType:
    return _ARROW[column_type]


def is_textual(column_type: str) -> bool:
    """Types whose cells are strings that users filter with ``like``."""
    return column_type == "string" or column_type in MEDIA_TYPES
