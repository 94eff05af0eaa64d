"""Table schemas: named, typed columns and an optional primary key."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from engine.errors import ColumnNotFound, InvalidName, InvalidRequest, InvalidType
from engine.model.columns import ComputedColumn
from engine.model.names import check_name
from engine.model.types import COLUMN_TYPES, KEY_TYPES, arrow_type
from engine.model.udfs import Udf

ROW_ID = "_row_id"  # the engine's row id, present only in tables without a primary key


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "nullable": self.nullable}


@dataclass(frozen=True)
class TableSchema:
    """Columns in declaration order; ``primary_key`` is empty when the engine assigns ``_row_id``.

    ``columns`` are the columns clients write; ``computed`` the computed columns (``engine.model.columns``), in
    creation order, which is also their dependency order. Both can be read, filtered and sorted on. ``udfs``
    are the table's user-defined functions (``engine.model.udfs``), in registration order.
    """

    table: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    computed: tuple[ComputedColumn, ...] = ()
    udfs: tuple[Udf, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key(self) -> tuple[str, ...]:
        """The columns that identify a row: the primary key, or the engine's row id."""
        return self.primary_key or (ROW_ID,)

    def column(self, name: str, where: str = "") -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        for cc in self.computed:
            if cc.name == name:
                return Column(name, cc.type, nullable=True)
        if name == ROW_ID and not self.primary_key:
            return Column(ROW_ID, "int", nullable=False)
        raise ColumnNotFound(self.table, name, where)

    def has(self, name: str) -> bool:
        return name in self.names or (name == ROW_ID and not self.primary_key) or self.computed_column(name) is not None

    @property
    def json_columns(self) -> tuple[str, ...]:
        """Columns whose cells are JSON text (written or computed)."""
        return tuple(c.name for c in self.columns if c.type == "json") + tuple(
            c.name for c in self.computed if c.type == "json"
        )

    def computed_column(self, name: str) -> ComputedColumn | None:
        return next((c for c in self.computed if c.name == name), None)

    @property
    def readable(self) -> tuple[str, ...]:
        """Every column a query returns by default: written columns, then computed ones."""
        return (*self.names, *(c.name for c in self.computed))

    def with_computed(self, column: ComputedColumn) -> TableSchema:
        return replace(self, computed=(*self.computed, column))

    def without_computed(self, name: str) -> TableSchema:
        return replace(self, computed=tuple(c for c in self.computed if c.name != name))

    def udf(self, name: str) -> Udf | None:
        return next((u for u in self.udfs if u.name == name), None)

    def with_udf(self, udf: Udf) -> TableSchema:
        """``udf`` added, or in place of the UDF of that name."""
        if self.udf(udf.name) is None:
            return replace(self, udfs=(*self.udfs, udf))
        return replace(self, udfs=tuple(udf if u.name == udf.name else u for u in self.udfs))

    def without_udf(self, name: str) -> TableSchema:
        return replace(self, udfs=tuple(u for u in self.udfs if u.name != name))

    def arrow_schema(self) -> pa.Schema:
        """The storage schema: declared columns, then ``_row_id`` for tables without a primary key."""
        fields = [pa.field(c.name, arrow_type(c.type)) for c in self.columns]
        if not self.primary_key:
            fields.append(pa.field(ROW_ID, pa.int64()))
        fields.extend(pa.field(c.name, arrow_type(c.type)) for c in self.computed if c.stored)
        return pa.schema(fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [c.to_dict() for c in self.columns],
            "primary_key": list(self.primary_key),
            "computed": [c.to_dict() for c in self.computed],
            "udfs": [u.to_dict() for u in self.udfs],
        }

    @classmethod
    def from_dict(cls, table: str, d: dict[str, Any]) -> TableSchema:
        cols = tuple(Column(c["name"], c["type"], c["nullable"]) for c in d["columns"])
        computed = tuple(ComputedColumn.from_dict(c) for c in d.get("computed", []))
        udfs = tuple(Udf.from_dict(u) for u in d.get("udfs", []))
        return cls(table, cols, tuple(d["primary_key"]), computed, udfs)


def build_schema(table: str, columns: dict[str, Any], primary_key: str | list[str] | None) -> TableSchema:
    """Validate a user's schema: ``{col: "int"}`` or ``{col: {"type": "int", "nullable": false}}``.

    >>> build_schema("t", {"id": "int", "name": "string"}, "id").primary_key
    ('id',)
    """
    check_name(table, "table")
    if not isinstance(columns, dict) or not columns:
        raise InvalidRequest("schema.columns must be a non-empty object of column: type", field="schema.columns")
    keys = [primary_key] if isinstance(primary_key, str) else list(primary_key or [])
    if len(set(keys)) != len(keys):
        raise InvalidRequest("primary_key lists a column twice", field="primary_key")
    cols: list[Column] = []
    for name, spec in columns.items():
        check_name(name, "column")
        nullable = True
        if isinstance(spec, dict):
            nullable = spec.get("nullable", True)
            if not isinstance(nullable, bool):
                raise InvalidRequest(f"Column '{name}': nullable must be true or false", field=f"columns.{name}")
            spec = spec.get("type")
        if spec not in COLUMN_TYPES:
            raise InvalidType(
                f"Column '{name}' has unknown type {spec!r}; expected one of {', '.join(COLUMN_TYPES)}",
                field=f"schema.columns.{name}",
                column=name,
            )
        cols.append(Column(name, spec, nullable and name not in keys))
    names = {c.name.lower() for c in cols}
    if len(names) != len(cols):
        raise InvalidName("Column names must be unique ignoring case", field="schema.columns")
    schema = TableSchema(table, tuple(cols), tuple(keys))
    for k in keys:
        if not isinstance(k, str) or not schema.has(k):
            raise ColumnNotFound(table, str(k), "primary_key")
        if schema.column(k).type not in KEY_TYPES:
            raise InvalidType(
                f"Primary key column '{k}' has type {schema.column(k).type}; keys must be one of "
                f"{', '.join(sorted(KEY_TYPES))}",
                field="primary_key",
                column=k,
            )
    return schema
