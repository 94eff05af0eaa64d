"""Running read plans (``engine.logical.query``) over one table version's shards, in bounded memory.

- Rows: every shard filters, orders and sends at most ``offset + limit`` rows (``QueryPlan.top``); they are
  merged here. A page past the first that ends beyond ``max_query_window`` is refused (``OffsetTooDeep``)
  unless it is past the end, so no shard ever sends more than that for a page.
- A filter on aggregate or window values is checked on their narrow values (one row per group or key) and
  pushed down to the shards as a filter on rows (``engine.logical.derived.narrow``): rows are never gathered
  to be filtered here.
- An order on them sorts the matching rows' narrow columns (key, other sort columns, group-by columns) here,
  at most ``max_query_rows`` of them (else ``QueryTooLarge``), then fetches the page's rows by key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import QueryTooLarge
from engine.logical.derived import Values, in_page_order, narrow, page, pinned_to, qualifying, with_values
from engine.logical.plan import ReadPlan, ReadResult, ShardSpec
from engine.logical.planner import Route
from engine.logical.query import Filter, QueryPlan, deep_page, empty, in_order, sort_keys
from engine.model.columns import ComputedColumn
from engine.physical.coordinator import Coordinator
from engine.physical.derived import DerivedCache
from engine.storage.records import ShardState, TableRecord

Derived = dict[str, tuple[ComputedColumn, Values]]


@dataclass(frozen=True)
class Version:
    """One table version as a read sees it: the catalog's record, the shard versions it names, their specs."""

    record: TableRecord
    states: Sequence[ShardState]
    specs: Sequence[ShardSpec]


class Reader:
    """Reads of one process: the coordinator reaches the shards, ``derived`` caches aggregate / window values."""

    def __init__(self, coordinator: Coordinator, derived: DerivedCache, max_query_rows: int) -> None:
        self.coordinator = coordinator
        self.derived = derived
        self.max_query_rows = max_query_rows

    def query(self, version: Version, plan: QueryPlan) -> tuple[pa.Table, int]:
        """The page ``plan`` asks for, its columns in order, and how many rows match in all."""
        schema = version.record.schema
        values = self._values(version, plan.derived)
        found = self._narrowed(version, plan.filter, values)
        if plan.deep:
            deep_page(plan, self._matched(version, found, plan.filter), schema.key[0])
        if plan.derived_order and plan.limit is not None:
            rows, matched = self._sorted_by_values(version, found, plan, values)
        else:
            rows, matched = self._rows(version, found, plan, values)
        rows = with_values(rows, [values[n] for n in plan.attach if n not in rows.column_names])
        return rows.select(
            list(plan.select) if plan.select is not None else in_order(schema, rows.column_names)
        ), matched

    def count(self, version: Version, where: Filter) -> int:
        """Rows matching ``where``: counted by the shards, aggregate / window clauses pushed down first."""
        values = self._values(version, tuple(n for n, _ in where.derived))
        return self._count(version, self._narrowed(version, where, values))

    def route(self, version: Version, plan: QueryPlan) -> tuple[Route, list[tuple[ComputedColumn, Values]]]:
        """For a read of every matching row (a stream, an export): the shards' route with aggregate / window
        clauses pushed down, and the aggregate / window values to attach to the rows it returns."""
        values = self._values(version, plan.derived)
        return self._narrowed(version, plan.filter, values), [values[n] for n in plan.attach]

    # -- steps ----------------------------------------------------------------------------------------------------
    def _rows(self, version: Version, found: Route, plan: QueryPlan, values: Derived) -> tuple[pa.Table, int]:
        """Each shard's first ``top`` rows in order, merged; or, ordered by derived values without a limit, every
        matching row (that is the result) sorted here."""
        if plan.derived_order:
            rows, matched = self._read(version, found, ReadPlan(plan.fetch, found.where, keys=found.keys))
            rows = with_values(rows, [values[n] for n in plan.derived_order])
            return page(rows, plan.order, plan.offset, None), matched
        read = ReadPlan(plan.fetch, found.where, plan.order, plan.top, keys=found.keys)
        rows, matched = self._read(version, found, read)
        if plan.order and len(found.targets) > 1:
            rows = rows.take(pc.sort_indices(rows, sort_keys(plan.order)))
        start = min(plan.offset, rows.num_rows)  # Arrow offsets are 64-bit; a huge offset is just past the end
        return (rows.slice(start, plan.limit) if plan.limit is not None else rows.slice(start)), matched

    def _sorted_by_values(
        self, version: Version, found: Route, plan: QueryPlan, values: Derived
    ) -> tuple[pa.Table, int]:
        """Sort the matching rows' narrow columns with the values attached, then fetch the page's rows by key."""
        schema = version.record.schema
        if sum(version.states[i].row_count for i in found.targets) > self.max_query_rows:
            matched = self._count(version, found)
            if matched > self.max_query_rows:
                raise QueryTooLarge(matched, self.max_query_rows, list(plan.derived_order))
        narrow_rows, matched = self._read(version, found, ReadPlan(plan.sort, found.where, keys=found.keys))
        narrow_rows = with_values(narrow_rows, [values[n] for n in plan.derived_order])
        chosen = page(narrow_rows, plan.order, plan.offset, plan.limit).select(list(schema.key))
        fetch = None if plan.fetch is None else tuple(dict.fromkeys([*plan.fetch, *schema.key]))
        if chosen.num_rows == 0:
            rows = empty(schema)
            return (rows if fetch is None else rows.select(list(fetch))), matched
        by_key = pinned_to(chosen, schema, version.record.shards)
        rows, _ = self._read(version, by_key, ReadPlan(fetch, by_key.where, keys=by_key.keys))
        return in_page_order(rows, chosen, schema.key), matched

    def _narrowed(self, version: Version, where: Filter, values: Derived) -> Route:
        """``where``'s route with its aggregate / window clauses checked on their values and pushed down."""
        schema, found = version.record.schema, where.route
        for name, clauses in where.derived:
            column, column_values = values[name]
            passed = qualifying(column, column_values, clauses, schema)
            found = narrow(found, column, passed, schema, version.record.shards)
        return found

    def _matched(self, version: Version, found: Route, where: Filter) -> int:
        """Rows ``found`` matches: from the catalog's row counts when it is every row."""
        every = found.where is None and found.keys is None and not where.derived
        if every and len(found.targets) == len(version.states):
            return sum(s.row_count for s in version.states)
        return self._count(version, found)

    def _count(self, version: Version, found: Route) -> int:
        plan = ReadPlan(where=found.where, count_only=True, keys=found.keys)
        return sum(r.matched for r in self._results(version, found, plan))

    def _read(self, version: Version, found: Route, plan: ReadPlan) -> tuple[pa.Table, int]:
        """The shards' rows, concatenated in shard order, and how many matched before their limits."""
        results = self._results(version, found, plan)
        tables = [r.table for r in results if r.table is not None]
        if tables:
            return pa.concat_tables(tables), sum(r.matched for r in results)
        rows = empty(version.record.schema)
        return (rows if plan.columns is None else rows.select(list(plan.columns))), 0

    def _results(self, version: Version, found: Route, plan: ReadPlan) -> list[ReadResult]:
        specs = [version.specs[i] for i in found.targets]
        return self.coordinator.read(specs, [version.states[i].version for i in found.targets], plan)

    def _values(self, version: Version, names: Sequence[str]) -> Derived:
        out: Derived = {}
        for name in names:
            column = version.record.schema.computed_column(name)
            assert column is not None, name
            out[name] = (
                column,
                self.derived.values(self.coordinator, version.record, version.states, version.specs, column),
            )
        return out
