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


# A field of an Arrow schema that holds a ``json`` column's JSON text says so in its metadata, so that formats
# with JSON values of their own (JSON, JSONL) write the values, not strings, and an import reads them back as JSON.
JSON_METADATA = {b"tessera.type": b"json"}


def json_fields(schema: pa.Schema) -> list[str]:
    """The fields of ``schema`` marked as JSON text."""
    return [f.name for f in schema if f.metadata and f.metadata.get(b"tessera.type") == b"json"]


def mark_json(schema: pa.Schema, names: set[str] | frozenset[str] | tuple[str, ...]) -> pa.Schema:
    """``schema`` with the fields in ``names`` marked as JSON text."""
    return pa.schema([f.with_metadata(JSON_METADATA) if f.name in names else f for f in schema], schema.metadata)
