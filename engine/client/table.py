"""``Table``: one table's reads, writes, computed columns and UDFs, planned by ``engine.logical`` and run by the
coordinator (``engine.physical.coordinator``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.client.results import MAX_ROWS, QueryResult, WriteResult
from engine.errors import (
    ColumnNotFound,
    DependencyConflict,
    InvalidRequest,
    RowNotFound,
    TooLarge,
    UdfInUse,
    UdfNotFound,
)
from engine.expr import udfs
from engine.expr.compiler import compile_expression
from engine.expr.where import compile_where, parse_where, pin
from engine.logical.columns import define, dependents
from engine.logical.hashing import shard_ids
from engine.logical.plan import (
    AddColumn,
    Delete,
    Direction,
    DropColumn,
    Insert,
    ReadPlan,
    Recompute,
    ShardSpec,
    Update,
    Upsert,
)
from engine.logical.planner import kernels, shard_specs
from engine.logical.udfs import checked
from engine.logical.udfs import define as define_udf
from engine.model.coerce import coerce_value, conform_table, decode_json_cells, rows_to_table
from engine.model.columns import ComputedColumn, Stats, group_by
from engine.model.schema import TableSchema
from engine.model.types import arrow_type
from engine.model.udfs import Udf
from engine.physical.coordinator import ShardWork
from engine.physical.derived import attach
from engine.physical.shard import read_table, sort_keys
from engine.storage.catalog import SchemaChange, ShardState, TableRecord, now_iso

if TYPE_CHECKING:
    import polars
    import ray.data

    from engine.client.database import Database

log = logging.getLogger(__name__)


def _attach_on(column: ComputedColumn, schema: TableSchema) -> tuple[str, ...]:
    """The columns an aggregate's (group_by) or a window's (the key) values are matched to rows by."""
    return group_by(column.parameters) if column.column_type == "aggregate" else schema.key


def _in_order(schema: TableSchema, names: Sequence[str]) -> list[str]:
    """Every column of a result, in the schema's order (``_row_id`` last)."""
    order = {c: i for i, c in enumerate(schema.readable)}
    return sorted(names, key=lambda c: order.get(c, len(order)))


def _empty(schema: TableSchema) -> pa.Table:
    return schema.arrow_schema().empty_table()


def _column_info(column: ComputedColumn, stats: Stats | None) -> dict[str, Any]:
    stats = stats or Stats()
    return {
        **column.to_dict(),
        "last_computed": stats.last_computed,
        "computation_time_ms": stats.computation_time_ms,
        "errors": stats.errors,
        "stale": stats.stale,
    }


def _direction(value: Any, loc: str) -> Direction:
    v = str(value).lower()
    if v in ("asc", "ascending"):
        return "ascending"
    if v in ("desc", "descending"):
        return "descending"
    raise InvalidRequest(f"{loc}: direction must be 'asc' or 'desc', not {value!r}", field=loc)


class Table:
    """A handle on one table by name; every call reads the catalog, so it never goes stale."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name

    def __repr__(self) -> str:
        return f"Table({self.name!r})"

    # -- metadata -----------------------------------------------------------------------------------------------
    @property
    def schema(self) -> TableSchema:
        return self.db.catalog.get_table(self.name).schema

    def info(self) -> dict[str, Any]:
        record, states, _ = self.db._resolve(self.name)
        return {
            "name": record.name,
            "column_count": len(record.schema.columns) + len(record.schema.computed),
            "row_count": sum(s.row_count for s in states),
            "columns": [{**c.to_dict(), "is_computed": False} for c in record.schema.columns]
            + [
                {"name": c.name, "type": c.type, "nullable": True, "is_computed": True, "column_type": c.column_type}
                for c in record.schema.computed
            ],
            "created_at": record.created_at,
            "primary_key": list(record.schema.primary_key) or None,
            "shards": record.shards,
            "version": record.version,
        }

    # -- computed columns -----------------------------------------------------------------------------------
    def add_computed_column(
        self,
        name: str,
        column_type: str,
        expression: str,
        *,
        dependencies: Sequence[str] | None = None,
        parameters: dict[str, Any] | None = None,
        cache_results: bool = True,
    ) -> dict[str, Any]:
        """Add a computed column (see ``engine.model.columns``) and compute it; returns its info.

        A stored expression column is computed over every row and written in the same transaction that adds
        it: with ``parameters.on_error == "abort"`` a failing cell fails the whole call and changes nothing.
        """
        record, states, specs = self.db._resolve(self.name)
        column = define(
            record.schema,
            name,
            column_type,
            expression,
            list(dependencies) if dependencies is not None else None,
            parameters,
            cache_results,
            now_iso(),
        )
        schema = record.schema.with_computed(column)
        start = time.perf_counter()
        errors = 0
        if column.stored:
            new_specs = shard_specs(record.id, record.name, schema, record.shards, self.db.root, record.layout)
            change = SchemaChange(record.id, record.layout, schema)
            staged = self.db.coordinator.run([ShardWork(s, (AddColumn(name),)) for s in new_specs], schema=change)
            errors = sum(r.results[0].errors for r in staged)
        else:
            if column.whole_table:  # computes now, so a bad definition fails here, not on the next read
                self.db.derived.values(self.db.coordinator, replace(record, schema=schema), states, specs, column)
            else:  # with on_error "abort", every row must compute now (later writes are checked as they come)
                kernel = next(k for k in kernels(schema) if k.name == name)
                if column.on_error == "abort":
                    versions = [s.version for s in states]
                    self.db.coordinator.read(list(specs), versions, ReadPlan(count_only=True, derive=(kernel,)))
            self.db.coordinator.run([], schema=SchemaChange(record.id, record.layout, schema))
        elapsed = (time.perf_counter() - start) * 1000
        self._record_stats(name, Stats(now_iso(), round(elapsed, 3), errors))
        return self.computed_column(name)

    def computed_columns(self) -> list[dict[str, Any]]:
        record = self.db.catalog.get_table(self.name)
        stats = self.db.catalog.computed_stats(record.id)
        return [_column_info(c, stats.get(c.name)) for c in record.schema.computed]

    def computed_column(self, name: str) -> dict[str, Any]:
        record = self.db.catalog.get_table(self.name)
        column = record.schema.computed_column(name)
        if column is None:
            raise ColumnNotFound(self.name, name, "computed column")
        return _column_info(column, self.db.catalog.computed_stats(record.id).get(name))

    def drop_computed_column(self, name: str) -> None:
        """Drop a computed column; 409 while other computed columns read it."""
        record = self.db.catalog.get_table(self.name)
        column = record.schema.computed_column(name)
        if column is None:
            raise ColumnNotFound(self.name, name, "computed column")
        users = dependents(record.schema, name)
        if users:
            raise DependencyConflict(
                f"computed column '{name}' is used by {', '.join(users)}; drop those first", column=name, used_by=users
            )
        schema = record.schema.without_computed(name)
        change = SchemaChange(record.id, record.layout, schema)
        if column.stored:
            new_specs = shard_specs(record.id, record.name, schema, record.shards, self.db.root, record.layout)
            self.db.coordinator.run([ShardWork(s, (DropColumn(name),)) for s in new_specs], schema=change)
        else:
            self.db.coordinator.run([], schema=change)

    def recompute(self, name: str, where: Any = None) -> dict[str, Any]:
        """Compute a computed column again: every row, or those matching ``where`` (stored columns)."""
        record, states, specs = self.db._resolve(self.name)
        column = record.schema.computed_column(name)
        if column is None:
            raise ColumnNotFound(self.name, name, "computed column")
        start = time.perf_counter()
        errors, rows = 0, 0
        if column.stored:
            clauses = parse_where(where)
            for c in clauses:
                other = record.schema.computed_column(c.column)
                if other is not None and other.whole_table:
                    raise InvalidRequest(
                        f"where: recompute filters on row values; '{c.column}' is an {other.column_type} column",
                        field="where",
                    )
            expr = compile_where(clauses, record.schema)
            op = Recompute(name, expr, everything=where is None)
            staged = self.db.coordinator.run([ShardWork(s, (op,)) for s in specs])
            rows = sum(r.results[0].rows_affected for r in staged)
            errors = sum(r.results[0].errors for r in staged)
        elif column.whole_table:
            self.db.derived.values(self.db.coordinator, record, states, specs, column, fresh=True)
            rows = self.count(where)
        else:
            rows = self.count(where)
        elapsed = (time.perf_counter() - start) * 1000
        self._record_stats(name, Stats(now_iso(), round(elapsed, 3), errors))
        return {"column": name, "rows_recomputed": rows, "computation_time_ms": round(elapsed, 3), "errors": errors}

    def _record_stats(self, name: str, stats: Stats) -> None:
        self.db.catalog.set_computed_stats(self.db.catalog.get_table(self.name).id, name, stats)

    # -- user-defined functions ---------------------------------------------------------------------------
    def register_udf(
        self,
        name: str,
        language: str,
        code: str,
        parameters: Sequence[dict[str, Any]] = (),
        return_type: str = "float",
        *,
        description: str | None = None,
        deterministic: bool = False,
        replace: bool = False,
    ) -> dict[str, Any]:
        """Register a UDF (``engine.model.udfs``): its code is compiled in the sandbox first; returns its info.

        ``replace=True`` replaces the code of an existing UDF (its parameters and return type may change only
        while no computed column calls it); stored columns that call it are marked ``stale`` until recomputed.
        """
        record = self.db.catalog.get_table(self.name)
        previous = record.schema.udf(name) if replace and isinstance(name, str) else None
        if replace and previous is None:
            raise UdfNotFound(self.name, str(name))
        params = [dict(p) for p in parameters] if isinstance(parameters, list | tuple) else parameters
        udf = define_udf(
            record.schema,
            name,
            language,
            code,
            params,
            return_type,
            description,
            deterministic,
            now=now_iso(),
            previous=previous,
        )
        users = self._udf_users(record.schema, udf.name)
        signature_changed = previous is not None and (udf.parameters, udf.return_type) != (
            previous.parameters,
            previous.return_type,
        )
        if users and signature_changed:
            raise UdfInUse(
                f"UDF '{name}' is called by {', '.join(users)}: its parameters and return type cannot change",
                udf=name,
                used_by=users,
            )
        udf = checked(udf, udfs.runner())
        stale = tuple(c.name for c in record.schema.computed if c.name in users and c.stored)
        self.db.coordinator.run([], schema=SchemaChange(record.id, record.layout, record.schema.with_udf(udf), stale))
        return self.udf(udf.name)

    def udfs(self) -> list[dict[str, Any]]:
        record = self.db.catalog.get_table(self.name)
        usage = self.db.catalog.udf_usage(record.id)
        return [self._udf_info(u, usage, record.schema) for u in record.schema.udfs]

    def udf(self, name: str) -> dict[str, Any]:
        record = self.db.catalog.get_table(self.name)
        udf = self._find_udf(record.schema, name)
        return self._udf_info(udf, self.db.catalog.udf_usage(record.id), record.schema)

    def drop_udf(self, name: str) -> None:
        """Drop a UDF; 409 while computed columns call it."""
        record = self.db.catalog.get_table(self.name)
        self._find_udf(record.schema, name)
        users = self._udf_users(record.schema, name)
        if users:
            raise UdfInUse(
                f"UDF '{name}' is called by computed column{'s' if len(users) > 1 else ''} {', '.join(users)}; "
                "drop those first",
                udf=name,
                used_by=users,
            )
        self.db.coordinator.run([], schema=SchemaChange(record.id, record.layout, record.schema.without_udf(name)))

    def execute_udf(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call a UDF once with named arguments; returns its result as a JSON value."""
        record = self.db.catalog.get_table(self.name)
        udf = self._find_udf(record.schema, name)
        try:
            return udfs.execute(udf, arguments)
        finally:
            self.db.catalog.count_udf_calls(record.id, name)

    def _find_udf(self, schema: TableSchema, name: str) -> Udf:
        udf = schema.udf(name) if isinstance(name, str) else None
        if udf is None:
            raise UdfNotFound(self.name, str(name))
        return udf

    @staticmethod
    def _udf_users(schema: TableSchema, name: str) -> list[str]:
        return [c.name for c in schema.computed if name in udfs.calls(c.expression, {name})]

    def _udf_info(self, udf: Udf, usage: dict[str, int], schema: TableSchema) -> dict[str, Any]:
        info = udf.to_dict()
        info["inlined"] = info.pop("inline") is not None
        info["usage_count"] = usage.get(udf.name, 0)
        info["used_by"] = self._udf_users(schema, udf.name)
        return info

    # -- writes ---------------------------------------------------------------------------------------------
    def insert(
        self, rows: dict[str, Any] | list[dict[str, Any]] | pa.Table, *, return_rows: bool = False
    ) -> WriteResult:
        """Insert one row, many rows, or an Arrow table; a duplicate primary key fails the whole insert.

        ``return_rows`` sends the stored rows back in ``WriteResult.rows`` (with assigned ``_row_id`` values).
        """
        return self._write(rows, Insert, return_rows)

    def upsert(
        self, rows: dict[str, Any] | list[dict[str, Any]] | pa.Table, *, return_rows: bool = False
    ) -> WriteResult:
        """Insert rows, replacing existing rows with the same primary key."""
        return self._write(rows, Upsert, return_rows)

    def _write(self, rows: Any, kind: type[Insert] | type[Upsert], return_rows: bool) -> WriteResult:
        record, _, specs = self.db._resolve(self.name)
        if kind is Upsert and not record.schema.primary_key:
            raise InvalidRequest(f"Table '{self.name}' has no primary key: upsert needs one", field="primary_key")
        table = self._to_arrow(rows, record.schema)
        results = self.db.coordinator.run(self._partition(table, record.schema, specs, kind, return_rows))
        if not return_rows:
            return WriteResult(table.num_rows)
        stored = [r.results[0].rows for r in results if r.results[0].rows is not None]
        return WriteResult(table.num_rows, pa.concat_tables(stored) if stored else table)

    def update(self, where: Any, set: dict[str, Any]) -> int:
        """Set columns on every row matching ``where``; returns the number of rows updated."""
        record, _, specs = self.db._resolve(self.name)
        schema = record.schema
        assignments = self._assignments(schema, set)
        clauses = parse_where(where)
        targets, keys, rest = self._route(clauses, schema, record.shards)
        op = Update(rest, assignments, keys)
        work = [ShardWork(specs[i], (op,)) for i in targets]
        return sum(r.results[0].rows_affected for r in self.db.coordinator.run(work))

    def delete(self, where: Any = None) -> int:
        """Delete every row matching ``where`` (all rows when None); returns the number deleted."""
        record, _, specs = self.db._resolve(self.name)
        clauses = parse_where(where)
        targets, keys, rest = self._route(clauses, record.schema, record.shards)
        op = Delete(rest, keys)
        work = [ShardWork(specs[i], (op,)) for i in targets]
        return sum(r.results[0].rows_affected for r in self.db.coordinator.run(work))

    def get(self, row_id: Any) -> dict[str, Any]:
        """The row whose primary key (or ``_row_id``) is ``row_id``."""
        result = self.query(where=self._id_where(row_id), limit=1)
        if result.rows.num_rows == 0:
            raise RowNotFound(self.name, row_id)
        return decode_json_cells(result.rows.to_pylist(), self.schema)[0]

    def update_row(self, row_id: Any, data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(data, dict) or not data:
            raise InvalidRequest("data must be a non-empty object of column: value", field="data")
        schema = self.schema
        key = schema.key
        changes = {k: v for k, v in data.items() if not (k in key and self._same_key(schema, k, v, row_id))}
        if not changes:  # only the key, unchanged: nothing to write
            return self.get(row_id)
        for k in changes:
            if k in key:
                raise InvalidRequest(
                    f"data.{k}: the primary key cannot be changed; delete and insert instead", field=f"data.{k}"
                )
        if self.update(self._id_where(row_id), changes) == 0:
            raise RowNotFound(self.name, row_id)
        return self.get(row_id)

    def delete_row(self, row_id: Any) -> None:
        if self.delete(self._id_where(row_id)) == 0:
            raise RowNotFound(self.name, row_id)

    # -- reads ----------------------------------------------------------------------------------------------
    def query(
        self,
        select: Sequence[str] | None = None,
        where: Any = None,
        order_by: Sequence[Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> QueryResult:
        """Rows matching ``where`` in a global ``order_by`` (default: primary key when paging), as Arrow."""
        record, states, specs = self.db._resolve(self.name)
        schema = record.schema
        columns = self._columns(schema, select)
        order = self._order(schema, order_by)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidRequest("limit must be a non-negative integer", field="limit")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidRequest("offset must be a non-negative integer", field="offset")
        if not order and (limit is not None or offset):
            order = tuple((k, "ascending") for k in schema.key)  # stable pages
        clauses = parse_where(where)
        expr = compile_where(clauses, schema)
        targets, keys, rest = self._route(clauses, schema, record.shards)
        needed = None if columns is None else tuple(dict.fromkeys([*columns, *(c for c, _ in order)]))
        top = None if limit is None else min(offset + limit, MAX_ROWS)
        whole = {c.name: c for c in schema.computed if c.whole_table}
        wanted = [n for n in whole if columns is None or n in columns]
        late = {c.column for c in clauses} | {c for c, _ in order}
        if whole and late & set(whole):  # filters or sorts on aggregate / window values: attach them first
            merged = self._with_whole(record, states, specs, self._read_all(schema, states, specs), list(whole))
            result = read_table(merged, ReadPlan(None, expr, order, top), schema.key[0])
            assert result.table is not None
            results: list[Any] = [result]
            merged = result.table
        else:
            if needed is not None and wanted:  # shards send what the values attach by (group_by columns, key)
                extra = [g for n in wanted for g in _attach_on(whole[n], schema)]
                needed = tuple(dict.fromkeys([*(c for c in needed if c not in whole), *extra]))
            plan = ReadPlan(needed, rest, order, top, keys=keys)
            results = self.db.coordinator.read([specs[i] for i in targets], [states[i].version for i in targets], plan)
            tables = [r.table for r in results if r.table is not None]
            merged = pa.concat_tables(tables) if tables else _empty(schema)
            if order and len(tables) > 1:
                merged = merged.take(pc.sort_indices(merged, sort_keys(order)))
        start = min(offset, merged.num_rows)  # Arrow offsets are 64-bit; a huge offset is just past the end
        merged = merged.slice(start, limit) if limit is not None else merged.slice(start)
        if wanted and not (late & set(whole)):
            merged = self._with_whole(record, states, specs, merged, wanted)
        merged = merged.select(list(columns) if columns is not None else _in_order(schema, merged.column_names))
        return QueryResult(merged, sum(r.matched for r in results), offset)

    def _read_all(self, schema: TableSchema, states: Sequence[ShardState], specs: Sequence[ShardSpec]) -> pa.Table:
        results = self.db.coordinator.read(list(specs), [s.version for s in states], ReadPlan())
        tables = [r.table for r in results if r.table is not None]
        return pa.concat_tables(tables) if tables else _empty(schema)

    def _with_whole(
        self,
        record: TableRecord,
        states: Sequence[ShardState],
        specs: Sequence[ShardSpec],
        rows: pa.Table,
        names: Sequence[str],
    ) -> pa.Table:
        """``rows`` with the values of aggregate / window columns ``names`` attached."""
        for name in names:
            column = record.schema.computed_column(name)
            assert column is not None
            values = self.db.derived.values(self.db.coordinator, record, states, specs, column)
            rows = rows.append_column(name, attach(rows, values, name).cast(arrow_type(column.type)))
        return rows

    def count(self, where: Any = None) -> int:
        schema = self.schema
        if where is not None and {c.column for c in parse_where(where)} & {
            c.name for c in schema.computed if c.whole_table
        }:
            return self.query(select=list(schema.key), where=where).total_count
        if where is None:
            _, states, _ = self.db._resolve(self.name)
            return sum(s.row_count for s in states)
        record, states, specs = self.db._resolve(self.name)
        clauses = parse_where(where)
        targets, keys, rest = self._route(clauses, record.schema, record.shards)
        plan = ReadPlan(where=rest, count_only=True, keys=keys)
        return sum(
            r.matched
            for r in self.db.coordinator.read([specs[i] for i in targets], [states[i].version for i in targets], plan)
        )

    def to_arrow(self) -> pa.Table:
        return self.query().rows

    def to_pylist(self) -> list[dict[str, Any]]:
        return decode_json_cells(self.to_arrow().to_pylist(), self.schema)

    def to_polars(self) -> polars.DataFrame:
        import polars as pl

        return pl.from_arrow(self.to_arrow())  # type: ignore[return-value]

    def to_ray_dataset(self) -> ray.data.Dataset:
        """A Ray Dataset over the committed rows, one block per shard, without passing through this process."""
        import ray.data

        _, states, specs = self.db._resolve(self.name)
        coordinator = self.db.coordinator
        refs = [
            coordinator.host(s.table_id, s.shard).scan.remote(s, st.version)
            for s, st in zip(specs, states, strict=True)
        ]
        return ray.data.from_arrow_refs(refs)

    # -- helpers --------------------------------------------------------------------------------------------
    def _to_arrow(self, rows: Any, schema: TableSchema) -> pa.Table:
        if isinstance(rows, pa.Table):
            table = conform_table(rows, schema)
        else:
            table = rows_to_table([rows] if isinstance(rows, dict) else rows, schema)
        limit = self.db.settings.max_rows_per_request
        if not isinstance(rows, pa.Table) and table.num_rows > limit:
            raise TooLarge(f"{table.num_rows} rows in one request; the limit is {limit}", limit=limit)
        return table

    def _partition(
        self,
        table: pa.Table,
        schema: TableSchema,
        specs: Sequence[ShardSpec],
        kind: type[Insert] | type[Upsert],
        return_rows: bool,
    ) -> list[ShardWork]:
        n = len(specs)
        if n == 1:
            return [ShardWork(specs[0], (kind(table, return_rows),))]
        if schema.primary_key:
            ids = shard_ids([table[k] for k in schema.primary_key], n)
            if table.num_rows == 1:  # a batch's single-row writes: no reordering needed
                return [ShardWork(specs[int(ids[0])], (kind(table, return_rows),))]
            order = np.argsort(ids, kind="stable")
            counts = np.bincount(ids, minlength=n)
            table = table.take(pa.array(order))
        else:  # no key: spread evenly, starting from a random shard so single rows do not pile up on shard 0
            start = random.randrange(n)
            counts = np.roll(np.full(n, table.num_rows // n) + (np.arange(n) < table.num_rows % n), start)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [
            ShardWork(specs[i], (kind(table.slice(bounds[i], counts[i]), return_rows),))
            for i in range(n)
            if counts[i] or (table.num_rows == 0 and i == 0)
        ]

    def _route(
        self, clauses: Any, schema: TableSchema, shards: int, field: str = "where"
    ) -> tuple[list[int], pa.Array | None, pc.Expression | None]:
        """The shards a filter can match, the key values it pins the key to (if it does) and what the shards must
        still check on the rows with those keys (the whole filter when it pins nothing). Checks every clause."""
        where = compile_where(clauses, schema, field)
        values, rest = pin(clauses, schema)
        if values is None:
            return list(range(shards)), None, where
        return (*self._shards_of(values, schema, shards), compile_where(rest, schema, field))

    def _shards_of(self, values: list[Any], schema: TableSchema, shards: int) -> tuple[list[int], pa.Array]:
        column = schema.column(schema.key[0])
        keys = pa.array(
            [coerce_value(column, v, ("where", column.name)).as_py() for v in values],
            schema.arrow_schema().field(column.name).type,
        )
        if len(keys) == 0:
            return [], keys
        if shards == 1:
            return [0], keys
        if not schema.primary_key:  # engine row ids are placed by value: id mod shards (see Shard._insert)
            return sorted(set((keys.to_numpy() % shards).tolist())), keys
        return sorted(set(shard_ids([keys], shards).tolist())), keys

    def _assignments(self, schema: TableSchema, values: Any) -> tuple[tuple[str, pc.Expression], ...]:
        if not isinstance(values, dict) or not values:
            raise InvalidRequest("set must be a non-empty object of column: value", field="set")
        out = []
        for name, value in values.items():
            column = schema.column(name, "set")
            if schema.computed_column(name) is not None:
                raise InvalidRequest(
                    f"set.{name}: '{name}' is a computed column; it cannot be set", field=f"set.{name}"
                )
            if name in schema.key:
                raise InvalidRequest(
                    f"set.{name}: the primary key cannot be updated; delete and insert instead", field=f"set.{name}"
                )
            if value is None:
                if not column.nullable:
                    raise InvalidRequest(f"set.{name}: column '{name}' may not be null", field=f"set.{name}")
                out.append((name, pc.scalar(pa.scalar(None, schema.arrow_schema().field(name).type))))
                continue
            if isinstance(value, dict) and set(value) == {"expr"} and column.type != "json":
                out.append((name, self._set_expression(schema, name, value["expr"])))
                continue
            out.append((name, pc.scalar(coerce_value(column, value, ("set", name)))))
        return tuple(out)

    @staticmethod
    def _set_expression(schema: TableSchema, name: str, text: Any) -> pc.Expression:
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

    def _columns(self, schema: TableSchema, select: Sequence[str] | None) -> tuple[str, ...] | None:
        if select is None:
            return None
        if isinstance(select, str) or not isinstance(select, (list, tuple)):
            raise InvalidRequest("select must be a list of column names", field="select")
        for c in select:
            schema.column(c, "select")
        return tuple(select)

    def _order(self, schema: TableSchema, order_by: Any) -> tuple[tuple[str, Direction], ...]:
        if not order_by:
            return ()
        out = []
        for i, item in enumerate(order_by):
            loc = f"order_by[{i}]"
            name: Any
            if isinstance(item, str):
                name, _, d = item.partition(":")
                direction = _direction(d or "asc", loc)
            elif isinstance(item, dict):
                name, direction = item.get("column"), _direction(item.get("direction", "asc"), loc)
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                name, direction = item[0], _direction(item[1], loc)
            else:
                raise InvalidRequest(f"{loc} must be 'column[:asc|desc]' or {{column, direction}}", field=loc)
            column = schema.column(str(name), loc)
            if column.type == "json":
                raise InvalidRequest(f"{loc}: cannot order by json column '{name}'", field=loc)
            out.append((column.name, direction))
        return tuple(out)

    def _id_where(self, row_id: Any) -> list[dict[str, Any]]:
        key = self.schema.key
        if len(key) != 1:
            raise InvalidRequest(f"Table '{self.name}' has a composite primary key; use a where filter", field="row_id")
        return [{"column": key[0], "operator": "=", "value": row_id}]

    @staticmethod
    def _same_key(schema: TableSchema, name: str, value: Any, row_id: Any) -> bool:
        column = schema.column(name)
        return coerce_value(column, value, ("data", name)) == coerce_value(column, row_id, ("row_id",))

    def key_from_text(self, text: str) -> Any:
        """A row id from a URL path segment, converted to the key column's type."""
        schema = self.schema
        if len(schema.key) != 1:
            raise InvalidRequest(f"Table '{self.name}' has a composite primary key; use a where filter", field="row_id")
        column = schema.column(schema.key[0])
        if column.type == "int":
            try:
                return int(text)
            except ValueError:
                raise InvalidRequest(
                    f"row_id {text!r} is not an integer (the key '{column.name}' is int)", field="row_id"
                ) from None
        return coerce_value(column, text, ("row_id",)).as_py()
