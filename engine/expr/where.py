"""Compile ``where`` filters to Arrow expressions.

Two input forms are accepted everywhere: a list of clauses ``[{"column", "operator", "value"}]`` (AND-ed) and the
dict form ``{"col": value}`` (equality, AND-ed). Values are coerced to the column's type and bound as Arrow
scalars, never pasted into query text. The result is a ``pyarrow.compute.Expression``, evaluated the same way on
an in-memory table (``Table.filter``) and by the Lance scanner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidOperator, InvalidRequest
from engine.model.coerce import check_key_value, coerce_value
from engine.model.schema import TableSchema
from engine.model.types import arrow_type, is_textual

Operator = Literal["=", "!=", ">", ">=", "<", "<=", "like", "in", "not_in", "is_null", "is_not_null"]
OPERATORS: tuple[str, ...] = get_args(Operator)
_ORDERED = frozenset({"int", "float", "string", "timestamp", "date"})
MAX_IN_VALUES = 100_000


@dataclass(frozen=True)
class Clause:
    column: str
    operator: str
    value: Any = None


def parse_where(where: Any, field: str = "where") -> tuple[Clause, ...]:
    """Normalise either input form to clauses; shape errors name the field."""
    if where is None:
        return ()
    if isinstance(where, dict):
        if {"column", "operator"} <= where.keys() and isinstance(where.get("operator"), str):
            where = [where]
        else:
            return tuple(Clause(str(k), "=", v) for k, v in where.items())
    if not isinstance(where, list):
        raise InvalidRequest(f"{field} must be an object {{column: value}} or a list of clauses", field=field)
    clauses = []
    for i, c in enumerate(where):
        if not isinstance(c, dict) or "column" not in c or "operator" not in c:
            raise InvalidRequest(
                f"{field}[{i}] must be an object with 'column', 'operator' and 'value'", field=f"{field}[{i}]"
            )
        clauses.append(Clause(c["column"], c["operator"], c.get("value")))
    return tuple(clauses)


def compile_where(clauses: tuple[Clause, ...], schema: TableSchema, field: str = "where") -> pc.Expression | None:
    """AND of all clauses as one Arrow expression, or None for 'every row'."""
    expr: pc.Expression | None = None
    for i, clause in enumerate(clauses):
        e = _compile_clause(clause, schema, f"{field}[{i}]")
        expr = e if expr is None else expr & e
    return expr


def _compile_clause(c: Clause, schema: TableSchema, loc: str) -> pc.Expression:
    if not isinstance(c.column, str):
        raise InvalidRequest(f"{loc}.column must be a string", field=f"{loc}.column")
    column = schema.column(c.column, loc)
    if c.operator not in OPERATORS:
        raise InvalidOperator(
            f"{loc}: unknown operator {c.operator!r}; expected one of {', '.join(OPERATORS)}",
            field=f"{loc}.operator",
            operator=str(c.operator),
        )
    f = pc.field(column.name)
    op = c.operator
    if op == "is_null":
        return f.is_null()
    if op == "is_not_null":
        return f.is_valid()
    if op in ("in", "not_in"):
        if not isinstance(c.value, list):
            raise InvalidRequest(
                f"{loc}: operator '{op}' needs a list value, got {type(c.value).__name__}", field=f"{loc}.value"
            )
        if len(c.value) > MAX_IN_VALUES:
            raise InvalidRequest(f"{loc}: at most {MAX_IN_VALUES} values in '{op}'", field=f"{loc}.value")
        if op == "in" and schema.key == (column.name,):  # the values the key is pinned to get hashed
            for j, v in enumerate(c.value):
                check_key_value(column, v, f"{loc}.value[{j}]", j)
        values = pa.array(
            [coerce_value(column, v, (loc, "value", j)).as_py() for j, v in enumerate(c.value)],
            type=_scalar_type(column, schema),
        )
        e = f.isin(values)
        return ~e if op == "not_in" else e
    if c.value is None:
        raise InvalidRequest(
            f"{loc}: operator '{op}' needs a value; use is_null / is_not_null for nulls", field=f"{loc}.value"
        )
    if op == "like":
        if not is_textual(column.type):
            raise InvalidOperator(
                f"{loc}: 'like' applies to string columns, '{column.name}' is {column.type}", field=f"{loc}.operator"
            )
        if not isinstance(c.value, str):
            raise InvalidRequest(f"{loc}: 'like' needs a string pattern", field=f"{loc}.value")
        return pc.match_like(f, c.value)
    if op not in ("=", "!=") and column.type not in _ORDERED:
        raise InvalidOperator(
            f"{loc}: '{op}' does not apply to {column.type} column '{column.name}'", field=f"{loc}.operator"
        )
    if column.type == "json":
        raise InvalidOperator(
            f"{loc}: json column '{column.name}' supports only is_null / is_not_null", field=f"{loc}.operator"
        )
    if op == "=" and schema.key == (column.name,):  # the value the key is pinned to gets hashed
        check_key_value(column, c.value, f"{loc}.value")
    value = coerce_value(column, c.value, (loc, "value"))
    return {
        "=": f == value,
        "!=": f != value,
        ">": f > value,
        ">=": f >= value,
        "<": f < value,
        "<=": f <= value,
    }[op]


def _scalar_type(column: Any, schema: TableSchema) -> pa.DataType:
    # the column's type, not the storage schema's field: computed columns that are not stored are not in it
    return arrow_type(column.type)


def key_values(clauses: tuple[Clause, ...], schema: TableSchema) -> list[Any] | None:
    """If the filter pins a single-column key to known values (``key = v`` or ``key in [...]``), those values.

    Lets the engine send a point operation to one shard instead of all of them.
    """
    return pin(clauses, schema)[0]


def pin(clauses: tuple[Clause, ...], schema: TableSchema) -> tuple[list[Any] | None, tuple[Clause, ...]]:
    """``key_values`` and the other clauses: what a shard must still check on the rows with those keys."""
    if len(schema.key) != 1:
        return None, clauses
    key = schema.key[0]
    for i, c in enumerate(clauses):
        if c.column == key and c.operator == "=" and c.value is not None:
            return [c.value], clauses[:i] + clauses[i + 1 :]
        if c.column == key and c.operator == "in" and isinstance(c.value, list):
            return list(c.value), clauses[:i] + clauses[i + 1 :]
    return None, clauses
