"""Rows addressed by their key: a row id from a path or a call, as a filter, and as the key column's value.

>>> from engine.model.schema import build_schema
>>> schema = build_schema("t", {"id": "int"}, "id")
>>> key_from_text(schema, "42"), id_where(schema, 42)
(42, [{'column': 'id', 'operator': '=', 'value': 42}])
"""

from __future__ import annotations

from typing import Any

from engine.errors import InvalidRequest
from engine.model.coerce import check_key_value, coerce_value
from engine.model.schema import TableSchema


def id_where(schema: TableSchema, row_id: Any) -> list[dict[str, Any]]:
    """The filter on the (single-column) key that finds the row ``row_id``."""
    key = _single_key(schema)
    check_key_value(schema.column(key), row_id, "row_id")  # before the filter's check, to name the row id
    return [{"column": key, "operator": "=", "value": row_id}]


def same_key(schema: TableSchema, name: str, value: Any, row_id: Any) -> bool:
    """``value`` of key column ``name`` (in a row's data) is the row's own id."""
    column = schema.column(name)
    return coerce_value(column, value, ("data", name)) == coerce_value(column, row_id, ("row_id",))


def key_from_text(schema: TableSchema, text: str) -> Any:
    """A row id from a URL path segment, converted to the key column's type."""
    column = schema.column(_single_key(schema))
    if column.type == "int":
        try:
            return int(text)
        except ValueError:
            raise InvalidRequest(
                f"row_id {text!r} is not an integer (the key '{column.name}' is int)", field="row_id"
            ) from None
    return coerce_value(column, text, ("row_id",)).as_py()


def _single_key(schema: TableSchema) -> str:
    if len(schema.key) != 1:
        raise InvalidRequest(f"Table '{schema.table}' has a composite primary key; use a where filter", field="row_id")
    return schema.key[0]
