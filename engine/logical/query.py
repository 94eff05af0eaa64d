"""Read plans: a query's arguments checked against the schema and turned into a ``QueryPlan`` (what the shards
filter, order and send back) before anything runs.

Aggregate and window columns are not in the shards' rows (``engine.physical.derived``), so the plan keeps their
clauses apart (``Filter.derived``): the reader narrows their values first and pushes the outcome down as a
filter on the rows (``engine.logical.derived``). An order on them is sorted over narrow columns (``QueryPlan.sort``).

>>> from engine.model.schema import build_schema
>>> schema = build_schema("t", {"id": "int", "v": "string"}, "id")
>>> plan = plan_query(schema, 2, select=["v"], order_by=["v:desc"], limit=10, offset=20)
>>> plan.order, plan.top, plan.fetch
((('v', 'descending'),), 30, ('v',))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidRequest, OffsetTooDeep
from engine.expr.where import Clause, compile_where, parse_where
from engine.logical.plan import Direction
from engine.logical.planner import Route, route
from engine.model.columns import ComputedColumn, group_by
from engine.model.schema import TableSchema
from engine.model.types import arrow_type

MAX_ROWS = 2**62  # bound on offset + limit handed to Arrow (its offsets are 64-bit)
Order = tuple[tuple[str, Direction], ...]


@dataclass(frozen=True)
class Filter:
    """A ``where`` split by what can check it: ``route`` the row-level clauses, ``derived`` the clauses on each
    aggregate or window column (checked on that column's values, then pushed down as a filter on rows)."""

    route: Route
    derived: tuple[tuple[str, tuple[Clause, ...]], ...] = ()


@dataclass(frozen=True)
class QueryPlan:
    select: tuple[str, ...] | None  # None: every column
    order: Order
    limit: int | None
    offset: int
    filter: Filter
    attach: tuple[str, ...]  # aggregate / window columns the result shows
    derived_order: tuple[str, ...]  # aggregate / window columns the order uses
    fetch: tuple[str, ...] | None  # what shards send for result rows (None: all); enough to order and attach
    sort: tuple[str, ...]  # with ``derived_order``: the narrow columns to sort on (key, row order, attach-by)
    window: int  # ``max_query_window``; ``deep``: a page past the first that ends beyond it

    @property
    def top(self) -> int | None:
        """Rows each shard sends at most: every row before the page end may be in the page."""
        return None if self.limit is None else min(self.offset + self.limit, MAX_ROWS)

    @property
    def deep(self) -> bool:
        return self.limit is not None and self.offset > 0 and self.offset + self.limit > self.window

    @property
    def derived(self) -> tuple[str, ...]:
        """Every aggregate / window column the query needs the values of."""
        return tuple(dict.fromkeys([*(n for n, _ in self.filter.derived), *self.derived_order, *self.attach]))


def attach_on(column: ComputedColumn, schema: TableSchema) -> tuple[str, ...]:
    """The columns an aggregate's (group_by) or a window's (the key) values are matched to rows by."""
    return group_by(column.parameters) if column.column_type == "aggregate" else schema.key


def plan_filter(where: Any, schema: TableSchema, shards: int) -> Filter:
    """``where`` checked (every clause compiles) and split into row-level clauses and derived ones."""
    clauses = parse_where(where)
    whole = _whole(schema)
    rows = tuple(c for c in clauses if c.column not in whole)
    derived: dict[str, list[Clause]] = {}
    for c in clauses:
        if c.column in whole:
            derived.setdefault(c.column, []).append(c)
    if derived:  # checks the derived clauses too, and names them by their position in the request
        route(clauses, schema, shards)
    return Filter(route(rows, schema, shards), tuple((n, tuple(cs)) for n, cs in derived.items()))


def row_filter(where: Any, schema: TableSchema, purpose: str) -> pc.Expression | None:
    """``where`` as one filter on row values, for work that cannot use aggregate or window values."""
    clauses = parse_where(where)
    whole = _whole(schema)
    for c in clauses:
        if c.column in whole:
            raise InvalidRequest(
                f"where: {purpose} filters on row values; '{c.column}' is an {whole[c.column].column_type} column",
                field="where",
            )
    return compile_where(clauses, schema)


def plan_query(
    schema: TableSchema,
    shards: int,
    select: Sequence[str] | None = None,
    where: Any = None,
    order_by: Sequence[Any] | None = None,
    limit: int | None = None,
    offset: int = 0,
    window: int = MAX_ROWS,
) -> QueryPlan:
    """A query checked and planned; paging without an order orders by the key, so pages are stable."""
    chosen = columns(schema, select)
    sort_order = order(schema, order_by)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidRequest("limit must be a non-negative integer", field="limit")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidRequest("offset must be a non-negative integer", field="offset")
    if not sort_order and (limit is not None or offset):
        sort_order = tuple((k, "ascending") for k in schema.key)
    found = plan_filter(where, schema, shards)
    whole = _whole(schema)
    attach = tuple(n for n in whole if chosen is None or n in chosen)
    derived_order = tuple(dict.fromkeys(c for c, _ in sort_order if c in whole))
    row_order = [c for c, _ in sort_order if c not in whole]
    by = [g for n in (*attach, *derived_order) for g in attach_on(whole[n], schema)]
    fetch = None
    if chosen is not None:
        fetch = tuple(dict.fromkeys([*(c for c in chosen if c not in whole), *row_order, *by]))
    sort = tuple(
        dict.fromkeys([*schema.key, *row_order, *(g for n in derived_order for g in attach_on(whole[n], schema))])
    )
    return QueryPlan(chosen, sort_order, limit, offset, found, attach, derived_order, fetch, sort, window)


def deep_page(plan: QueryPlan, matched: int, key: str) -> None:
    """Refuse a deep page that has rows (one past the end is just empty): ``OffsetTooDeep``."""
    if plan.deep and plan.offset < matched:
        assert plan.limit is not None
        raise OffsetTooDeep(plan.offset, plan.limit, plan.window, key)


def columns(schema: TableSchema, select: Sequence[str] | None) -> tuple[str, ...] | None:
    if select is None:
        return None
    if isinstance(select, str) or not isinstance(select, (list, tuple)):
        raise InvalidRequest("select must be a list of column names", field="select")
    for c in select:
        schema.column(c, "select")
    return tuple(select)


def order(schema: TableSchema, order_by: Any) -> Order:
    """``order_by`` items (``"col[:asc|desc]"``, ``{column, direction}`` or ``(column, direction)``) checked."""
    if not order_by:
        return ()
    out = []
    for i, item in enumerate(order_by):
        loc = f"order_by[{i}]"
        name: Any
        if isinstance(item, str):
            name, _, d = item.partition(":")
            way = direction(d or "asc", loc)
        elif isinstance(item, dict):
            name, way = item.get("column"), direction(item.get("direction", "asc"), loc)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            name, way = item[0], direction(item[1], loc)
        else:
            raise InvalidRequest(f"{loc} must be 'column[:asc|desc]' or {{column, direction}}", field=loc)
        column = schema.column(str(name), loc)
        if column.type == "json":
            raise InvalidRequest(f"{loc}: cannot order by json column '{name}'", field=loc)
        out.append((column.name, way))
    return tuple(out)


def direction(value: Any, loc: str) -> Direction:
    v = str(value).lower()
    if v in ("asc", "ascending"):
        return "ascending"
    if v in ("desc", "descending"):
        return "descending"
    raise InvalidRequest(f"{loc}: direction must be 'asc' or 'desc', not {value!r}", field=loc)


def sort_keys(sort_order: Order) -> list[tuple[str, str, str]]:
    """Arrow sort keys with nulls last, whatever the direction (as the shards sort)."""
    return [(c, d, "at_end") for c, d in sort_order]


def in_order(schema: TableSchema, names: Sequence[str]) -> list[str]:
    """Every column of a result, in the schema's order (``_row_id`` last)."""
    position = {c: i for i, c in enumerate(schema.readable)}
    return sorted(names, key=lambda c: position.get(c, len(position)))


def empty(schema: TableSchema) -> pa.Table:
    """No rows, with every column the shards send: stored ones and the expression columns they compute."""
    arrow = schema.arrow_schema()
    computed = [pa.field(c.name, arrow_type(c.type)) for c in schema.computed if not c.stored and not c.whole_table]
    return pa.schema([*arrow, *computed]).empty_table()


def _whole(schema: TableSchema) -> dict[str, ComputedColumn]:
    return {c.name: c for c in schema.computed if c.whole_table}
