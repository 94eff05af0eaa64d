"""One shard: its committed rows held as an Arrow table, its durable copy in a Lance dataset and the shard log.

Pure logic around ``engine.storage.lance``: no Ray here, so it is tested directly. The host actor serialises calls
(``engine.physical.host``). Life of a write:

    stage(txn, base, ops)   apply ops to a working copy; a small write becomes a delta for the catalog to log,
                            a larger one (or a fold of the pending deltas) a new, not yet named Lance version
    commit(txn)             the catalog named the new version: it becomes the shard's committed state
    abort(txn)              it did not: roll Lance's main line back to the committed base (if it was written)

A stage runs under its writer's slot grant, which the host may revoke (a lease that ran out); ``stage``'s ``guard``
wraps every Lance commit it makes, so a stage whose grant was revoked cannot write Lance (the host's guard raises
``LeaseExpired`` and holds off the next grant while a commit is under way).

The shard keeps Lance's main line equal to its committed base between writes, so every write is based on
committed data only; the catalog's compare-and-swap catches the rest. A shard opened with a ``History`` (its
catalog's shard log) numbers its versions itself and logs small writes (``engine.physical.shardlog``); without one, every
write goes to Lance and a version is a Lance version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.acero as ac
import pyarrow.compute as pc
import pyarrow.dataset as pds

from engine.errors import CellError, DuplicateKey, InvalidValue, TesseraError
from engine.expr.aggregates import partial_aggregate
from engine.expr.evaluate import evaluate as evaluate_compiled
from engine.logical.hashing import hash_columns
from engine.logical.plan import (
    AddColumn,
    ColumnKernel,
    Compact,
    Delete,
    DropColumn,
    Insert,
    OpResult,
    ReadPlan,
    ReadResult,
    Recompute,
    ShardOp,
    ShardSpec,
    StageResult,
    Update,
    Upsert,
)
from engine.model.columns import ARG
from engine.model.delta import Delta
from engine.model.schema import ROW_ID
from engine.physical import shardlog
from engine.physical.keyindex import KeyIndex, duplicated
from engine.storage import lance as storage
from engine.storage.lance import ROW_ADDRESS

log = logging.getLogger(__name__)
_MAX_CHUNKS = 32  # past this many chunks, ``_tidy`` merges the small ones
_SMALL_CHUNK = 4096  # appended rows, and slivers between rows cut out close together
_MAX_LARGE_CHUNKS = 256
# In memory each row carries its Lance address as a last, hidden column: writes delete by address.
_ADDRESS = pa.field(ROW_ADDRESS, pa.uint64())
_NONE = np.empty(0, np.uint64)
History = Callable[[int], tuple[int, list[Delta]]]  # version -> its Lance base and the deltas logged since
# Wraps each Lance commit of a stage: raises if the stage may no longer write (see ``engine.physical.host``).
Guard = Callable[[], AbstractContextManager[object]]


@dataclass(frozen=True)
class _Log:
    """Where a version's rows are durable: Lance version ``base`` plus ``pending`` deltas logged since, which
    removed the Lance rows at ``gone`` and handed out the provisional addresses below ``next_virtual``."""

    base: int
    pending: int = 0
    gone: np.ndarray = field(default_factory=lambda: _NONE)
    next_virtual: int = 0


@dataclass
class _Staged:
    txn: str
    version: int
    table: pa.Table
    spec: ShardSpec  # a stage that adds or drops a column brings the table's new spec
    log: _Log


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
    filter copies every row); ``_tidy`` keeps the chunks this leaves in check.
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


def _working(rows: pa.Table, schema: pa.Schema, addresses: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``rows`` as a working table of ``schema`` plus their addresses; a column ``rows`` lacks is null (a stored
    computed column that a version predates, or that a stage has still to compute)."""
    n = rows.num_rows
    columns = [rows[f.name] if f.name in rows.column_names else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays([*columns, addresses], schema=schema.append(_ADDRESS))


def _unwritten(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` as new rows of a working table of ``schema``: no Lance address yet, stored computed columns
    still to compute (``Shard._persist`` does, once per stage)."""
    return _working(rows, schema, pa.nulls(rows.num_rows, pa.uint64()))


def _located(exc: CellError, rows: pa.Table, key: Sequence[str]) -> CellError:
    """The same error, naming the row by its key rather than its position in a shard's batch."""
    if not 0 <= exc.row < rows.num_rows or any(k not in rows.column_names for k in key):
        return exc
    where = ", ".join(f"{k}={rows[k][exc.row].as_py()!r}" for k in key)
    located = CellError(exc.row, exc.reason)
    located.message = f"{exc.reason} (the row with {where})"
    located.args = (located.message,)
    located.fields["key"] = {k: rows[k][exc.row].as_py() for k in key}
    return located


def _alters_column(op: ShardOp) -> bool:
    """Operations on a whole column, which write only that column."""
    return isinstance(op, (AddColumn, DropColumn)) or (isinstance(op, Recompute) and op.everything)


def _addressed(rows: pa.Table, addresses: np.ndarray) -> pa.Table:
    return rows.set_column(rows.schema.get_field_index(ROW_ADDRESS), _ADDRESS, pa.array(addresses, pa.uint64()))


def _tidy(table: pa.Table) -> pa.Table:
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


class Shard:
    def __init__(self, spec: ShardSpec, version: int, history: History | None = None) -> None:
        self.spec = spec
        self.uri = spec.uri
        self.history = history
        self._guard: Guard = nullcontext
        self._load(version)

    def _load(self, version: int) -> None:
        table, self.log = self._read(version)
        # The committed (catalog-named) version and its rows, as one value: readers on other threads of the host
        # take both at once, so they never pair a version with another version's rows (see ``table_at``).
        self._committed: tuple[int, pa.Table] = (version, table)
        self.previous: tuple[int, pa.Table] | None = None
        self.staged: _Staged | None = None
        # The latest Lance version when it holds the committed base (the base, or a restore of it); None when it
        # may hold leftovers of an unfinished write: restore before writing.
        self.head: int | None = self.log.base if storage.latest_version(self.uri) == self.log.base else None
        self.next_row_id = self._next_row_id(self.table)
        self.keys: KeyIndex | None = None  # index of self.table's keys; None: build when next needed
        self._key_cache: tuple[pa.Table, np.ndarray] | None = None
        self._work_keys: KeyIndex | None = None  # during a stage: index of the working table, or None
        self._keys_changed = False

    def _read(self, version: int) -> tuple[pa.Table, _Log]:
        """``version``'s rows in schema order, with their addresses: its Lance base, then the deltas since."""
        base, deltas = (version, []) if self.history is None else self.history(version)
        decoded = [
            (removed, _working(rows, self.spec.schema, rows[ROW_ADDRESS]))
            for removed, rows in map(shardlog.decode, deltas)
        ]
        table = shardlog.replay(self._lance_rows(base), ROW_ADDRESS, decoded)
        gone = np.concatenate([_NONE, *(removed[~shardlog.is_virtual(removed)] for removed, _ in decoded)])
        return _tidy(table), _Log(base, len(deltas), gone, sum(rows.num_rows for _, rows in decoded))

    def _lance_rows(self, version: int) -> pa.Table:
        table = storage.read(self.uri, version, addresses=True)
        return _working(table, self.spec.schema, table[ROW_ADDRESS])

    def _persist(self, work: pa.Table, deleted: list[np.ndarray]) -> tuple[pa.Table, _Log | None, Delta | None]:
        """Make a stage's net effect durable: delete the rows at ``deleted`` addresses, add the new rows.

        Rows a stage added have no address yet; they always form the tail of ``work`` (operations keep the
        order of surviving rows and append their new rows). A small write becomes a delta for the catalog's log,
        its rows taking provisional addresses; a larger one goes to Lance (``_fold``). Returns the table with the
        new rows' addresses, the new log state (None: nothing changed) and the delta to log.
        """
        fresh = work[ROW_ADDRESS].null_count
        if not fresh and not deleted:
            return work, None, None
        keep = work.num_rows - fresh
        new = work.slice(keep)
        assert new[ROW_ADDRESS].null_count == fresh, "new rows are the tail of the working table"
        if fresh:
            new, self._cell_errors = self._computed(new)
        gone = np.concatenate(deleted) if deleted else _NONE
        log = self.log
        if self.history is None or fresh + len(gone) > shardlog.DELTA_ROWS or log.pending >= shardlog.DELTA_CHAIN:
            return (*self._fold(pa.concat_tables([work.slice(0, keep), new]) if fresh else work, gone), None)
        new = _addressed(new, shardlog.provisional(log.next_virtual, fresh))
        lance_gone = gone[~shardlog.is_virtual(gone)]
        changed = _Log(log.base, log.pending + 1, np.concatenate([log.gone, lance_gone]), log.next_virtual + fresh)
        return pa.concat_tables([work.slice(0, keep), new]), changed, shardlog.encode(gone, new)

    def _fold(self, work: pa.Table, gone: np.ndarray = _NONE) -> tuple[pa.Table, _Log]:
        """One Lance commit of all Lance lacks of ``work``: the pending deltas and the write that removed the rows
        at ``gone`` and added the rows without an address. Every row of ``work`` then has a Lance address."""
        start = shardlog.lance_rows(work[ROW_ADDRESS])
        tail = work.slice(start)
        assert self.head is not None
        try:
            with self._guard():
                version, addresses = storage.rewrite(
                    self.uri,
                    self.head,
                    np.concatenate([self.log.gone, gone[~shardlog.is_virtual(gone)]]),
                    tail.drop_columns([ROW_ADDRESS]) if tail.num_rows else None,
                )
        except BaseException:
            self.head = None  # the commit may or may not have happened: restore before the next write
            raise
        if tail.num_rows:
            work = pa.concat_tables([work.slice(0, start), _addressed(tail, addresses)])
        return work, _Log(version)

    def _folded(self) -> pa.Table:
        """The committed rows, all in Lance: folds the pending deltas first (Lance's main line then holds them)."""
        if not self.log.pending:
            return self.table
        work, log = self._fold(self.table)
        self.head = log.base
        return work

    def _computed(self, rows: pa.Table) -> tuple[pa.Table, int]:
        """``rows`` with their stored computed columns, and how many cells failed. Expression columns that are
        computed when read are checked too when they must not fail (``on_error: abort``): a write that would
        make them fail is refused, rather than every later read."""
        kernels = self._spec.computed
        try:
            rows, errors = with_kernels(rows, kernels, stored=True)
            if any(not k.stored and k.on_error == "abort" for k in kernels):
                with_kernels(rows, kernels, stored=False)
        except CellError as exc:
            raise _located(exc, rows, self.spec.key) from None
        return rows, errors

    def _unwritten(self, rows: pa.Table) -> pa.Table:
        return _unwritten(rows, self._spec.schema)

    def _returned(self, rows: pa.Table, op: Insert | Upsert) -> pa.Table | None:
        """Rows as a write sends them back: with every computed expression column (only when asked for)."""
        if not op.return_rows:
            return None
        if not self._spec.computed:
            return rows
        stored = with_kernels(self._unwritten(rows).drop_columns([ROW_ADDRESS]), self._spec.computed, stored=True)[0]
        return with_kernels(stored, self._spec.computed, stored=False)[0]

    def _index(self, table: pa.Table) -> KeyIndex | None:
        """Tables with a primary key keep a hash index of it, for insert's duplicate check."""
        if self.spec.assigns_row_ids:
            return None
        return KeyIndex.of([table[k] for k in self.spec.key])

    def _next_row_id(self, table: pa.Table) -> int:
        if not self.spec.assigns_row_ids or table.num_rows == 0:
            return 0
        return int(pc.max(table[ROW_ID]).as_py()) // self.spec.shards + 1

    # -- writes ---------------------------------------------------------------------------------------------
    def stage(
        self,
        txn: str,
        base: int | None,
        ops: Sequence[ShardOp],
        spec: ShardSpec | None = None,
        guard: Guard = nullcontext,
    ) -> StageResult:
        """Apply ``ops`` in order on top of the committed version ``base`` (None: whatever is committed here).

        ``spec``: the table's spec as the writer planned it; when a computed column is being added or dropped
        it differs from this shard's, and becomes the shard's spec if the stage commits. ``guard`` wraps each
        Lance commit the stage makes (the host's fence: it raises once the writer's grant was revoked).
        """
        assert self.staged is None, "the host serialises writers"
        self._guard = guard
        if base is not None and base != self.version:
            self._load(base)
        self._spec, self._cell_errors = spec or self.spec, 0
        if self.head is None:
            with guard():
                self.head = storage.restore(self.uri, self.log.base)
        # Key index changes are this stage's alone (an aborted stage's must not reach a later commit).
        self._work_keys, self._keys_changed = self.keys, False
        delta: Delta | None = None
        if any(isinstance(op, Compact) for op in ops):
            assert len(ops) == 1, "compaction is a write of its own"
            head = self.head
            self._folded()
            work, results = self._compact(), [OpResult(0)]
            log = _Log(self.head) if self.head != head else None
        elif len(ops) == 1 and _alters_column(ops[0]):
            head = self.head
            work, lance, result = self._alter(self._folded(), ops[0])
            log, results = (_Log(lance) if lance != head else None), [result]
        else:
            work, deleted, results = self.table, [], []
            for position, op in enumerate(ops):
                try:
                    work, gone, result = self._apply(work, op)
                except TesseraError as exc:
                    exc.op_position = position  # which of ``ops`` failed: a batch maps it to its operation
                    raise
                if gone is not None and gone.num_rows:
                    addresses = gone[ROW_ADDRESS]
                    if addresses.null_count < len(addresses):  # rows this stage added were never written
                        deleted.append(addresses.drop_null().to_numpy())
                results.append(result)
            work, log, delta = self._persist(work, deleted)
            if self._cell_errors and results:
                last = results[-1]
                results[-1] = OpResult(last.rows_affected, last.rows, last.errors + self._cell_errors)
        version = self.version
        if log is not None:
            version = log.base if self.history is None else self.version + 1
            if log.base != self.log.base:
                self.head = None  # until commit or abort says which version Lance's main line holds
        log = log or self.log
        self.staged = _Staged(txn, version, _tidy(work), self._spec, log)
        return StageResult(self.version, version, work.num_rows, tuple(results), log.base, delta)

    def _alter(self, work: pa.Table, op: ShardOp) -> tuple[pa.Table, int, OpResult]:
        """Add, drop or recompute a whole expression column of ``work`` (all in Lance): one Lance commit that
        writes only that column. Returns the table, the Lance version written (or the head) and the result."""
        assert self.head is not None
        table = work.drop_columns([ROW_ADDRESS])
        head = self.head
        try:
            if isinstance(op, DropColumn):
                if op.name not in table.column_names:
                    return work, head, OpResult(0)
                with self._guard():
                    version = storage.drop_column(self.uri, head, op.name)
                return work.drop_columns([op.name]), version, OpResult(0)
            assert isinstance(op, (AddColumn, Recompute))
            kernels = self._spec.computed
            index = next(i for i, k in enumerate(kernels) if k.name == op.name)
            changed, errors, version = {op.name}, 0, head
            for k in kernels[index:]:  # the column, then stored columns that read it (directly or not)
                if k.name != op.name and not (k.stored and changed & k.compiled.columns):
                    continue
                inputs = with_kernels(table, kernels[: kernels.index(k)], stored=False)[0]
                try:
                    values, failed = compute(k, inputs)
                except CellError as exc:
                    raise _located(exc, inputs, self.spec.key) from None
                errors += failed
                changed.add(k.name)
                if not k.stored:
                    continue
                with self._guard():
                    version = storage.put_column(self.uri, version, k.name, values)
                if k.name in work.column_names:
                    work = work.set_column(work.schema.get_field_index(k.name), k.name, values)
                else:
                    work = work.add_column(work.num_columns - 1, k.name, values)
                table = work.drop_columns([ROW_ADDRESS])
        except BaseException:
            self.head = None
            raise
        return work, version, OpResult(work.num_rows, None, errors)

    def _compact(self) -> pa.Table:
        """Rewrite small fragments into large ones. Every address changes, so read the rows back."""
        try:
            with self._guard():
                self.head = storage.compact(self.uri)
        except BaseException:
            self.head = None
            raise
        return self._lance_rows(self.head)

    def commit(self, txn: str) -> None:
        staged = self.staged
        if staged is None or staged.txn != txn:
            return
        if staged.log.base != self.log.base:  # Lance was written: its head is the new base
            self.head = staged.log.base
        # Readers look in ``staged``, then ``_committed``, then ``previous`` (``table_at``): each step below keeps
        # both versions findable in memory at every instant, and each assignment is a single, atomic store.
        self.previous = self._committed
        self._committed = (staged.version, staged.table)
        self.log, self.staged = staged.log, None
        if staged.spec != self.spec:
            self.spec, self._key_cache = staged.spec, None
        if self._keys_changed:
            self.keys = self._work_keys

    def abort(self, txn: str) -> None:
        staged = self.staged
        if staged is None or staged.txn != txn:
            return
        self.staged = None
        self._work_keys, self._keys_changed = None, False
        if staged.log.base != self.log.base or self.head is None:
            self._rollback()

    def _rollback(self) -> None:
        try:
            self.head = storage.restore(self.uri, self.log.base)
        except Exception:  # the next stage retries the restore
            log.exception("restore of %s to version %s failed", self.uri, self.log.base)
            self.head = None

    def _apply(self, work: pa.Table, op: ShardOp) -> tuple[pa.Table, pa.Table | None, OpResult]:
        """Apply one operation to the working table, in memory: returns it, the rows it removed, the result.

        New and changed rows join the table without an address; ``_persist`` writes them once per stage.
        """
        if isinstance(op, Insert):
            return self._insert(work, op)
        if isinstance(op, Upsert):
            return self._upsert(work, op)
        if isinstance(op, Delete):
            return self._delete(work, op)
        if isinstance(op, Update):
            return self._update(work, op)
        if isinstance(op, Recompute):  # on some rows: they are rewritten, so _persist computes them afresh
            hit = mask(work, op.where)
            n = pc.sum(hit).as_py() or 0
            matched = work.filter(hit)
            return pa.concat_tables([work.filter(pc.invert(hit)), self._unwritten(matched)]), matched, OpResult(n)
        raise TypeError(f"unknown shard operation {op!r}")

    def _insert(self, work: pa.Table, op: Insert) -> tuple[pa.Table, pa.Table | None, OpResult]:
        rows = op.rows
        if rows.num_rows == 0:
            return work, None, OpResult(0, rows if op.return_rows else None)
        if self.spec.assigns_row_ids:
            ids = (self.next_row_id + np.arange(rows.num_rows, dtype=np.int64)) * self.spec.shards + self.spec.shard
            rows = rows.set_column(rows.schema.get_field_index(ROW_ID), ROW_ID, pa.array(ids, pa.int64()))
        else:
            self._check_unique(work, rows)
        if self.spec.assigns_row_ids:
            self.next_row_id += rows.num_rows
        return (
            pa.concat_tables([work, self._unwritten(rows)]),
            None,
            OpResult(rows.num_rows, self._returned(rows, op)),
        )

    def _check_unique(self, work: pa.Table, rows: pa.Table) -> None:
        """Raise DuplicateKey if a key of ``rows`` repeats within them or exists in ``work``."""
        key = list(self.spec.key)
        hashes = hash_columns([rows[k] for k in key])
        ordered = np.sort(hashes)
        index = self._working_keys(work)
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
                raise DuplicateKey(self.spec.table, [v[key[0]] if len(key) == 1 else tuple(v.values()) for v in values])
        self._work_keys = index.add(ordered, presorted=True)

    def _working_keys(self, work: pa.Table) -> KeyIndex:
        """The key index of ``work`` (KeyIndex updates copy on write, so the committed index stays intact)."""
        if self._work_keys is None:
            self._work_keys = self._index(work)
        assert self._work_keys is not None
        self._keys_changed = True
        return self._work_keys

    def _forget_keys(self) -> None:
        """An operation changed keys in a way the index does not track: rebuild it when next needed."""
        self._work_keys, self._keys_changed = None, True

    def _upsert(self, work: pa.Table, op: Upsert) -> tuple[pa.Table, pa.Table | None, OpResult]:
        rows = op.rows
        if rows.num_rows == 0:
            return work, None, OpResult(0, rows if op.return_rows else None)
        last = self._last_per_key(rows)
        kept, replaced = split(work, np.flatnonzero(self._key_in(work, last).to_numpy(zero_copy_only=False)))
        self._forget_keys()
        return (
            pa.concat_tables([kept, self._unwritten(last)]),
            replaced,
            OpResult(rows.num_rows, self._returned(last, op)),
        )

    def _last_per_key(self, rows: pa.Table) -> pa.Table:
        """Within one upsert the last row for a key wins (as if applied one by one)."""
        key = list(self.spec.key)
        idx = rows.append_column("_i", pa.array(np.arange(rows.num_rows))).group_by(key).aggregate([("_i", "max")])
        if idx.num_rows == rows.num_rows:
            return rows
        return rows.take(np.sort(idx["_i_max"].to_numpy()))

    def _key_in(self, work: pa.Table, rows: pa.Table) -> pa.ChunkedArray | pa.Array:
        key = self.spec.key
        if len(key) == 1:
            return pc.is_in(work[key[0]], value_set=rows[key[0]].combine_chunks())
        marker = rows.select(list(key)).append_column("_hit", pa.array(np.ones(rows.num_rows, bool)))
        joined = (
            work.select(list(key)).append_column("_pos", pa.array(np.arange(work.num_rows))).join(marker, list(key))
        )
        hit = np.zeros(work.num_rows, bool)
        hit[joined.filter(pc.field("_hit"))["_pos"].to_numpy()] = True
        return pa.array(hit)

    def _delete(self, work: pa.Table, op: Delete) -> tuple[pa.Table, pa.Table | None, OpResult]:
        positions = matching(work, op.where, self.spec.key[0], op.keys, self._pinned_keys(work, op.keys))
        n = len(positions)
        if n == 0:
            return work, None, OpResult(0)
        kept, gone = split(work, positions)
        keys = gone.select(list(self.spec.key))
        if self._work_keys is not None:  # drop the deleted keys rather than rebuilding the index later
            self._work_keys = self._work_keys.remove(hash_columns([keys[k] for k in self.spec.key]))
            self._keys_changed = True
        else:
            self._forget_keys()
        return kept, gone, OpResult(n)

    def _update(self, work: pa.Table, op: Update) -> tuple[pa.Table, pa.Table | None, OpResult]:
        positions = matching(work, op.where, self.spec.key[0], op.keys, self._pinned_keys(work, op.keys))
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
        return pa.concat_tables([kept, self._unwritten(updated)]), matched, OpResult(n)

    # -- reads ----------------------------------------------------------------------------------------------
    def rows_at(self, version: int, kernels: Sequence[ColumnKernel] | None = None) -> pa.Table:
        """All rows of ``version``, as the user sees them (computed columns that are not stored included).

        ``kernels``: the expression columns as the reader's spec has them (default: this shard's)."""
        table = self.table_at(version).drop_columns([ROW_ADDRESS])
        return with_kernels(table, self.spec.computed if kernels is None else kernels, stored=False)[0]

    @property
    def version(self) -> int:
        """The committed (catalog-named) version."""
        return self._committed[0]

    @property
    def table(self) -> pa.Table:
        """The committed version's rows, with their addresses."""
        return self._committed[1]

    def table_at(self, version: int) -> pa.Table:
        """``version``'s rows with their addresses: from memory when it is a version this shard holds.

        Called on other threads than ``commit``: each attribute is read once, in the order ``commit`` retires them
        (staged, committed, previous), so a version is always paired with its own rows and found in memory."""
        staged = self.staged
        if staged is not None and version == staged.version:
            return staged.table  # committed in the catalog; our commit() call is on its way
        committed_version, table = self._committed
        if version == committed_version:
            return table
        previous = self.previous
        if previous is not None and version == previous[0]:
            return previous[1]
        return self._read(version)[0]

    def read(self, version: int, plan: ReadPlan, kernels: Sequence[ColumnKernel] | None = None) -> ReadResult:
        table = self.table_at(version)
        key_values = self._pinned_keys(table, plan.keys)
        kernels = self.spec.computed if kernels is None else kernels
        result = read_table(table, plan, self.spec.key[0], key_values, kernels)
        if result.table is not None and ROW_ADDRESS in result.table.column_names:
            return ReadResult(result.table.drop_columns([ROW_ADDRESS]), result.matched, result.extra)
        return result

    def _pinned_keys(self, table: pa.Table, keys: pa.Array | None) -> np.ndarray | None:
        return self._key_values(table) if keys is not None else None

    def _key_values(self, table: pa.Table) -> np.ndarray | None:
        """The single integer key column of ``table`` as numpy, cached per table: point reads and writes compare
        it with numpy (0.2 ms a million rows, Arrow's equal + indices_nonzero 1.2 ms; the copy out of a table of
        many chunks 0.3 ms). None for other keys."""
        if len(self.spec.key) != 1 or not pa.types.is_integer(table.schema.field(self.spec.key[0]).type):
            return None
        cached = self._key_cache
        if cached is None or cached[0] is not table:
            cached = (table, table[self.spec.key[0]].to_numpy())
            self._key_cache = cached
        return cached[1]

    # -- maintenance ----------------------------------------------------------------------------------------
    def needs_compaction(self, min_fragments: int) -> bool:
        """True when the shard has deltas to fold into Lance, or enough small fragments to be worth compacting."""
        if self.staged is not None:
            return False
        return self.log.pending > 0 or storage.fragment_count(self.uri, self.log.base) >= min_fragments

    def cleanup(self, before: int) -> int:
        """Delete the Lance versions below ``before``, which no version the catalog keeps is built on (only when
        nothing is staged and Lance's latest version is the committed base)."""
        if self.staged is not None or self.head != self.log.base or storage.latest_version(self.uri) != self.head:
            return 0
        return storage.cleanup(self.uri, min(before, self.log.base))


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


def sort_keys(order_by: tuple[tuple[str, str], ...]) -> list[tuple[str, str, str]]:
    """Arrow sort keys with nulls last, whatever the direction."""
    return [(c, d, "at_end") for c, d in order_by]
