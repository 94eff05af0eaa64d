"""Aggregate and window column values for a table version, computed from the shards and cached.

Aggregates: each shard returns a partial per group for its committed version (``ReadPlan.partial``); partials
are cached per shard version, so after a write only the shards it touched are asked again, and merged once.
Windows: the key, partition, order and argument columns of every shard are gathered and computed at once
(a partition may span shards), cached per table version. Values reach rows by key (windows) or by group
(aggregates): ``engine.logical.derived``, which also narrows them for filters and orders.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from engine.expr.aggregates import merge_partials, window_values
from engine.expr.compiler import compile_expression
from engine.expr.udfs import functions
from engine.logical.derived import Values
from engine.logical.plan import ColumnKernel, ReadPlan, ShardSpec
from engine.model.columns import ARG, VALUE, ComputedColumn, group_by, parse_call, window_spec
from engine.physical.coordinator import Coordinator
from engine.storage.records import ShardState, TableRecord

_MAX_CACHED = 64


class DerivedCache:
    """Values per (table, column, table version); aggregate partials per shard version. Thread-safe."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str, tuple[int, ...]], Values] = {}
        self._partials: dict[tuple[str, str, int, int], pl.DataFrame] = {}
        self._lock = threading.Lock()

    def values(
        self,
        coordinator: Coordinator,
        record: TableRecord,
        states: Sequence[ShardState],
        specs: Sequence[ShardSpec],
        column: ComputedColumn,
        *,
        fresh: bool = False,
    ) -> Values:
        """The column's values at the table version ``states`` names (``fresh``: compute again, not cached)."""
        versions = tuple(s.version for s in states)
        key = (record.id, _tag(column), versions)
        if column.cache_results and not fresh:
            with self._lock:
                hit = self._values.get(key)
            if hit is not None:
                return hit
        if column.column_type == "aggregate":
            on, frame = self._aggregate(coordinator, record, versions, specs, column, fresh)
        else:
            on, frame = _window(coordinator, record, versions, specs, column)
        values = Values(on, frame)
        if column.cache_results:
            with self._lock:
                if len(self._values) >= _MAX_CACHED:
                    self._values.pop(next(iter(self._values)))
                self._values[key] = values
        return values

    def _aggregate(
        self,
        coordinator: Coordinator,
        record: TableRecord,
        versions: tuple[int, ...],
        specs: Sequence[ShardSpec],
        column: ComputedColumn,
        fresh: bool,
    ) -> tuple[tuple[str, ...], pl.DataFrame]:
        call = parse_call(column.expression, "aggregate")
        groups = group_by(column.parameters)
        tag = _tag(column)
        partials: list[pl.DataFrame | None] = [None] * len(specs)
        missing = []
        with self._lock:
            for i, v in enumerate(versions):
                partials[i] = None if fresh else self._partials.get((record.id, tag, i, v))
                if partials[i] is None:
                    missing.append(i)
        if missing:
            plan = ReadPlan(derive=_argument(record, call.arg, column), partial=(call.function, groups))
            results = coordinator.read([specs[i] for i in missing], [versions[i] for i in missing], plan)
            with self._lock:
                for i, r in zip(missing, results, strict=True):
                    frame = pl.from_arrow(r.table)
                    assert isinstance(frame, pl.DataFrame)
                    partials[i] = frame
                    if column.cache_results:
                        self._partials[(record.id, tag, i, versions[i])] = frame
                        _trim(self._partials, _MAX_CACHED * 16)
        return groups, merge_partials([p for p in partials if p is not None], call.function, groups)


def _tag(column: ComputedColumn) -> str:
    """What cached values are keyed on: a column dropped and added again with another definition misses."""
    return "\0".join((column.name, column.expression, column.parameters_json))


def _argument(record: TableRecord, arg: str | None, column: ComputedColumn) -> tuple[ColumnKernel, ...]:
    """The kernel computing the argument as column ``ARG`` (``COUNT(*)`` counts a constant)."""
    text = arg if arg is not None else "1"
    compiled = compile_expression(text, record.schema, field="expression", functions=functions(record.schema.udfs))
    return (ColumnKernel(ARG, compiled, column.on_error, stored=False),)


def _window(
    coordinator: Coordinator,
    record: TableRecord,
    versions: tuple[int, ...],
    specs: Sequence[ShardSpec],
    column: ComputedColumn,
) -> tuple[tuple[str, ...], pl.DataFrame]:
    call = parse_call(column.expression, "window")
    spec = window_spec(call, column.parameters)
    key = record.schema.key
    needed = tuple(dict.fromkeys([*key, *spec.partition_by, *(c for c, _ in spec.order_by), ARG]))
    plan = ReadPlan(columns=needed, derive=_argument(record, call.arg, column))
    results = coordinator.read(list(specs), list(versions), plan)
    tables = [r.table for r in results if r.table is not None]
    frame = pl.from_arrow(pa.concat_tables(tables))
    assert isinstance(frame, pl.DataFrame)
    return key, window_values(frame, spec, key, VALUE)


def _trim(cache: dict[Any, Any], size: int) -> None:
    while len(cache) > size:
        cache.pop(next(iter(cache)))
