"""Running a ``ReadPlan`` over one shard's rows: pin, compute, filter, order, limit and project, or reduce them to
a partial aggregate that the reader merges across shards (``engine.physical.reader``).

Pure over an Arrow table, like the kernels it uses (``engine.physical.shard_rows``); ``Shard.read`` hands it the
rows of the version asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.expr.aggregates import partial_aggregate
from engine.logical.plan import ColumnKernel, ReadPlan, ReadResult
from engine.logical.query import sort_keys
from engine.model.columns import ARG
from engine.physical.shard_rows import key_positions, take_rows, with_kernels


def read_table(
    table: pa.Table,
    plan: ReadPlan,
    key: str,
    key_values: np.ndarray | None = None,
    kernels: Sequence[ColumnKernel] = (),
) -> ReadResult:
    """Filter, order, limit and project one shard's rows (computing the expression columns that are not stored,
    and ``plan.derive``'s, first). With ``plan.partial`` the result is that partial aggregate of the rows."""
    if plan.keys is not None:  # the filter pins the key: look at those rows only
        table = take_rows(table, key_positions(table, key, plan.keys, key_values))
    table = with_kernels(table, kernels, stored=False)[0]
    if plan.derive:
        table = with_kernels(table, [*kernels, *plan.derive], stored=False)[0]
    if plan.partial is not None:
        function, groups = plan.partial
        if plan.where is not None:
            table = table.filter(plan.where)
        frame = pl.from_arrow(table.select([*groups, ARG]))
        assert isinstance(frame, pl.DataFrame)
        return ReadResult(partial_aggregate(frame, function, groups).to_arrow(), table.num_rows)
    if plan.where is not None:
        table = table.filter(plan.where)
    matched = table.num_rows
    if plan.count_only:
        return ReadResult(None, matched)
    if plan.order_by:
        if plan.limit is not None and plan.limit < matched:
            idx = pc.select_k_unstable(table, plan.limit, list(plan.order_by)) if _no_nulls(table, plan) else None
            table = table.take(idx) if idx is not None else _sorted(table, plan).slice(0, plan.limit)
            table = _sorted(table, plan)
        else:
            table = _sorted(table, plan)
    if plan.limit is not None:
        table = table.slice(0, plan.limit)
    if plan.columns is not None:
        table = table.select(list(plan.columns))
    return ReadResult(table, matched)


def _no_nulls(table: pa.Table, plan: ReadPlan) -> bool:
    return all(table[c].null_count == 0 for c, _ in plan.order_by)


def _sorted(table: pa.Table, plan: ReadPlan) -> pa.Table:
    return table.take(pc.sort_indices(table, sort_keys(plan.order_by)))
