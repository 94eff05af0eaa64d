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

The shard holds the state and makes it durable; what it does to rows is pure functions over Arrow tables: applying
each operation to a stage's working table (``engine.physical.shard_ops``), running a read plan over a version's rows
(``engine.physical.shard_reads``), and the kernels both use (``engine.physical.shard_rows``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import CellError, TesseraError
from engine.logical.plan import (
    AddColumn,
    ColumnKernel,
    Compact,
    DropColumn,
    OpResult,
    ReadPlan,
    ReadResult,
    Recompute,
    ShardOp,
    ShardSpec,
    StageResult,
)
from engine.model.delta import Delta
from engine.model.schema import ROW_ID
from engine.physical import shardlog
from engine.physical.keyindex import KeyIndex
from engine.physical.shard_ops import WriteState, apply
from engine.physical.shard_reads import read_table
from engine.physical.shard_rows import ADDRESS, as_working, compute, tidy, with_kernels
from engine.storage import lance as storage
from engine.storage.lance import ROW_ADDRESS

log = logging.getLogger(__name__)
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
    keys: KeyIndex | None  # the key index of ``table`` (the committed one if no key changed); None: build when needed


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
    return rows.set_column(rows.schema.get_field_index(ROW_ADDRESS), ADDRESS, pa.array(addresses, pa.uint64()))


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

    def _read(self, version: int) -> tuple[pa.Table, _Log]:
        """``version``'s rows in schema order, with their addresses: its Lance base, then the deltas since."""
        base, deltas = (version, []) if self.history is None else self.history(version)
        decoded = [
            (removed, as_working(rows, self.spec.schema, rows[ROW_ADDRESS]))
            for removed, rows in map(shardlog.decode, deltas)
        ]
        table = shardlog.replay(self._lance_rows(base), ROW_ADDRESS, decoded)
        gone = np.concatenate([_NONE, *(removed[~shardlog.is_virtual(removed)] for removed, _ in decoded)])
        return tidy(table), _Log(base, len(deltas), gone, sum(rows.num_rows for _, rows in decoded))

    def _lance_rows(self, version: int) -> pa.Table:
        table = storage.read(self.uri, version, addresses=True)
        return as_working(table, self.spec.schema, table[ROW_ADDRESS])

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
        keys = self.keys
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
            state = WriteState(
                self.spec, self._spec.schema, self._spec.computed, self.next_row_id, keys, self._pinned_keys
            )
            work, deleted, results = self._apply(ops, state)
            keys = state.keys
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
        self.staged = _Staged(txn, version, tidy(work), self._spec, log, keys)
        return StageResult(self.version, version, work.num_rows, tuple(results), log.base, delta)

    def _apply(self, ops: Sequence[ShardOp], state: WriteState) -> tuple[pa.Table, list[np.ndarray], list[OpResult]]:
        """Apply ``ops`` in order to the committed rows, in memory: returns the working table, the Lance addresses of
        the rows they removed and their results (``engine.physical.shard_ops``)."""
        work, deleted, results = self.table, [], []
        try:
            for position, op in enumerate(ops):
                try:
                    work, gone, result = apply(work, op, state)
                except TesseraError as exc:
                    exc.op_position = position  # which of ``ops`` failed: a batch maps it to its operation
                    raise
                if gone is not None and gone.num_rows:
                    addresses = gone[ROW_ADDRESS]
                    if addresses.null_count < len(addresses):  # rows this stage added were never written
                        deleted.append(addresses.drop_null().to_numpy())
                results.append(result)
        finally:
            self.next_row_id = state.next_row_id  # row ids handed out stay taken, whether or not the stage commits
        return work, deleted, results

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
        self.keys = staged.keys

    def abort(self, txn: str) -> None:
        staged = self.staged
        if staged is None or staged.txn != txn:
            return
        self.staged = None
        if staged.log.base != self.log.base or self.head is None:
            self._rollback()

    def _rollback(self) -> None:
        try:
            self.head = storage.restore(self.uri, self.log.base)
        except Exception:  # the next stage retries the restore
            log.exception("restore of %s to version %s failed", self.uri, self.log.base)
            self.head = None

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
