"""Schema changes checked before they run: dropping a computed column or a UDF, replacing a UDF's code.

>>> from engine.model.schema import build_schema
>>> callers(build_schema("t", {"id": "int"}, "id"), "discount")
[]
"""

from __future__ import annotations

from engine.errors import ColumnNotFound, DependencyConflict, UdfInUse, UdfNotFound
from engine.expr import udfs
from engine.logical.columns import dependents
from engine.model.columns import ComputedColumn
from engine.model.schema import TableSchema
from engine.model.udfs import Udf


def computed(schema: TableSchema, name: str) -> ComputedColumn:
    """The computed column ``name``, or ``ColumnNotFound``."""
    column = schema.computed_column(name)
    if column is None:
        raise ColumnNotFound(schema.table, name, "computed column")
    return column


def droppable_column(schema: TableSchema, name: str) -> ComputedColumn:
    """The computed column ``name`` if no other computed column reads it (else ``DependencyConflict``)."""
    column = computed(schema, name)
    users = dependents(schema, name)
    if users:
        raise DependencyConflict(
            f"computed column '{name}' is used by {', '.join(users)}; drop those first", column=name, used_by=users
        )
    return column


def udf(schema: TableSchema, name: object) -> Udf:
    """The UDF ``name``, or ``UdfNotFound``."""
    found = schema.udf(name) if isinstance(name, str) else None
    if found is None:
        raise UdfNotFound(schema.table, str(name))
    return found


def callers(schema: TableSchema, name: str) -> list[str]:
    """The computed columns that call UDF ``name``."""
    return [c.name for c in schema.computed if name in udfs.calls(c.expression, {name})]


def droppable_udf(schema: TableSchema, name: str) -> None:
    """``UdfNotFound``, or ``UdfInUse`` while computed columns call it."""
    udf(schema, name)
    users = callers(schema, name)
    if users:
        raise UdfInUse(
            f"UDF '{name}' is called by computed column{'s' if len(users) > 1 else ''} {', '.join(users)}; "
            "drop those first",
            udf=name,
            used_by=users,
        )


def stale_after(schema: TableSchema, new: Udf, previous: Udf | None) -> tuple[str, ...]:
    """The stored columns a new version of a UDF leaves stale; its parameters and return type may change only
    while no computed column calls it (``UdfInUse``)."""
    users = callers(schema, new.name)
    signature = (new.parameters, new.return_type)
    if users and previous is not None and signature != (previous.parameters, previous.return_type):
        raise UdfInUse(
            f"UDF '{new.name}' is called by {', '.join(users)}: its parameters and return type cannot change",
            udf=new.name,
            used_by=users,
        )
    return tuple(c.name for c in schema.computed if c.name in users and c.stored)
