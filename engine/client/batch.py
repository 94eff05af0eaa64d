"""Batch operations: many inserts, updates, deletes and upserts on any tables, as one transaction.

>>> db.batch([                                                        # doctest: +SKIP
...     {"operation": "update", "table": "accounts", "where": {"id": 1}, "set": {"balance": {"expr": "balance - 10"}}},
...     {"operation": "update", "table": "accounts", "where": {"id": 2}, "set": {"balance": {"expr": "balance + 10"}}},
...     {"operation": "insert", "table": "ledger", "data": {"src": 1, "dst": 2, "amount": 10}},
... ], idempotency_key="transfer-17")

Every operation is validated and planned before anything runs. The shard operations of the whole batch are
grouped per shard in batch order, so a shard applies them one after another and a later operation sees the
effect of an earlier one (a row lives on exactly one shard). ``expect_rows`` is checked after staging and
before the single catalog commit, so a failed expectation leaves nothing behind.

With an Idempotency-Key the key is reserved in the catalog before anything runs (``engine.storage.idempotency``),
so a duplicate that arrives meanwhile is refused (RequestInProgress) instead of running twice. The answer is stored
with the writes: a transaction's in its commit; without a transaction, each operation's commit also stores the
results so far, so a retry after a crash resumes after the operations already committed. A failure on our side
(any EngineError, or a conflict that says "retry") is never stored as the key's answer: the retry runs again.

A client never sees such a failure's cause (a file path, a Lance or Ray message): the operation's ``error`` is a
stable sentence and its ``code`` the error's; ``OperationError.cause`` keeps the exception for the caller's logs.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from engine.errors import (
    CatalogBusy,
    CommitConflict,
    EngineError,
    ExpectationFailed,
    IdempotencyKeyReused,
    IdempotencyRace,
    InvalidRequest,
    LeaseExpired,
    RequestInProgress,
    SandboxUnavailable,
    SchemaChanged,
    ShardUnavailable,
    StorageError,
    TesseraError,
    TooLarge,
)
from engine.logical.batch_plan import BatchPlan, PlannedOperation, Resolved, group, plan_operation
from engine.logical.plan import StageResult
from engine.physical.coordinator import Coordinator, ShardWork
from engine.storage.idempotency import IdempotencyRecord, Reservation

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.storage.records import ShardState, TableRecord

MAX_OPERATIONS = 1000
IDEMPOTENCY_KEY_MAX = 255  # characters
Status = Literal["success", "failed", "rolled_back", "skipped"]
# Failures that say nothing about the request: retrying it may well pass, so they are never a key's answer.
TRANSIENT: tuple[type[TesseraError], ...] = (EngineError, SchemaChanged, LeaseExpired)


@dataclass(frozen=True)
class OperationResult:
    operation: int
    status: Status
    rows_affected: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "status": self.status, "rows_affected": self.rows_affected}


@dataclass(frozen=True)
class OperationError:
    operation: int
    table: str
    operation_type: str
    error: str
    code: str
    # The exception behind it, for the caller's logs: never shown to a client, never stored with a key's answer.
    cause: TesseraError | None = field(default=None, compare=False, repr=False)

    @property
    def transient(self) -> bool:
        return isinstance(self.cause, TRANSIENT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "table": self.table,
            "operation_type": self.operation_type,
            "error": self.error,
            "code": self.code,
        }


@dataclass(frozen=True)
class BatchResult:
    results: tuple[OperationResult, ...]
    errors: tuple[OperationError, ...]
    committed: bool
    execution_time_ms: float

    @property
    def total_operations(self) -> int:
        return len(self.results)

    @property
    def successful(self) -> int:
        return sum(r.status == "success" for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    @property
    def transient(self) -> bool:
        """Some operation failed on our side (a retry may pass): this is not an answer to store under a key."""
        return any(e.transient for e in self.errors)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchResult:
        return cls(
            tuple(OperationResult(**r) for r in d["results"]),
            tuple(OperationError(**e) for e in d["errors"]),
            d["committed"],
            d["execution_time_ms"],
        )

    def to_dict(self, return_results: bool = True) -> dict[str, Any]:
        return {
            "total_operations": self.total_operations,
            "successful": self.successful,
            "failed": self.failed,
            "errors": [e.to_dict() for e in self.errors],
            "results": [r.to_dict() for r in self.results] if return_results else [],
            "execution_time_ms": round(self.execution_time_ms, 3),
            "committed": self.committed,
        }


class BatchCatalog(Protocol):
    """What a batch asks of the catalog: its tables, and its Idempotency-Key's reservation and answer."""

    def read_table(self, name: str) -> tuple[TableRecord, list[ShardState]]: ...
    def reserve_key(self, key: str, request_hash: str, *, ttl_seconds: float, stale_seconds: float) -> Reservation: ...
    def put_record(self, record: IdempotencyRecord) -> None: ...
    def release_key(self, key: str, attempt: str) -> None: ...


@dataclass(frozen=True)
class BatchContext:
    """Everything a batch runs with: no ``Database``, so the batch sees only the collaborators it uses."""

    catalog: BatchCatalog  # reads the tables; reserves, answers and releases Idempotency-Keys
    coordinator: Coordinator  # stages the shard work and commits it in one catalog transaction
    root: str  # the data directory, where the shards' specs point
    max_rows: int  # rows in one batch (``TESSERA_MAX_ROWS_PER_REQUEST``)
    key_ttl_seconds: float  # how long a key's answer is replayed
    stale_seconds: float  # a reservation not written for this long is taken over (the writer lease)

    @classmethod
    def of(cls, catalog: BatchCatalog, coordinator: Coordinator, root: str, settings: Settings) -> BatchContext:
        """The context with the few settings a batch needs taken from ``settings``."""
        return cls(
            catalog,
            coordinator,
            root,
            settings.max_rows_per_request,
            settings.idempotency_ttl_hours * 3600,
            settings.lease_seconds,
        )


def run_batch(
    ctx: BatchContext,
    operations: Sequence[dict[str, Any]],
    *,
    transaction: bool = True,
    continue_on_error: bool = False,
    idempotency_key: str | None = None,
) -> BatchResult:
    """Run ``operations`` in order; see the module docstring and API.md "Batch operations".

    With ``idempotency_key``, a retry with the same key and request returns the first answer without applying
    anything again; the same key with a different request is IdempotencyKeyReused; a retry while the first is
    still running is RequestInProgress.
    """
    _check_size(ctx, operations)
    if idempotency_key is None:
        return _run(ctx, operations, transaction, continue_on_error, None)
    check_idempotency_key(idempotency_key)
    request_hash = _request_hash(operations, transaction, continue_on_error)
    for _ in range(3):
        reservation = ctx.catalog.reserve_key(
            idempotency_key, request_hash, ttl_seconds=ctx.key_ttl_seconds, stale_seconds=ctx.stale_seconds
        )
        if reservation.state == "reused":
            raise IdempotencyKeyReused(idempotency_key)
        if reservation.state == "answered":
            assert reservation.response is not None
            return BatchResult.from_dict(orjson.loads(reservation.response))
        if reservation.state == "running":
            raise RequestInProgress(idempotency_key)
        try:
            return _run_reserved(
                ctx, operations, transaction, continue_on_error, _Attempt(idempotency_key, reservation)
            )
        except IdempotencyRace:
            continue  # this attempt stalled past the bound and another took the key over: look at the key again
    raise RequestInProgress(idempotency_key)


def check_idempotency_key(key: object) -> str:
    """The key, if it can be one: a string of 1 to IDEMPOTENCY_KEY_MAX characters (400 naming the header)."""
    if not isinstance(key, str) or not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
        got = f"{len(key)} characters" if isinstance(key, str) else f"a {type(key).__name__}"
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters long (got {got})",
            field="Idempotency-Key",
        )
    return key


def _request_hash(operations: Any, transaction: bool, continue_on_error: bool) -> str:
    try:
        body = orjson.dumps([operations, transaction, continue_on_error], option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise InvalidRequest(f"an idempotent batch must be JSON data: {exc}", field="operations") from None
    return hashlib.sha256(body).hexdigest()


def _check_size(ctx: BatchContext, operations: Any) -> None:
    """The checks that refuse a request before anything runs (4xx, nothing stored under a key)."""
    if not isinstance(operations, (list, tuple)) or not operations:
        raise InvalidRequest("operations must be a non-empty list", field="operations")
    if len(operations) > MAX_OPERATIONS:
        raise TooLarge(
            f"{len(operations)} operations in one batch; the limit is {MAX_OPERATIONS}", limit=MAX_OPERATIONS
        )
    rows = sum(len(op["data"]) if isinstance(op, dict) and isinstance(op.get("data"), list) else 1 for op in operations)
    if rows > ctx.max_rows:
        raise TooLarge(f"{rows} rows in one batch; the limit is {ctx.max_rows}", limit=ctx.max_rows)


class _Attempt:
    """One run of an idempotent batch under its key's reservation: builds what it stores with its writes."""

    def __init__(self, key: str, reservation: Reservation) -> None:
        self.key = key
        self.token = reservation.attempt
        self.start = time.perf_counter()
        # what an interrupted attempt committed one by one: resume after it
        self.resumed = BatchResult.from_dict(orjson.loads(reservation.response)) if reservation.response else None
        self.stored: BatchResult | None = None  # the answer committed with a transaction's writes

    def answer(self, results: Sequence[OperationResult]) -> IdempotencyRecord:
        """A committed transaction's answer, stored in its commit."""
        self.stored = _result(results, (), True, self.start)
        return self._record(self.stored, final=True)

    def progress(self, results: Sequence[OperationResult], errors: Sequence[OperationError]) -> IdempotencyRecord:
        """The results so far of a batch whose operations commit one by one, stored with each commit."""
        return self._record(_result(results, errors, True, self.start), final=False)

    def _record(self, result: BatchResult, final: bool) -> IdempotencyRecord:
        return IdempotencyRecord(self.key, self.token, orjson.dumps(result.to_dict()).decode(), final)


def _run_reserved(
    ctx: BatchContext,
    operations: Sequence[dict[str, Any]],
    transaction: bool,
    continue_on_error: bool,
    attempt: _Attempt,
) -> BatchResult:
    """Run under the reservation, then answer the key, or give it up when the result is not an answer."""
    try:
        result = _run(ctx, operations, transaction, continue_on_error, attempt)
    except IdempotencyRace:
        raise
    except BaseException:
        ctx.catalog.release_key(attempt.key, attempt.token)
        raise
    if result.transient:
        ctx.catalog.release_key(attempt.key, attempt.token)
    elif result is not attempt.stored:  # not committed with the writes: store it now
        # IdempotencyRace: another attempt took over and answers retries; what this one did is still its answer
        with contextlib.suppress(IdempotencyRace):
            ctx.catalog.put_record(
                IdempotencyRecord(attempt.key, attempt.token, orjson.dumps(result.to_dict()).decode())
            )
    return result


def _result(
    results: Sequence[OperationResult], errors: Sequence[OperationError], committed: bool, start: float
) -> BatchResult:
    return BatchResult(tuple(results), tuple(errors), committed, (time.perf_counter() - start) * 1000)


def _run(
    ctx: BatchContext,
    operations: Sequence[dict[str, Any]],
    transaction: bool,
    continue_on_error: bool,
    attempt: _Attempt | None,
) -> BatchResult:
    start = time.perf_counter()
    if transaction:
        results, errors, committed = _transactional(
            ctx, operations, continue_on_error, attempt.answer if attempt is not None else None
        )
        if committed and attempt is not None and attempt.stored is not None:
            return attempt.stored  # exactly what a retry will replay
    else:
        results, errors, committed = _one_by_one(ctx, operations, continue_on_error, attempt)
    return _result(results, errors, committed, start)


# Builds the record a commit stores with its writes, from the results of the operations it commits.
_Record = Callable[[list[OperationResult]], IdempotencyRecord]


def _transactional(
    ctx: BatchContext, operations: Sequence[dict[str, Any]], continue_on_error: bool, record: _Record | None = None
) -> tuple[list[OperationResult], list[OperationError], bool]:
    n = len(operations)
    planned: list[PlannedOperation | None] = [None] * n
    errors: list[OperationError] = []
    table_of = _tables(ctx)
    for i, op in enumerate(operations):
        try:
            planned[i] = plan_operation(i, op, table_of, ctx.max_rows)
        except TesseraError as exc:
            errors.append(_error(i, op, exc))
            if not continue_on_error:
                break
    if errors:
        failed = {e.operation for e in errors}
        stop = max(failed) if not continue_on_error else n
        statuses: list[Status] = [
            "failed" if i in failed else "rolled_back" if i < stop else "skipped" for i in range(n)
        ]
        return [OperationResult(i, statuses[i]) for i in range(n)], errors, False
    plan = group([p for p in planned if p is not None])
    work = [ShardWork(spec, ops) for spec, ops in plan.shards]

    def check(staged: list[StageResult]) -> IdempotencyRecord | None:
        counts = plan.affected(staged)
        for p in plan.operations:
            if p.expect is not None and not p.expect[0] <= counts[p.index] <= p.expect[1]:
                lo, hi = p.expect
                wanted = str(lo) if lo == hi else f"{lo}..{hi}"
                raise ExpectationFailed(
                    f"operation {p.index} affected {counts[p.index]} rows, expected {wanted}", operation=p.index
                )
        if record is None:
            return None
        return record([OperationResult(p.index, "success", counts[p.index]) for p in plan.operations])

    try:
        staged = ctx.coordinator.run(work, check=check)
    except IdempotencyRace:
        raise
    except TesseraError as exc:
        index = _failed_operation(exc, plan)
        error = _error(index, operations[index], exc) if index is not None else _error(0, operations[0], exc)
        return (
            [OperationResult(i, "failed" if i == error.operation else "rolled_back") for i in range(n)],
            [error],
            False,
        )
    counts = plan.affected(staged)
    return [OperationResult(p.index, "success", counts[p.index]) for p in plan.operations], [], True


def _one_by_one(
    ctx: BatchContext, operations: Sequence[dict[str, Any]], continue_on_error: bool, attempt: _Attempt | None = None
) -> tuple[list[OperationResult], list[OperationError], bool]:
    """Each operation in its own transaction. With a key, each commit also stores the results so far, and a
    resumed attempt starts after the operations an interrupted one committed. A failure on our side stops the
    batch whatever ``continue_on_error`` says: the operations after it are skipped, so a retry resumes in order."""
    resumed = attempt.resumed if attempt is not None else None
    results = list(resumed.results) if resumed is not None else []
    errors = list(resumed.errors) if resumed is not None else []
    for i in range(len(results), len(operations)):
        op = operations[i]
        if errors and (not continue_on_error or any(e.transient for e in errors)):
            results.append(OperationResult(i, "skipped"))
            continue
        try:
            one = _transactional(ctx, [op], False, _progress(attempt, i, results, errors))
        except IdempotencyRace:
            raise
        except TesseraError as exc:
            one = ([OperationResult(0, "failed")], [_error(0, op, exc)], False)
        (result,), errs, _ = one
        results.append(
            OperationResult(i, result.status if result.status != "rolled_back" else "failed", result.rows_affected)
        )
        errors.extend(replace(e, operation=i) for e in errs)
    return results, errors, any(r.status == "success" for r in results)


def _progress(
    attempt: _Attempt | None, index: int, results: list[OperationResult], errors: list[OperationError]
) -> _Record | None:
    """What operation ``index``'s commit stores under the key: the results so far, its own included."""
    if attempt is None:
        return None

    def record(done: list[OperationResult]) -> IdempotencyRecord:
        return attempt.progress([*results, OperationResult(index, "success", done[0].rows_affected)], errors)

    return record


def _tables(ctx: BatchContext) -> Callable[[str], Resolved]:
    """Each table's catalog entry, read once for the whole batch (not once per operation)."""
    tables: dict[str, Resolved] = {}

    def table_of(name: str) -> Resolved:
        if name not in tables:
            record, _ = ctx.catalog.read_table(name)
            tables[name] = Resolved.of(record, ctx.root)
        return tables[name]

    return table_of


def _failed_operation(exc: TesseraError, plan: BatchPlan) -> int | None:
    if isinstance(exc, ExpectationFailed):
        return int(exc.fields["operation"])
    if exc.work_index is not None and exc.op_position is not None:
        return plan.operation_behind(exc.work_index, exc.op_position)
    return None


def _error(index: int, op: Any, exc: TesseraError) -> OperationError:
    table = op.get("table") if isinstance(op, dict) else None
    kind = op.get("operation") if isinstance(op, dict) else None
    message = exc.message if not isinstance(exc, EngineError) else public_message(exc)
    return OperationError(index, str(table or ""), str(kind or ""), message, exc.code, exc)


def public_message(exc: EngineError) -> str:
    """What a client is told of a failure on our side: one stable sentence per kind, never the cause's text (it
    may name files of the data directory or carry a Lance or Ray message); the cause goes to the server's log."""
    if isinstance(exc, SandboxUnavailable):
        what = "no UDF sandbox worker could be started"
    elif isinstance(exc, ShardUnavailable):
        what = "a shard host was unavailable"
    elif isinstance(exc, CatalogBusy):
        what = "the catalog stayed locked by other writers"
    elif isinstance(exc, StorageError):
        what = "the storage layer failed"
    elif isinstance(exc, CommitConflict):
        what = "concurrent writes kept conflicting with this one"
    else:
        what = "an internal error stopped it"
    return f"{what}; this operation was not applied, retry the request (the server logged the cause)"
