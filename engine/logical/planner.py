"""The planner: what a table's shards need to know (their specs), and how rows and filters map onto shards."""

from __future__ import annotations

import functools

from engine.expr import udfs
from engine.expr.compiler import compile_expression
from engine.logical.plan import ColumnKernel, ShardSpec
from engine.model.schema import TableSchema
from engine.storage import lance as storage
from engine.storage.catalog import TableRecord, catalog_path


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
