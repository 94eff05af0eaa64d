"""Applying one row operation of a stage (insert, upsert, update, delete, recompute of some rows) to its working
table, in memory.

Each operation returns the new working table, the rows it removed and its result. Rows it adds or changes join the
table's tail without a Lance address and with their stored computed columns still to compute: the shard makes the
stage's net effect durable once, after its last operation (``Shard._persist``). What the operations read and change
besides the table (the row ids handed out, the working table's key index) is a ``WriteState`` the shard keeps for
the stage, so these are functions of their arguments, tested without Ray or storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import DuplicateKey, InvalidValue
from engine.logical.hashing import hash_columns
from engine.logical.plan import ColumnKernel, Delete, Insert, OpResult, Recompute, ShardOp, ShardSpec, Update, Upsert
from engine.model.schema import ROW_ID
from engine.physical.keyindex import KeyIndex, duplicated
from engine.physical.shard_rows import as_working, evaluate, mask, matching, split, with_kernels
from engine.storage.lance import ROW_ADDRESS

Applied = tuple[pa.Table, pa.Table | None, OpResult]  # the working table, the rows removed, the result


@dataclass
class WriteState:
    """What a stage's operations read and change beside its working table.

    ``spec`` is the shard's (its key, its table's name, its place among the table's shards); ``schema`` and
    ``computed`` are those of the spec the stage writes with, which differ from the shard's while a computed column
    is being added or dropped.
    """

    spec: ShardSpec
    schema: pa.Schema
    computed: tuple[ColumnKernel, ...]
    next_row_id: int  # the next row id to hand out (tables without a primary key)
    keys: KeyIndex | None  # the working table's key index; None: build it when next needed
    # the single integer key column of a table as numpy when ``keys`` pins it (the shard caches it), else None
    pinned_keys: Callable[[pa.Table, pa.Array | None], np.ndarray | None]


def apply(work: pa.Table, op: ShardOp, state: WriteState) -> Applied:
    """Apply one operation to the working table, in memory: returns it, the rows it removed, the result.

    New and changed rows join the table without an address; ``Shard._persist`` writes them once per stage.
    """
    if isinstance(op, Insert):
        return _insert(work, op, state)
    if isinstance(op, Upsert):
        return _upsert(work, op, state)
    if isinstance(op, Delete):
        return _delete(work, op, state)
    if isinstance(op, Update):
        return _update(work, op, state)
    if isinstance(op, Recompute):  # on some rows: they are rewritten, so _persist computes them afresh
        hit = mask(work, op.where)
        n = pc.sum(hit).as_py() or 0
        matched = work.filter(hit)
        return pa.concat_tables([work.filter(pc.invert(hit)), _unwritten(matched, state)]), matched, OpResult(n)
    raise TypeError(f"unknown shard operation {op!r}")


def _insert(work: pa.Table, op: Insert, state: WriteState) -> Applied:
    rows, spec = op.rows, state.spec
    assert isinstance(rows, pa.Table), "the host maps a spooled insert's rows before it applies them"
    if rows.num_rows == 0:
        return work, None, OpResult(0, rows if op.return_rows else None)
    if spec.assigns_row_ids:
        ids = (state.next_row_id + np.arange(rows.num_rows, dtype=np.int64)) * spec.shards + spec.shard
        rows = rows.set_column(rows.schema.get_field_index(ROW_ID), ROW_ID, pa.array(ids, pa.int64()))
        state.next_row_id += rows.num_rows
    else:
        _check_unique(work, rows, state)
    return (
        pa.concat_tables([work, _unwritten(rows, state)]),
        None,
        OpResult(rows.num_rows, _returned(rows, op, state)),
    )


def _check_unique(work: pa.Table, rows: pa.Table, state: WriteState) -> None:
    """Raise DuplicateKey if a key of ``rows`` repeats within them or exists in ``work``."""
    key = list(state.spec.key)
    hashes = hash_columns([rows[k] for k in key])
    ordered = np.sort(hashes)
    index = _working_keys(work, state)
    suspects = index.maybe_contains(hashes)
    repeated = duplicated(ordered)
    if len(repeated):
        suspects |= np.isin(hashes, repeated)
    if suspects.any():
        candidates = rows.filter(pa.array(suspects)).select(key)
        grouped = candidates.group_by(key).aggregate([([], "count_all")])
        dups = grouped.filter(pc.field("count_all") > 1).select(key)
        if dups.num_rows == 0:
            dups = work.select(key).join(candidates, key, join_type="inner")
        if dups.num_rows:
            values = dups.to_pylist()
            raise DuplicateKey(state.spec.table, [v[key[0]] if len(key) == 1 else tuple(v.values()) for v in values])
    state.keys = index.add(ordered, presorted=True)


def _working_keys(work: pa.Table, state: WriteState) -> KeyIndex:
    """The key index of ``work`` (KeyIndex updates copy on write, so the committed index stays intact)."""
    if state.keys is None:
        state.keys = _key_index(work, state.spec)
    assert state.keys is not None
    return state.keys


def _key_index(table: pa.Table, spec: ShardSpec) -> KeyIndex | None:
    """Tables with a primary key keep a hash index of it, for insert's duplicate check."""
    if spec.assigns_row_ids:
        return None
    return KeyIndex.of([table[k] for k in spec.key])


def _upsert(work: pa.Table, op: Upsert, state: WriteState) -> Applied:
    rows = op.rows
    if rows.num_rows == 0:
        return work, None, OpResult(0, rows if op.return_rows else None)
    last = _last_per_key(rows, state.spec.key)
    kept, replaced = split(work, np.flatnonzero(_key_in(work, last, state.spec.key).to_numpy(zero_copy_only=False)))
    state.keys = None  # keys changed in a way the index does not track: rebuild it when next needed
    return (
        pa.concat_tables([kept, _unwritten(last, state)]),
        replaced,
        OpResult(rows.num_rows, _returned(last, op, state)),
    )


def _last_per_key(rows: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """Within one upsert the last row for a key wins (as if applied one by one)."""
    idx = rows.append_column("_i", pa.array(np.arange(rows.num_rows))).group_by(list(key)).aggregate([("_i", "max")])
    if idx.num_rows == rows.num_rows:
        return rows
    return rows.take(np.sort(idx["_i_max"].to_numpy()))


def _key_in(work: pa.Table, rows: pa.Table, key: tuple[str, ...]) -> pa.ChunkedArray | pa.Array:
    if len(key) == 1:
        return pc.is_in(work[key[0]], value_set=rows[key[0]].combine_chunks())
    marker = rows.select(list(key)).append_column("_hit", pa.array(np.ones(rows.num_rows, bool)))
    joined = work.select(list(key)).append_column("_pos", pa.array(np.arange(work.num_rows))).join(marker, list(key))
    hit = np.zeros(work.num_rows, bool)
    hit[joined.filter(pc.field("_hit"))["_pos"].to_numpy()] = True
    return pa.array(hit)


def _delete(work: pa.Table, op: Delete, state: WriteState) -> Applied:
    key = state.spec.key
    positions = matching(work, op.where, key[0], op.keys, state.pinned_keys(work, op.keys))
    n = len(positions)
    if n == 0:
        return work, None, OpResult(0)
    kept, gone = split(work, positions)
    if state.keys is not None:  # drop the deleted keys rather than rebuilding the index later
        keys = gone.select(list(key))
        state.keys = state.keys.remove(hash_columns([keys[k] for k in key]))
    return kept, gone, OpResult(n)


def _update(work: pa.Table, op: Update, state: WriteState) -> Applied:
    positions = matching(work, op.where, state.spec.key[0], op.keys, state.pinned_keys(work, op.keys))
    n = len(positions)
    if n == 0:
        return work, None, OpResult(0)
    kept, matched = split(work, positions)
    try:
        values = evaluate(matched, dict(op.set))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # overflow, division by zero ...
        raise InvalidValue(f"set: computing the new values failed: {exc}", field="set") from None
    updated = matched
    for name, _ in op.set:
        target = updated.schema.field(name).type
        try:
            column = pc.cast(values[name], target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidValue(
                f"set.{name}: cannot store the new value as {target}: {exc}", field=f"set.{name}"
            ) from exc
        updated = updated.set_column(updated.schema.get_field_index(name), name, column)
    return pa.concat_tables([kept, _unwritten(updated, state)]), matched, OpResult(n)


def _unwritten(rows: pa.Table, state: WriteState) -> pa.Table:
    """``rows`` as new rows of the stage's working table: no Lance address yet, stored computed columns still to
    compute (``Shard._persist`` does, once per stage)."""
    return as_working(rows, state.schema, pa.nulls(rows.num_rows, pa.uint64()))


def _returned(rows: pa.Table, op: Insert | Upsert, state: WriteState) -> pa.Table | None:
    """Rows as a write sends them back: with every computed expression column (only when asked for)."""
    if not op.return_rows:
        return None
    if not state.computed:
        return rows
    stored = with_kernels(_unwritten(rows, state).drop_columns([ROW_ADDRESS]), state.computed, stored=True)[0]
    return with_kernels(stored, state.computed, stored=False)[0]
