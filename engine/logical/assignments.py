"""``set`` of an update: each column's new value as an Arrow expression over the row's current values.

>>> from engine.model.schema import build_schema
>>> schema = build_schema("accounts", {"id": "int", "balance": "float"}, "id")
>>> [name for name, _ in assignments(schema, {"balance": {"expr": "balance - 10"}})]
['balance']
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidRequest
from engine.expr import udfs
from engine.expr.compiler import compile_expression
from engine.model.coerce import coerce_value
from engine.model.schema import TableSchema

Assignments = tuple[tuple[str, pc.Expression], ...]


def assignments(schema: TableSchema, values: Any) -> Assignments:
    """``{column: value | {"expr": text} | None}`` checked: no computed or key column, values of the column's
    type, expressions that give it."""
    if not isinstance(values, dict) or not values:
        raise InvalidRequest("set must be a non-empty object of column: value", field="set")
    return tuple((name, _assignment(schema, name, value)) for name, value in values.items())


def _assignment(schema: TableSchema, name: str, value: Any) -> pc.Expression:
    column = schema.column(name, "set")
    if schema.computed_column(name) is not None:
        raise InvalidRequest(f"set.{name}: '{name}' is a computed column; it cannot be set", field=f"set.{name}")
    if name in schema.key:
        raise InvalidRequest(
            f"set.{name}: the primary key cannot be updated; delete and insert instead", field=f"set.{name}"
        )
    if value is None:
        if not column.nullable:
            raise InvalidRequest(f"set.{name}: column '{name}' may not be null", field=f"set.{name}")
        return pc.scalar(pa.scalar(None, schema.arrow_schema().field(name).type))
    if isinstance(value, dict) and set(value) == {"expr"} and column.type != "json":
        return set_expression(schema, name, value["expr"])
    return pc.scalar(coerce_value(column, value, ("set", name)))


def set_expression(schema: TableSchema, name: str, text: Any) -> pc.Expression:
    """``{"expr": "balance - 10"}``: compiled against the row's current values, checked against the column."""
    if not isinstance(text, str):
        raise InvalidRequest(f"set.{name}.expr must be a string", field=f"set.{name}.expr")
    compiled = compile_expression(text, schema, field=f"set.{name}", functions=udfs.functions(schema.udfs))
    target = schema.column(name).type
    fits = compiled.type in (target, "null") or (target == "float" and compiled.type == "int")
    if not fits:
        raise InvalidRequest(
            f"set.{name}: the expression gives {compiled.type}, but '{name}' is {target}", field=f"set.{name}"
        )
    return compiled.expr
