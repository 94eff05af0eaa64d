"""Aggregate and window values in a query, without gathering rows: pure functions over the narrow ``Values``.

A whole-table column's values are narrow: one row per group (aggregates) or per key (windows), computed by
``engine.physical.derived``. A filter on them is checked on those values, and what passes is pushed down to
the shards as a filter on rows: the qualifying groups as ``is_in`` on the group-by columns, the qualifying
keys as a key pin (``narrow``). An order on them is sorted over narrow columns of the matching rows (the key,
the other sort columns and what the values attach by), and only the page's rows are fetched whole (``page``,
``in_page_order``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from engine.expr.aggregates import attach_groups
from engine.expr.where import Clause, compile_where
from engine.logical.planner import Route, shards_of
from engine.logical.query import Order, sort_keys
from engine.model.columns import VALUE, ComputedColumn
from engine.model.schema import TableSchema
from engine.model.types import arrow_type


@dataclass(frozen=True)
class Values:
    """A whole-table column's values for one table version: ``frame`` holds ``on`` columns and ``VALUE``."""

    on: tuple[str, ...]  # the group_by columns (aggregate) or the key (window)
    frame: pl.DataFrame


def attach(rows: pa.Table, values: Values, name: str) -> pa.Array | pa.ChunkedArray:
    """Each row's value of the column, in row order (``rows`` must hold the ``values.on`` columns)."""
    if not values.on:
        return attach_groups(
            pl.DataFrame({"_": pl.zeros(rows.num_rows, eager=True)}), values.frame, (), name
        ).to_arrow()
    frame = pl.from_arrow(rows.select(list(values.on)))
    assert isinstance(frame, pl.DataFrame)
    table = values.frame
    if frame.height * 16 < table.height:  # a page of rows against a whole table's values: narrow it first
        table = table.filter(pl.all_horizontal(pl.col(c).is_in(frame[c].unique().implode()) for c in values.on))
    return attach_groups(frame, table, values.on, name).to_arrow()


def with_values(rows: pa.Table, columns: Sequence[tuple[ComputedColumn, Values]]) -> pa.Table:
    """``rows`` with each column's values appended, as the column's type."""
    for column, values in columns:
        rows = rows.append_column(column.name, attach(rows, values, column.name).cast(arrow_type(column.type)))
    return rows


# -- filters -------------------------------------------------------------------------------------------------------
def qualifying(column: ComputedColumn, values: Values, clauses: tuple[Clause, ...], schema: TableSchema) -> pa.Table:
    """The ``on`` tuples (groups, or keys) whose value passes ``clauses``, as the schema types them."""
    table = values.frame.to_arrow()
    arrays = [table[c].cast(arrow_type(schema.column(c).type)) for c in values.on]
    typed = pa.table([*arrays, table[VALUE].cast(arrow_type(column.type))], names=[*values.on, column.name])
    expr = compile_where(clauses, schema)
    passed = typed.filter(expr) if expr is not None else typed
    return passed.select(list(values.on))


def narrow(base: Route, column: ComputedColumn, passed: pa.Table, schema: TableSchema, shards: int) -> Route:
    """``base`` limited to the rows whose ``on`` tuple is in ``passed`` (see ``qualifying``).

    A window's qualifying keys pin the key (intersected with the keys ``base`` pins), so only the shards that
    hold them are asked; groups, and composite keys, become a filter on their columns.
    """
    on = tuple(passed.column_names)
    if not on:  # an aggregate over the whole table: its one value passes, or no row does
        return base if passed.num_rows else base.nowhere()
    if column.column_type == "window" and len(on) == 1:
        keys = passed[on[0]].combine_chunks()
        if base.keys is not None:
            keys = base.keys.filter(pc.is_in(base.keys, value_set=keys))
        return base.pinned(keys, shards_of(keys, schema, shards))
    return base.also(in_tuples(on, passed))


def pinned_to(keys: pa.Table, schema: TableSchema, shards: int) -> Route:
    """The route that reads exactly the rows with these key tuples (a page found by a narrow sort)."""
    if len(schema.key) == 1:
        values = keys[schema.key[0]].combine_chunks()
        return Route(shards_of(values, schema, shards), values, None)
    return Route(tuple(range(shards)), None, in_tuples(schema.key, keys))


def in_tuples(on: Sequence[str], passed: pa.Table) -> pc.Expression:
    """True where the row's ``on`` columns are one of ``passed``'s rows (nulls equal nulls, as groups do)."""
    if len(on) == 1:
        return pc.field(on[0]).isin(passed[on[0]].combine_chunks())
    # Arrow has no is_in over several columns (nor over structs): compare one text that encodes the tuple
    return tuple_text(on).isin(_evaluate(passed, tuple_text(on)))


def tuple_text(on: Sequence[str]) -> pc.Expression:
    """One string per row that identifies its ``on`` values: each value as ``<length>:<text>`` (``~`` for null),
    so no two tuples give the same string whatever their text holds."""
    parts = []
    for c in on:
        text = pc.field(c).cast(pa.string())
        length = pc.utf8_length(text).cast(pa.string())
        parts.append(pc.coalesce(pc.binary_join_element_wise(length, text, ":"), pc.scalar("~")))
    return pc.binary_join_element_wise(*parts, "|")


def _evaluate(table: pa.Table, expr: pc.Expression) -> pa.Array:
    return pds.dataset(table).to_table(columns={"v": expr})["v"].combine_chunks()


# -- orders --------------------------------------------------------------------------------------------------------
def page(rows: pa.Table, sort_order: Order, offset: int, limit: int | None) -> pa.Table:
    """Rows ``offset`` to ``offset + limit`` of ``rows`` in ``sort_order`` (a stable sort, nulls last)."""
    start = min(offset, rows.num_rows)  # Arrow offsets are 64-bit; a huge offset is just past the end
    ordered = rows.take(pc.sort_indices(rows, sort_keys(sort_order))) if sort_order else rows
    return ordered.slice(start, limit) if limit is not None else ordered.slice(start)


def in_page_order(rows: pa.Table, page_keys: pa.Table, key: Sequence[str]) -> pa.Table:
    """``rows`` (fetched by key, in any order) in the order of ``page_keys``."""
    if len(key) == 1:
        wanted, have = page_keys[key[0]].combine_chunks(), rows[key[0]].combine_chunks()
    else:
        wanted, have = _evaluate(page_keys, tuple_text(key)), _evaluate(rows, tuple_text(key))
    return rows.take(pc.index_in(wanted, value_set=have))
