"""The planner: what a table's shards need to know (their specs), and how rows and filters map onto shards.

Pure functions of a schema and the request's arguments: no Ray, no catalog. ``Table`` and the batch planner ask
them for plans and hand those to the coordinator.

>>> from engine.expr.where import parse_where
>>> from engine.model.schema import build_schema
>>> schema = build_schema("t", {"id": "int", "v": "string"}, "id")
>>> plan = route(parse_where({"id": 7}), schema, 4)
>>> len(plan.targets), plan.keys.to_pylist(), plan.where is None
(1, [7], True)
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import TooLarge
from engine.expr import udfs
from engine.expr.compiler import compile_expression
from engine.expr.where import Clause, compile_where, pin
from engine.logical.hashing import shard_ids
from engine.logical.plan import ColumnKernel, Insert, ShardOp, ShardSpec, Upsert
from engine.model.coerce import coerce_value, conform_table, rows_to_table
from engine.model.schema import TableSchema
from engine.storage import lance as storage
from engine.storage.catalog import catalog_path
from engine.storage.records import TableRecord


def kernels(schema: TableSchema) -> tuple[ColumnKernel, ...]:
    """The expression columns as shards compute them, in dependency (creation) order."""
    return tuple(
        ColumnKernel(
            c.name,
            compile_expression(c.expression, schema, field="expression", functions=udfs.functions(schema.udfs)),
            c.on_error,
            c.stored,
        )
        for c in schema.computed
        if c.column_type in ("expression", "udf")
    )


def specs_of(record: TableRecord, root: str) -> tuple[ShardSpec, ...]:
    return shard_specs(record.id, record.name, record.schema, record.shards, root, record.layout)


@functools.lru_cache(maxsize=4096)
def shard_specs(
    table_id: str, name: str, schema: TableSchema, shards: int, root: str, layout: int = 0
) -> tuple[ShardSpec, ...]:
    """Cached on what specs depend on (not the record's version, which changes with every commit)."""
    arrow = schema.arrow_schema()
    compiled = kernels(schema)
    return tuple(
        ShardSpec(
            table_id,
            name,
            i,
            shards,
            storage.shard_uri(root, table_id, i),
            schema.key,
            arrow,
            not schema.primary_key,
            layout,
            compiled,
            catalog_path(root),
        )
        for i in range(shards)
    )


# -- filters onto shards --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """Where a filter goes: the shards it can match (ascending), the key values it pins the single-column key to
    (a cheap pre-selection on each shard; None when it pins nothing) and what the shards must still check on
    those rows (the whole filter when it pins nothing; None: nothing)."""

    targets: tuple[int, ...]
    keys: pa.Array | None
    where: pc.Expression | None

    def pinned(self, keys: pa.Array, targets: Sequence[int]) -> Route:
        """This route with the key pinned to ``keys`` (which the caller has intersected with ``self.keys``), on
        those of its shards that are among ``targets``."""
        among = set(targets)
        return Route(tuple(t for t in self.targets if t in among), keys, self.where)

    def also(self, where: pc.Expression) -> Route:
        """This route with ``where`` checked as well."""
        return Route(self.targets, self.keys, where if self.where is None else self.where & where)

    def nowhere(self) -> Route:
        """A route that matches nothing (a filter no row can pass)."""
        return Route((), self.keys, self.where)


def route(clauses: tuple[Clause, ...], schema: TableSchema, shards: int, field: str = "where") -> Route:
    """The route of a filter (see ``Route``). Compiles, and so checks, every clause."""
    where = compile_where(clauses, schema, field)
    values, rest = pin(clauses, schema)
    if values is None:
        return Route(tuple(range(shards)), None, where)
    keys = key_array(values, schema)
    return Route(shards_of(keys, schema, shards), keys, compile_where(rest, schema, field))


def key_array(values: Sequence[object], schema: TableSchema, loc: str = "where") -> pa.Array:
    """Values of the single-column key, checked and typed as the key column."""
    column = schema.column(schema.key[0])
    return pa.array(
        [coerce_value(column, v, (loc, column.name)).as_py() for v in values],
        schema.arrow_schema().field(column.name).type,
    )


def shards_of(keys: pa.Array, schema: TableSchema, shards: int) -> tuple[int, ...]:
    """The shards that hold rows with these values of the single-column key."""
    if len(keys) == 0:
        return ()
    if shards == 1:
        return (0,)
    if not schema.primary_key:  # engine row ids are placed by value: id mod shards (see shard_ops._insert)
        ids = keys.drop_null().to_numpy(zero_copy_only=False) % shards
    else:
        ids = shard_ids([keys], shards)
    return tuple(sorted(set(ids.tolist())))


# -- rows onto shards -----------------------------------------------------------------------------------------
def rows_to_write(rows: object, schema: TableSchema, max_rows: int) -> pa.Table:
    """Rows to insert or upsert (one dict, a list of dicts, or an Arrow table), checked against the schema.

    Lists of dicts are capped at ``max_rows`` (``TESSERA_MAX_ROWS_PER_REQUEST``); an Arrow table from a Python
    caller is not (it is already in memory, and bulk loads come that way)."""
    if isinstance(rows, pa.Table):
        return conform_table(rows, schema)
    table = rows_to_table([rows] if isinstance(rows, dict) else rows, schema)
    if table.num_rows > max_rows:
        raise TooLarge(f"{table.num_rows} rows in one request; the limit is {max_rows}", limit=max_rows)
    return table


def partition(
    table: pa.Table,
    schema: TableSchema,
    shards: int,
    kind: type[Insert] | type[Upsert],
    return_rows: bool,
    start: int | None = None,
) -> list[tuple[int, ShardOp]]:
    """One write per shard that gets rows: by the key's hash, or (tables without a key) spread evenly from shard
    ``start`` (random by default, so single rows do not pile up on shard 0)."""
    if shards == 1:
        return [(0, kind(table, return_rows))]
    if schema.primary_key:
        ids = shard_ids([table[k] for k in schema.primary_key], shards)
        if table.num_rows == 1:  # a batch's single-row writes: no reordering needed
            return [(int(ids[0]), kind(table, return_rows))]
        order = np.argsort(ids, kind="stable")
        counts = np.bincount(ids, minlength=shards)
        table = table.take(pa.array(order))
    else:
        first = random.randrange(shards) if start is None else start
        counts = np.roll(
            np.full(shards, table.num_rows // shards) + (np.arange(shards) < table.num_rows % shards), first
        )
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [
        (i, kind(table.slice(bounds[i], counts[i]), return_rows))
        for i in range(shards)
        if counts[i] or (table.num_rows == 0 and i == 0)
    ]
