"""Every matching row of one table version, batch by batch, in bounded memory: what streams and exports read.

Each shard that may hold matching rows runs the read once (filter, order, limit) and keeps its result as a cursor
(``ShardHost.open_cursor``); the scan fetches it in pages of about ``page_bytes``, the next page of a shard asked
for while the current one is consumed. Pages are chained shard after shard, or, with an ``order_by``, merged:
all shards' pages stay sorted, so a merge round may emit every buffered row up to the smallest "last row" of a
shard that has more to send (no later row of any shard sorts before it).

The read is of one table version from its first page to its last, whatever writers do meanwhile: the cursors hold
that version's rows. Memory held here: one page per shard, plus the page being fetched; a closed scan (or one
whose consumer went away) closes its cursors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidRequest
from engine.logical.derived import with_values
from engine.logical.plan import ReadPlan
from engine.logical.query import Order, QueryPlan, empty, in_order, plan_query, sort_keys
from engine.model.schema import TableSchema
from engine.model.types import mark_json
from engine.physical.coordinator import Coordinator, resolve
from engine.physical.reader import Reader, Version

PAGE_BYTES = 8 << 20
_SHARD, _LAST = "__scan_shard", "__scan_last"


@dataclass
class _Cursor:
    host: Any
    cursor: str
    rows: int
    page_rows: int
    next_start: int = 0
    pending: Any = None  # the ObjectRef of the page being fetched

    def more(self) -> bool:
        return self.next_start < self.rows

    def prefetch(self) -> None:
        if self.pending is None and self.more():
            self.pending = self.host.fetch.remote(self.cursor, self.next_start, self.page_rows)

    def page(self) -> pa.Table:
        self.prefetch()
        ref, self.pending = self.pending, None
        self.next_start += self.page_rows
        table: pa.Table = resolve(ref)
        self.prefetch()
        return table


def plan_scan(
    schema: TableSchema,
    shards: int,
    select: Sequence[str] | None = None,
    where: Any = None,
    order_by: Sequence[Any] | None = None,
    limit: int | None = None,
) -> QueryPlan:
    """The query a scan runs, checked (columns, where, order_by, limit): InvalidRequest naming what is wrong."""
    plan = plan_query(schema, shards, select, where, order_by, limit)
    if plan.derived_order:
        raise InvalidRequest(
            f"order_by: a stream or export orders by row values; '{plan.derived_order[0]}' is an aggregate or "
            "window column",
            field="order_by",
        )
    return plan


class Scan:
    """An iterator of record batches in the output ``schema``; ``close()`` (or the end) releases the cursors."""

    def __init__(
        self,
        coordinator: Coordinator,
        reader: Reader,
        version: Version,
        select: Sequence[str] | None = None,
        where: Any = None,
        order_by: Sequence[Any] | None = None,
        limit: int | None = None,
        page_bytes: int = PAGE_BYTES,
    ) -> None:
        schema = version.record.schema
        plan = plan_scan(schema, version.record.shards, select, where, order_by, limit)
        found, self._attach = reader.route(version, plan)
        self._select = plan.select
        self._order: Order = plan.order
        self._limit = limit
        read = ReadPlan(plan.fetch, found.where, plan.order, plan.top, keys=found.keys)
        self._schema = schema
        fetched = empty(schema) if plan.fetch is None else empty(schema).select(list(plan.fetch))
        self.schema = mark_json(self._finish(fetched).schema, schema.json_columns)
        self._cursors: list[_Cursor] = []
        try:
            refs = [
                (host, host.open_cursor.remote(version.specs[i], version.states[i].version, read))
                for i in found.targets
                for host in [coordinator.host(version.specs[i].table_id, version.specs[i].shard)]
            ]
            for host, ref in refs:
                cursor, rows, nbytes = resolve(ref)
                page_rows = max(1, int(page_bytes * rows / nbytes)) if nbytes else max(rows, 1)
                self._cursors.append(_Cursor(host, cursor, rows, page_rows))
            for c in self._cursors:
                c.prefetch()
        except BaseException:
            self.close()
            raise
        self.rows = sum(c.rows for c in self._cursors)  # before the overall limit
        self._batches = self._run()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self._batches

    def __next__(self) -> pa.RecordBatch:
        return next(self._batches)

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the cursors (without waiting for the hosts); safe from another thread than the reader's."""
        with contextlib.suppress(ValueError):  # the reader's thread is inside it: its next fetch finds no cursor
            self._batches.close() if hasattr(self, "_batches") else None
        for c in self._cursors:
            c.host.close_cursor.remote(c.cursor)
        self._cursors = []

    # -- steps ----------------------------------------------------------------------------------------------------
    def _run(self) -> Generator[pa.RecordBatch, None, None]:
        left = self._limit
        pages = self._merged() if self._order and len(self._cursors) > 1 else self._chained()
        try:
            for table in pages:
                if left is not None:
                    table = table.slice(0, left)
                    left -= table.num_rows
                if table.num_rows:
                    yield from self._finish(table).to_batches()
                if left == 0:
                    return
        finally:
            for c in self._cursors:
                c.host.close_cursor.remote(c.cursor)
            self._cursors = []

    def _finish(self, rows: pa.Table) -> pa.Table:
        rows = with_values(rows, [v for v in self._attach if v[0].name not in rows.column_names])
        names = list(self._select) if self._select is not None else in_order(self._schema, rows.column_names)
        rows = rows.select(names)
        return pa.Table.from_arrays(rows.columns, schema=self.schema) if hasattr(self, "schema") else rows

    def _chained(self) -> Iterator[pa.Table]:
        for c in self._cursors:
            while c.more():
                yield c.page()

    def _merged(self) -> Iterator[pa.Table]:
        """Sorted pages of every shard merged into one order (see the module's docstring)."""
        carry: pa.Table | None = None
        keys = sort_keys(self._order)
        fresh = list(self._cursors)
        while True:
            pages = [carry] if carry is not None else []
            for c in fresh:
                if c.more():
                    index = self._cursors.index(c)
                    page = c.page()
                    last = [False] * page.num_rows
                    if c.more() and page.num_rows:
                        last[-1] = True
                    pages.append(
                        page.append_column(_SHARD, pa.array([index] * page.num_rows, pa.int32())).append_column(
                            _LAST, pa.array(last, pa.bool_())
                        )
                    )
            pages = [p for p in pages if p.num_rows]
            if not pages:
                return
            buffered = pa.concat_tables(pages, promote_options="none")
            buffered = buffered.take(pc.sort_indices(buffered, keys))
            marks = buffered[_LAST]
            if not pc.any(marks).as_py():  # no shard has more to send: everything left, in order
                yield buffered.drop_columns([_SHARD, _LAST])
                return
            stop = pc.index(marks, True).as_py()
            shard = buffered[_SHARD][stop].as_py()
            yield buffered.slice(0, stop + 1).drop_columns([_SHARD, _LAST])
            carry = buffered.slice(stop + 1)
            fresh = [self._cursors[shard]]


__all__ = ["PAGE_BYTES", "Scan", "plan_scan"]
