"""A shard's rows in memory, and the vectorised kernels over them that both writes and reads use.

A shard holds a version's rows as one Arrow table in schema order, each row carrying its Lance address as a last,
hidden column (``ADDRESS``): writes delete by address. The kernels here select rows (``mask``, ``matching``), cut
them out and take them without copying the shard (``split``, ``take_rows``), compute expression columns over them
(``with_kernels``) and keep the chunks that writes leave few (``tidy``). Pure functions over Arrow tables, no Ray
and no storage: ``engine.physical.shard`` holds the state, ``shard_ops`` and ``shard_reads`` call these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.acero as ac
import pyarrow.compute as pc
import pyarrow.dataset as pds

from engine.expr.evaluate import evaluate as evaluate_compiled
from engine.logical.plan import ColumnKernel
from engine.storage.lance import ROW_ADDRESS

_MAX_CHUNKS = 32  # past this many chunks, ``tidy`` merges the small ones
_SMALL_CHUNK = 4096  # appended rows, and slivers between rows cut out close together
_MAX_LARGE_CHUNKS = 256
ADDRESS = pa.field(ROW_ADDRESS, pa.uint64())


def as_working(rows: pa.Table, schema: pa.Schema, addresses: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``rows`` as a working table of ``schema`` plus their addresses; a column ``rows`` lacks is null (a stored
    computed column that a version predates, or that a stage has still to compute)."""
    n = rows.num_rows
    columns = [rows[f.name] if f.name in rows.column_names else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays([*columns, addresses], schema=schema.append(ADDRESS))


def compute(kernel: ColumnKernel, table: pa.Table) -> tuple[pa.ChunkedArray | pa.Array, int]:
    """An expression column's values over ``table`` and how many cells failed (null unless it aborts)."""
    result = evaluate_compiled(kernel.compiled, table, kernel.on_error)
    return result.values, result.errors


def with_kernels(table: pa.Table, kernels: Sequence[ColumnKernel], stored: bool) -> tuple[pa.Table, int]:
    """``table`` with expression columns computed in dependency order: the stored ones (``stored``), or the
    others (for reads). A column the other kind depends on is computed on the way and dropped after."""
    wanted = [k for k in kernels if k.stored == stored]
    if not wanted:
        return table, 0
    needed: set[str] = set()
    for k in reversed(kernels):
        if k.stored == stored or k.name in needed:
            needed |= set(k.compiled.columns)
    errors, temporary = 0, []
    for k in kernels:
        if k.stored != stored and (k.name not in needed or k.name in table.column_names):
            continue
        values, failed = compute(k, table)
        errors += failed
        if k.stored != stored:
            temporary.append(k.name)
        if k.name in table.column_names:
            table = table.set_column(table.schema.get_field_index(k.name), k.name, values)
        else:
            table = table.append_column(k.name, values)
    return (table.drop_columns(temporary) if temporary else table), errors


def evaluate(table: pa.Table, exprs: dict[str, pc.Expression]) -> pa.Table:
    """Evaluate Arrow expressions over a table's rows, vectorised."""
    if table.num_rows > 65_536:
        return pds.dataset(table).to_table(columns=exprs)
    # a point write's rows: a bare Acero projection on this thread (a dataset scan costs 5x more, mostly set-up)
    source = ac.Declaration("table_source", ac.TableSourceNodeOptions(table))
    project = ac.Declaration("project", ac.ProjectNodeOptions(list(exprs.values()), list(exprs)))
    return ac.Declaration.from_sequence([source, project]).to_table(use_threads=False)


def mask(table: pa.Table, where: pc.Expression | None) -> pa.ChunkedArray:
    """True where ``where`` holds; null counts as false (SQL semantics)."""
    if where is None:
        return pa.chunked_array([np.ones(table.num_rows, bool)], pa.bool_())
    return pc.fill_null(evaluate(table, {"m": where})["m"], False)


def key_positions(table: pa.Table, key: str, keys: pa.Array, key_values: np.ndarray | None = None) -> np.ndarray:
    """Positions of the rows whose ``key`` is in ``keys``: one comparison over the key column.

    ``key_values`` is that column as numpy when the caller has it cached: a single-threaded numpy comparison
    avoids waking Arrow's thread pool, which dominates a cold point read.
    """
    if key_values is not None:
        wanted = keys.to_numpy(zero_copy_only=False)
        hit = key_values == wanted[0] if len(wanted) == 1 else np.isin(key_values, wanted)
        return np.flatnonzero(hit)
    column = table[key]
    found = pc.equal(column, keys[0]) if len(keys) == 1 else pc.is_in(column, value_set=keys)
    return pc.indices_nonzero(pc.fill_null(found, False)).to_numpy()


def matching(
    table: pa.Table, where: pc.Expression | None, key: str, keys: pa.Array | None, key_values: np.ndarray | None = None
) -> np.ndarray:
    """Positions (ascending) of the rows ``where`` holds for; when the key is pinned to ``keys`` (and ``where`` is
    what else to check), ``where`` is evaluated on those rows only (``key_values``: see ``key_positions``)."""
    if keys is None:
        return np.flatnonzero(mask(table, where).to_numpy(zero_copy_only=False))
    positions = key_positions(table, key, keys, key_values)
    if len(positions) and where is not None:
        positions = positions[mask(take_rows(table, positions), where).to_numpy(zero_copy_only=False)]
    return positions


def split(table: pa.Table, positions: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """``table`` without the rows at ``positions`` (ascending), and those rows.

    A few rows are cut out with zero-copy slices, so a point write costs the same on a shard of any size (a
    filter copies every row); ``tidy`` keeps the chunks this leaves in check.
    """
    if len(positions) > 64:
        hit = np.zeros(table.num_rows, bool)
        hit[positions] = True
        selected = pa.array(hit)
        return table.filter(pc.invert(selected)), table.filter(selected)
    pieces, start = [], 0
    for p in positions.tolist():
        if p > start:
            pieces.append(table.slice(start, p - start))
        start = p + 1
    if start < table.num_rows:
        pieces.append(table.slice(start))
    kept = pa.concat_tables(pieces) if pieces else table.schema.empty_table()
    return kept, take_rows(table, positions)


def take_rows(table: pa.Table, positions: np.ndarray) -> pa.Table:
    """Rows at ``positions``. Arrow's take on a many-chunk table first concatenates every chunk (O(rows));
    for a few rows, zero-copy one-row slices are O(1) each."""
    if len(positions) > 64:
        return table.take(positions)
    if len(positions) == 0:
        return table.schema.empty_table()
    return pa.concat_tables([table.slice(int(p), 1) for p in positions])


def tidy(table: pa.Table) -> pa.Table:
    """Keep the chunks that writes leave (cut-out rows, appended rows) few enough for reads to stay vectorised:
    runs of small chunks are merged, large chunks are kept as they are (no copy), and only when even those
    pass ``_MAX_LARGE_CHUNKS`` is the whole table rewritten into one chunk."""
    if not table.num_columns or table.column(0).num_chunks <= _MAX_CHUNKS:
        return table
    batches: list[pa.RecordBatch] = []
    run: list[pa.RecordBatch] = []
    for batch in [*table.to_batches(), None]:
        if batch is not None and batch.num_rows < _SMALL_CHUNK:
            run.append(batch)
            continue
        if run:
            batches.extend(pa.Table.from_batches(run, table.schema).combine_chunks().to_batches())
            run = []
        if batch is not None:
            batches.append(batch)
    if len(batches) > _MAX_LARGE_CHUNKS:
        return table.combine_chunks()
    return pa.Table.from_batches(batches, table.schema)
