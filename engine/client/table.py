"""``Table``: one table's reads, writes, computed columns and UDFs.

A facade: each call resolves the table (one catalog snapshot), asks ``engine.logical`` for the plan, hands it to
the coordinator (writes) or the reader (``engine.physical.reader``) and shapes the result.

>>> t = db.table("users")                                              # doctest: +SKIP
>>> t.query(where={"id": 1}, select=["name"]).to_pylist()              # doctest: +SKIP
[{'name': 'Ada'}]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from engine.client import transfer
from engine.client.results import QueryResult, WriteResult, column_info, table_info, udf_info
from engine.errors import InvalidRequest, RowNotFound
from engine.expr import udfs
from engine.expr.where import parse_where
from engine.logical import assignments, changes, keys, planner
from engine.logical.columns import define
from engine.logical.plan import AddColumn, Delete, DropColumn, Insert, ReadPlan, Recompute, Update, Upsert
from engine.logical.query import plan_filter, plan_query, row_filter
from engine.logical.udfs import checked
from engine.logical.udfs import define as define_udf
from engine.model.coerce import decode_json_cells
from engine.model.columns import Stats
from engine.model.schema import TableSchema
from engine.physical.coordinator import ShardWork
from engine.physical.reader import Reader, Version
from engine.storage.records import SchemaChange, now_iso
from engine.transfer.scan import Scan

if TYPE_CHECKING:
    import pandas
    import polars
    import ray.data

    from engine.client.database import Database


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
        version = self._version()
        return table_info(version.record, sum(s.row_count for s in version.states))

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
        version = self._version()
        record = version.record
        deps = list(dependencies) if dependencies is not None else None
        column = define(record.schema, name, column_type, expression, deps, parameters, cache_results, now_iso())
        schema = record.schema.with_computed(column)
        change = SchemaChange(record.id, record.layout, schema)
        start = time.perf_counter()
        errors = 0
        if column.stored:
            new_specs = planner.shard_specs(record.id, record.name, schema, record.shards, self.db.root, record.layout)
            staged = self.db.coordinator.run([ShardWork(s, (AddColumn(name),)) for s in new_specs], schema=change)
            errors = sum(r.results[0].errors for r in staged)
        else:
            if column.whole_table:  # computes now, so a bad definition fails here, not on the next read
                self.db.derived.values(
                    self.db.coordinator, replace(record, schema=schema), version.states, version.specs, column
                )
            elif column.on_error == "abort":  # every row must compute now (later writes are checked as they come)
                kernel = next(k for k in planner.kernels(schema) if k.name == name)
                plan = ReadPlan(count_only=True, derive=(kernel,))
                self.db.coordinator.read(list(version.specs), [s.version for s in version.states], plan)
            self.db.coordinator.run([], schema=change)
        self._record_stats(name, Stats(now_iso(), round((time.perf_counter() - start) * 1000, 3), errors))
        return self.computed_column(name)

    def computed_columns(self) -> list[dict[str, Any]]:
        record = self.db.catalog.get_table(self.name)
        stats = self.db.catalog.computed_stats(record.id)
        return [column_info(c, stats.get(c.name)) for c in record.schema.computed]

    def computed_column(self, name: str) -> dict[str, Any]:
        record = self.db.catalog.get_table(self.name)
        return column_info(changes.computed(record.schema, name), self.db.catalog.computed_stats(record.id).get(name))

    def drop_computed_column(self, name: str) -> None:
        """Drop a computed column; 409 while other computed columns read it."""
        record = self.db.catalog.get_table(self.name)
        column = changes.droppable_column(record.schema, name)
        schema = record.schema.without_computed(name)
        change = SchemaChange(record.id, record.layout, schema)
        work: list[ShardWork] = []
        if column.stored:
            new_specs = planner.shard_specs(record.id, record.name, schema, record.shards, self.db.root, record.layout)
            work = [ShardWork(s, (DropColumn(name),)) for s in new_specs]
        self.db.coordinator.run(work, schema=change)

    def recompute(
        self, name: str, where: Any = None, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """Compute a computed column again: every row, or those matching ``where`` (stored columns), in one
        transaction. ``progress(shards_done, shards)`` is called as each shard's part is staged; raising from it
        (a cancelled job) aborts the whole recompute: nothing is published."""
        version = self._version()
        column = changes.computed(version.record.schema, name)
        start = time.perf_counter()
        errors, rows = 0, 0
        if column.stored:
            expr = row_filter(where, version.record.schema, "recompute")
            op = Recompute(name, expr, everything=where is None)
            staged = self.db.coordinator.run([ShardWork(s, (op,)) for s in version.specs], progress=progress)
            rows = sum(r.results[0].rows_affected for r in staged)
            errors = sum(r.results[0].errors for r in staged)
        else:
            if column.whole_table:
                self.db.derived.values(
                    self.db.coordinator, version.record, version.states, version.specs, column, fresh=True
                )
            rows = self.count(where)
        elapsed = round((time.perf_counter() - start) * 1000, 3)
        self._record_stats(name, Stats(now_iso(), elapsed, errors))
        return {"column": name, "rows_recomputed": rows, "computation_time_ms": elapsed, "errors": errors}

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
        previous = changes.udf(record.schema, name) if replace else None
        params = [dict(p) for p in parameters] if isinstance(parameters, list | tuple) else parameters
        definition = (name, language, code, params, return_type, description, deterministic)
        udf = define_udf(record.schema, *definition, now=now_iso(), previous=previous)
        stale = changes.stale_after(record.schema, udf, previous)
        udf = checked(udf)
        self.db.coordinator.run([], schema=SchemaChange(record.id, record.layout, record.schema.with_udf(udf), stale))
        return self.udf(udf.name)

    def udfs(self) -> list[dict[str, Any]]:
        record = self.db.catalog.get_table(self.name)
        usage = self.db.catalog.udf_usage(record.id)
        return [udf_info(u, usage, changes.callers(record.schema, u.name)) for u in record.schema.udfs]

    def udf(self, name: str) -> dict[str, Any]:
        record = self.db.catalog.get_table(self.name)
        udf = changes.udf(record.schema, name)
        return udf_info(udf, self.db.catalog.udf_usage(record.id), changes.callers(record.schema, udf.name))

    def drop_udf(self, name: str) -> None:
        """Drop a UDF; 409 while computed columns call it."""
        record = self.db.catalog.get_table(self.name)
        changes.droppable_udf(record.schema, name)
        self.db.coordinator.run([], schema=SchemaChange(record.id, record.layout, record.schema.without_udf(name)))

    def execute_udf(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call a UDF once with named arguments; returns its result as a JSON value."""
        record = self.db.catalog.get_table(self.name)
        udf = changes.udf(record.schema, name)
        try:
            return udfs.execute(udf, arguments)
        finally:
            self.db.catalog.count_udf_calls(record.id, name)

    # -- writes ---------------------------------------------------------------------------------------------
    def insert(
        self, rows: dict[str, Any] | list[dict[str, Any]] | pa.Table | Any, *, return_rows: bool = False
    ) -> WriteResult:
        """Insert one row, many rows, an Arrow table or a pandas / Polars DataFrame; a duplicate primary key fails
        the whole insert.

        ``return_rows`` sends the stored rows back in ``WriteResult.rows`` (with assigned ``_row_id`` values).
        """
        return self._write(rows, Insert, return_rows)

    def upsert(
        self, rows: dict[str, Any] | list[dict[str, Any]] | pa.Table | Any, *, return_rows: bool = False
    ) -> WriteResult:
        """Insert rows (as ``insert`` takes them), replacing existing rows with the same primary key."""
        return self._write(rows, Upsert, return_rows)

    def _write(self, rows: Any, kind: type[Insert] | type[Upsert], return_rows: bool) -> WriteResult:
        rows = transfer.as_arrow(rows)  # a pandas or Polars DataFrame: as Arrow, then as any Arrow table
        record, _, specs = self.db._resolve(self.name)
        if kind is Upsert and not record.schema.primary_key:
            raise InvalidRequest(f"Table '{self.name}' has no primary key: upsert needs one", field="primary_key")
        table = planner.rows_to_write(rows, record.schema, self.db.settings.max_rows_per_request)
        written = planner.partition(table, record.schema, len(specs), kind, return_rows)
        results = self.db.coordinator.run([ShardWork(specs[i], (op,)) for i, op in written])
        if not return_rows:
            return WriteResult(table.num_rows)
        stored = [r.results[0].rows for r in results if r.results[0].rows is not None]
        return WriteResult(table.num_rows, pa.concat_tables(stored) if stored else table)

    def update(self, where: Any, set: dict[str, Any]) -> int:
        """Set columns on every row matching ``where``; returns the number of rows updated."""
        record, _, specs = self.db._resolve(self.name)
        values = assignments.assignments(record.schema, set)
        found = planner.route(parse_where(where), record.schema, record.shards)
        op = Update(found.where, values, found.keys)
        return sum(
            r.results[0].rows_affected
            for r in self.db.coordinator.run([ShardWork(specs[i], (op,)) for i in found.targets])
        )

    def delete(self, where: Any = None) -> int:
        """Delete every row matching ``where`` (all rows when None); returns the number deleted."""
        record, _, specs = self.db._resolve(self.name)
        found = planner.route(parse_where(where), record.schema, record.shards)
        op = Delete(found.where, found.keys)
        return sum(
            r.results[0].rows_affected
            for r in self.db.coordinator.run([ShardWork(specs[i], (op,)) for i in found.targets])
        )

    def get(self, row_id: Any) -> dict[str, Any]:
        """The row whose primary key (or ``_row_id``) is ``row_id``."""
        version = self._version()
        schema = version.record.schema
        plan = plan_query(schema, version.record.shards, where=keys.id_where(schema, row_id), limit=1)
        rows, _ = self._reader().query(version, plan)
        if rows.num_rows == 0:
            raise RowNotFound(self.name, row_id)
        return decode_json_cells(rows.to_pylist(), schema)[0]

    def update_row(self, row_id: Any, data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(data, dict) or not data:
            raise InvalidRequest("data must be a non-empty object of column: value", field="data")
        schema = self.schema
        edits = {k: v for k, v in data.items() if not (k in schema.key and keys.same_key(schema, k, v, row_id))}
        if not edits:  # only the key, unchanged: nothing to write
            return self.get(row_id)
        for k in edits:
            if k in schema.key:
                raise InvalidRequest(
                    f"data.{k}: the primary key cannot be changed; delete and insert instead", field=f"data.{k}"
                )
        if self.update(keys.id_where(schema, row_id), edits) == 0:
            raise RowNotFound(self.name, row_id)
        return self.get(row_id)

    def delete_row(self, row_id: Any) -> None:
        if self.delete(keys.id_where(self.schema, row_id)) == 0:
            raise RowNotFound(self.name, row_id)

    def key_from_text(self, text: str) -> Any:
        """A row id from a URL path segment, converted to the key column's type."""
        return keys.key_from_text(self.schema, text)

    # -- reads ----------------------------------------------------------------------------------------------
    def query(
        self,
        select: Sequence[str] | None = None,
        where: Any = None,
        order_by: Sequence[Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> QueryResult:
        """Rows matching ``where`` in a global ``order_by`` (default: primary key when paging), as Arrow.

        A page past the first must end within ``Settings.max_query_window`` rows (``OffsetTooDeep``: page with a
        ``where`` on the key instead); one past the end is empty.
        """
        version = self._version()
        window = self.db.settings.max_query_window
        plan = plan_query(version.record.schema, version.record.shards, select, where, order_by, limit, offset, window)
        rows, matched = self._reader().query(version, plan)
        return QueryResult(rows, matched, offset)

    def count(self, where: Any = None) -> int:
        if where is None:  # the catalog keeps every shard's row count
            return sum(s.row_count for s in self.db.catalog.read_table(self.name)[1])
        version = self._version()
        return self._reader().count(version, plan_filter(where, version.record.schema, version.record.shards))

    def to_arrow(self) -> pa.Table:
        return self.query().rows

    def to_pylist(self) -> list[dict[str, Any]]:
        return decode_json_cells(self.to_arrow().to_pylist(), self.schema)

    def to_polars(self) -> polars.DataFrame:
        import polars as pl

        return pl.from_arrow(self.to_arrow())  # type: ignore[return-value]

    def to_pandas(self) -> pandas.DataFrame:
        """Every row as a pandas DataFrame backed by Arrow (``pd.ArrowDtype`` columns: no per-row Python)."""
        import pandas as pd

        return self.to_arrow().to_pandas(types_mapper=pd.ArrowDtype)

    # -- bulk reads and writes: streams, exports, imports -----------------------------------------------------
    def scan(
        self,
        columns: Sequence[str] | None = None,
        where: Any = None,
        order_by: Sequence[Any] | None = None,
        limit: int | None = None,
    ) -> Scan:
        """Every matching row of the current version, as record batches read shard page by shard page (bounded
        memory); iterate it, and close it (or use ``with``) if you stop early."""
        return Scan(self.db.coordinator, self._reader(), self._version(), columns, where, order_by, limit)

    def stream(
        self,
        columns: Sequence[str] | None = None,
        where: Any = None,
        order_by: Sequence[Any] | None = None,
        chunk_size: int = 1000,
    ) -> Iterator[pa.RecordBatch]:
        """The matching rows of one table version as record batches of ``chunk_size`` rows, in bounded memory."""
        return transfer.stream(self, columns, where, order_by, chunk_size)

    def export(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        *,
        columns: Sequence[str] | None = None,
        where: Any = None,
        order_by: Sequence[Any] | None = None,
        limit: int | None = None,
        options: dict[str, Any] | None = None,
        compress: bool = False,
    ) -> dict[str, Any]:
        """Write the matching rows of one table version to ``path`` (format from the name unless given),
        atomically; returns ``{rows_exported, file_size_bytes, path, format, duration_seconds}``."""
        return transfer.export(
            self,
            path,
            format,
            columns=columns,
            where=where,
            order_by=order_by,
            limit=limit,
            options=options,
            compress=compress,
        )

    def import_file(
        self,
        source: str | os.PathLike[str],
        format: str | None = None,
        *,
        mapping: dict[str, str] | None = None,
        options: dict[str, Any] | None = None,
        validation_rules: dict[str, Any] | None = None,
        on_error: str = "skip",
        batch_size: int = 1000,
    ) -> dict[str, Any]:
        """Import a local file or an ``http(s)://`` URL (the server's fetch rules apply) in one transaction;
        returns the import's result (``rows_imported``, ``rows_skipped``, ``errors`` ...). ``on_error: fail``
        raises ``ImportRejected`` (its ``result`` lists the bad rows) and imports nothing."""
        return transfer.import_file(
            self,
            source,
            format,
            mapping=mapping,
            options=options,
            validation_rules=validation_rules,
            on_error=on_error,
            batch_size=batch_size,
        )

    def to_ray_dataset(self) -> ray.data.Dataset:
        """A Ray Dataset over the committed rows, one block per shard, without passing through this process."""
        import ray.data

        version = self._version()
        coordinator = self.db.coordinator
        refs = [
            coordinator.host(s.table_id, s.shard).scan.remote(s, st.version)
            for s, st in zip(version.specs, version.states, strict=True)
        ]
        return ray.data.from_arrow_refs(refs)

    # -- plumbing -------------------------------------------------------------------------------------------
    def _version(self) -> Version:
        return Version(*self.db._resolve(self.name))

    def _reader(self) -> Reader:
        return Reader(self.db.coordinator, self.db.derived, self.db.settings.max_query_rows)
