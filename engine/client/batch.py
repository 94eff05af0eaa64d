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
from typing import TYPE_CHECKING, Any, Literal

import orjson
import pyarrow as pa

from engine.errors import (
    CatalogBusy,
    CommitConflict,
    EngineError,
    IdempotencyKeyReused,
    InvalidRequest,
    LeaseExpired,
    RequestInProgress,
    SandboxUnavailable,
    ShardUnavailable,
    StorageError,
    TesseraError,
    TooLarge,
)
from engine.expr.where import parse_where
from engine.logical.plan import Delete, Insert, ShardOp, StageResult, Update, Upsert
from engine.physical.coordinator import ShardWork
from engine.storage.catalog import SchemaChanged
from engine.storage.idempotency import IdempotencyRace, IdempotencyRecord, Reservation

if TYPE_CHECKING:
    from engine.client.database import Database

OperationType = Literal["insert", "update", "delete", "upsert"]
OPERATION_TYPES: tuple[str, ...] = ("insert", "update", "delete", "upsert")
MAX_OPERATIONS = 1000
IDEMPOTENCY_KEY_MAX = 255  # characters
Status = Literal["success", "failed", "rolled_back", "skipped"]
# Failures that say nothing about the request: retrying it may well pass, so they are never a key's answer.
TRANSIENT: tuple[type[TesseraError], ...] = (EngineError, SchemaChanged, LeaseExpired)


class ExpectationFailed(InvalidRequest):
    code = "expectation_failed"


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


@dataclass
class _Planned:
    """One operation turned into shard operations: ``{(table_id, shard): op}``."""

    index: int
    table: str
    kind: str
    shard_ops: dict[tuple[str, int], ShardOp]
    expect: tuple[int, int] | None
    specs: dict[tuple[str, int], Any]


def run_batch(
    db: Database,
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
    _check_size(db, operations)
    if idempotency_key is None:
        return _run(db, operations, transaction, continue_on_error, None)
    check_idempotency_key(idempotency_key)
    request_hash = _request_hash(operations, transaction, continue_on_error)
    for _ in range(3):
        reservation = db.catalog.reserve_key(
            idempotency_key,
            request_hash,
            ttl_seconds=db.settings.idempotency_ttl_hours * 3600,
            stale_seconds=db.settings.lease_seconds,
        )
        if reservation.state == "reused":
            raise IdempotencyKeyReused(idempotency_key)
        if reservation.state == "answered":
            assert reservation.response is not None
            return BatchResult.from_dict(orjson.loads(reservation.response))
        if reservation.state == "running":
            raise RequestInProgress(idempotency_key)
        try:
            return _run_reserved(db, operations, transaction, continue_on_error, _Attempt(idempotency_key, reservation))
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


def _check_size(db: Database, operations: Any) -> None:
    """The checks that refuse a request before anything runs (4xx, nothing stored under a key)."""
    if not isinstance(operations, (list, tuple)) or not operations:
        raise InvalidRequest("operations must be a non-empty list", field="operations")
    if len(operations) > MAX_OPERATIONS:
        raise TooLarge(
            f"{len(operations)} operations in one batch; the limit is {MAX_OPERATIONS}", limit=MAX_OPERATIONS
        )
    rows = sum(len(op["data"]) if isinstance(op, dict) and isinstance(op.get("data"), list) else 1 for op in operations)
    if rows > db.settings.max_rows_per_request:
        limit = db.settings.max_rows_per_request
        raise TooLarge(f"{rows} rows in one batch; the limit is {limit}", limit=limit)


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
    db: Database, operations: Sequence[dict[str, Any]], transaction: bool, continue_on_error: bool, attempt: _Attempt
) -> BatchResult:
    """Run under the reservation, then answer the key, or give it up when the result is not an answer."""
    try:
        result = _run(db, operations, transaction, continue_on_error, attempt)
    except IdempotencyRace:
        raise
    except BaseException:
        db.catalog.release_key(attempt.key, attempt.token)
        raise
    if result.transient:
        db.catalog.release_key(attempt.key, attempt.token)
    elif result is not attempt.stored:  # not committed with the writes: store it now
        # IdempotencyRace: another attempt took over and answers retries; what this one did is still its answer
        with contextlib.suppress(IdempotencyRace):
            db.catalog.put_record(
                IdempotencyRecord(attempt.key, attempt.token, orjson.dumps(result.to_dict()).decode())
            )
    return result


def _result(
    results: Sequence[OperationResult], errors: Sequence[OperationError], committed: bool, start: float
) -> BatchResult:
    return BatchResult(tuple(results), tuple(errors), committed, (time.perf_counter() - start) * 1000)


def _run(
    db: Database,
    operations: Sequence[dict[str, Any]],
    transaction: bool,
    continue_on_error: bool,
    attempt: _Attempt | None,
) -> BatchResult:
    start = time.perf_counter()
    if transaction:
        results, errors, committed = _transactional(
            db, operations, continue_on_error, attempt.answer if attempt is not None else None
        )
        if committed and attempt is not None and attempt.stored is not None:
            return attempt.stored  # exactly what a retry will replay
    else:
        results, errors, committed = _one_by_one(db, operations, continue_on_error, attempt)
    return _result(results, errors, committed, start)


# Builds the record a commit stores with its writes, from the results of the operations it commits.
_Record = Callable[[list[OperationResult]], IdempotencyRecord]


def _transactional(
    db: Database, operations: Sequence[dict[str, Any]], continue_on_error: bool, record: _Record | None = None
) -> tuple[list[OperationResult], list[OperationError], bool]:
    n = len(operations)
    planned: list[_Planned | None] = [None] * n
    errors: list[OperationError] = []
    tables: _Resolved = {}
    for i, op in enumerate(operations):
        try:
            planned[i] = _plan(db, i, op, tables)
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
    plans = [p for p in planned if p is not None]
    work, origin = _group(plans)

    def check(staged: list[StageResult]) -> IdempotencyRecord | None:
        counts = _affected(plans, staged, origin)
        for p in plans:
            if p.expect is not None and not p.expect[0] <= counts[p.index] <= p.expect[1]:
                lo, hi = p.expect
                wanted = str(lo) if lo == hi else f"{lo}..{hi}"
                raise ExpectationFailed(
                    f"operation {p.index} affected {counts[p.index]} rows, expected {wanted}", operation=p.index
                )
        if record is None:
            return None
        return record([OperationResult(p.index, "success", counts[p.index]) for p in plans])

    try:
        staged = db.coordinator.run(work, check=check)
    except IdempotencyRace:
        raise
    except TesseraError as exc:
        index = _failed_operation(exc, origin)
        error = _error(index, operations[index], exc) if index is not None else _error(0, operations[0], exc)
        return (
            [OperationResult(i, "failed" if i == error.operation else "rolled_back") for i in range(n)],
            [error],
            False,
        )
    counts = _affected(plans, staged, origin)
    return [OperationResult(p.index, "success", counts[p.index]) for p in plans], [], True


def _one_by_one(
    db: Database, operations: Sequence[dict[str, Any]], continue_on_error: bool, attempt: _Attempt | None = None
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
            one = _transactional(db, [op], False, _progress(attempt, i, results, errors))
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


_Resolved = dict[str, tuple[Any, Any, dict[tuple[str, int], Any]]]  # name -> (Table, TableRecord, specs by shard)


def _plan(db: Database, index: int, op: Any, tables: _Resolved) -> _Planned:
    """Validate one operation and turn it into shard operations (nothing runs).

    ``tables`` caches each table's catalog entry for the whole batch: one read per table, not per operation.
    """
    loc = f"operations[{index}]"
    if not isinstance(op, dict):
        raise InvalidRequest(f"{loc} must be an object", field=loc)
    kind = op.get("operation")
    if kind not in OPERATION_TYPES:
        raise InvalidRequest(f"{loc}.operation must be one of {', '.join(OPERATION_TYPES)}", field=f"{loc}.operation")
    table_name = op.get("table")
    if not isinstance(table_name, str):
        raise InvalidRequest(f"{loc}.table must be a table name", field=f"{loc}.table")
    if table_name not in tables:
        table = db.table(table_name)
        record, _, found = db._resolve(table_name)
        tables[table_name] = (table, record, {(s.table_id, s.shard): s for s in found})
    table, record, by_shard = tables[table_name]
    specs = tuple(by_shard.values())
    schema = record.schema
    shard_ops: dict[tuple[str, int], ShardOp] = {}
    if kind in ("insert", "upsert"):
        data = op.get("data")
        if data is None or data == []:
            raise InvalidRequest(f"{loc}.data is required for {kind}", field=f"{loc}.data")
        if kind == "upsert" and not schema.primary_key:
            raise InvalidRequest(
                f"{loc}: table '{table_name}' has no primary key: upsert needs one", field=f"{loc}.table"
            )
        rows = table._to_arrow(data, schema)
        shard_kind = Insert if kind == "insert" else Upsert
        for w in table._partition(rows, schema, specs, shard_kind, False):
            shard_ops[(w.spec.table_id, w.spec.shard)] = w.ops[0]
    else:
        if "where" not in op:
            raise InvalidRequest(f"{loc}.where is required for {kind} (use {{}} for every row)", field=f"{loc}.where")
        clauses = parse_where(op["where"], f"{loc}.where")
        targets, keys, where = table._route(clauses, schema, record.shards, f"{loc}.where")
        shard_op: ShardOp
        if kind == "update":
            if not isinstance(op.get("set"), dict) or not op["set"]:
                raise InvalidRequest(f"{loc}.set is required for update", field=f"{loc}.set")
            shard_op = Update(where, table._assignments(schema, op["set"]), keys)
        else:
            shard_op = Delete(where, keys)
        for i in targets:
            shard_ops[(specs[i].table_id, i)] = shard_op
    return _Planned(index, table_name, kind, shard_ops, _expect(op.get("expect_rows"), loc), by_shard)


def _expect(value: Any, loc: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return (value, value)
    if isinstance(value, dict) and set(value) <= {"min", "max"}:
        lo, hi = value.get("min", 0), value.get("max", 2**63 - 1)
        if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (lo, hi)) and lo <= hi:
            return (lo, hi)
    raise InvalidRequest(
        f"{loc}.expect_rows must be a count or {{min, max}} of non-negative integers", field=f"{loc}.expect_rows"
    )


# origin[w][k]: the batch operations behind op k of work w, with their own row counts when several were merged.
_Origin = list[list[list[tuple[int, int | None]]]]


def _group(plans: Sequence[_Planned]) -> tuple[list[ShardWork], _Origin]:
    """One ShardWork per shard with its ops in batch order.

    Consecutive inserts (or upserts) on a shard are merged into one shard op, so a batch of many single-row
    writes is one write per shard instead of one per row. That keeps their meaning: an upsert's last row
    for a key wins, and inserts that collide fail together just as they would one by one. Merged rows become
    one contiguous table (Ray serialises each chunk of a table separately).
    """
    # per shard: its spec, its ops (each with the row tables merged into it), and where each op came from
    by_shard: dict[
        tuple[str, int], tuple[Any, list[tuple[ShardOp, list[pa.Table]]], list[list[tuple[int, int | None]]]]
    ] = {}
    for p in plans:
        for key, shard_op in p.shard_ops.items():
            _, ops, origin = by_shard.setdefault(key, (p.specs[key], [], []))
            last = ops[-1][0] if ops else None
            if isinstance(shard_op, (Insert, Upsert)) and type(last) is type(shard_op):
                assert isinstance(last, (Insert, Upsert))
                if len(origin[-1]) == 1 and origin[-1][0][1] is None:
                    origin[-1] = [(origin[-1][0][0], last.rows.num_rows)]
                ops[-1][1].append(shard_op.rows)
                origin[-1].append((p.index, shard_op.rows.num_rows))
            else:
                ops.append((shard_op, [shard_op.rows] if isinstance(shard_op, (Insert, Upsert)) else []))
                origin.append([(p.index, None)])
    work = [ShardWork(spec, tuple(_merged(op, rows) for op, rows in ops)) for spec, ops, _ in by_shard.values()]
    return work, [origin for _, _, origin in by_shard.values()]


def _merged(op: ShardOp, rows: list[pa.Table]) -> ShardOp:
    if len(rows) < 2:
        return op
    assert isinstance(op, (Insert, Upsert))
    return replace(op, rows=pa.concat_tables(rows).combine_chunks())


def _affected(plans: Sequence[_Planned], staged: Sequence[StageResult], origin: _Origin) -> dict[int, int]:
    counts = {p.index: 0 for p in plans}
    for result, ops in zip(staged, origin, strict=True):
        for op_result, behind in zip(result.results, ops, strict=True):
            for index, rows in behind:
                counts[index] += op_result.rows_affected if rows is None else rows
    return counts


def _failed_operation(exc: TesseraError, origin: _Origin) -> int | None:
    if isinstance(exc, ExpectationFailed):
        return int(exc.fields["operation"])
    if exc.work_index is not None and exc.op_position is not None and exc.work_index < len(origin):
        return origin[exc.work_index][exc.op_position][0][0]  # a merged op: its first operation
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
