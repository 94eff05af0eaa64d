"""Errors raised by the engine.

Every error carries a stable machine ``code`` and structured fields naming what is wrong and where.
The service maps classes to HTTP statuses in exactly one place (``service/errors.py``)::

    TesseraError
    ├── UserError                  the request is wrong: nothing was changed
    │   ├── InvalidRequest         a semantic error (400)
    │   │   ├── InvalidName
    │   │   ├── InvalidType
    │   │   ├── InvalidOperator
    │   │   ├── InvalidValue
    │   │   │   └── KeyTooLong      a string key longer than MAX_KEY_BYTES (column, row)
    │   │   ├── MalformedJson
    │   │   ├── ColumnNotFound
    │   │   ├── InvalidExpression   an expression that does not compile (line, col)
    │   │   ├── CellError           a computed cell failed with on_error "abort" (row, reason)
    │   │   ├── InvalidComputedColumn
    │   │   ├── OffsetTooDeep       a page past the first that ends beyond TESSERA_MAX_QUERY_WINDOW rows
    │   │   ├── QueryTooLarge       a query that would gather more than TESSERA_MAX_QUERY_ROWS rows to sort
    │   │   ├── InvalidUdf
    │   │   ├── UdfCompileError     the user's code does not compile (line, col)
    │   │   ├── UdfRuntimeError     the user's code raised
    │   │   ├── UdfLimitExceeded    the user's code overran a sandbox limit
    │   │   ├── FormatError         an import/export option a format does not take, or a bad value (option)
    │   │   ├── SourceError         a source that is not the declared format (line or record, column)
    │   │   └── ExpectationFailed   a batch operation's expect_rows did not match
    │   ├── SchemaMismatch         values do not fit the table's schema (422), one entry per field
    │   ├── IdempotencyKeyReused   an Idempotency-Key replayed with a different request (422)
    │   ├── NotFound               (404)
    │   │   ├── TableNotFound
    │   │   ├── RowNotFound
    │   │   ├── UdfNotFound
    │   │   └── JobNotFound
    │   ├── Conflict               (409)
    │   │   ├── TableExists
    │   │   ├── DuplicateKey
    │   │   ├── LeaseExpired        a write held a shard past its lease and was fenced off
    │   │   ├── RequestInProgress   a request with this Idempotency-Key is still running (Retry-After)
    │   │   ├── ColumnExists
    │   │   ├── DependencyConflict  a column other computed columns read
    │   │   ├── UdfExists
    │   │   ├── UdfInUse
    │   │   ├── SchemaChanged       a write planned against a table's old columns (retry it)
    │   │   ├── VersionGone         a shard version older than the history kept
    │   │   └── JobNotFinished      deleting a job that is pending or running
    │   └── TooLarge               (413)
    └── EngineError                our side failed: the request may be retried
        ├── ShardUnavailable       a shard actor could not be reached (503)
        │   └── SandboxUnavailable  no sandbox worker could be started
        ├── CatalogBusy            the catalog stayed locked past its busy timeout (503)
        ├── CommitConflict         a concurrent commit won the race (retried inside the engine)
        ├── IdempotencyRace        another attempt took over this request's Idempotency-Key reservation
        ├── StorageError           the storage layer failed (500)
        └── PluginError            a plugin cannot be loaded, two plugins register one name, or none provides
                                   what is asked for (a UDF language); names the plugins (500)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TesseraError(Exception):
    code = "error"
    # Where in a multi-shard write it failed: the ShardWork's index and the op's position on that shard.
    work_index: int | None = None
    op_position: int | None = None

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        return {"detail": self.message, "code": self.code, **self.fields}

    def __reduce__(self) -> tuple[Any, ...]:
        # Leaves have their own __init__ signatures; rebuild from state so errors cross Ray intact.
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[TesseraError], message: str, state: dict[str, Any]) -> TesseraError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class UserError(TesseraError):
    code = "invalid_request"


class InvalidRequest(UserError):
    code = "invalid_request"


class InvalidName(InvalidRequest):
    code = "invalid_name"


class InvalidType(InvalidRequest):
    code = "invalid_type"


class InvalidOperator(InvalidRequest):
    code = "invalid_operator"


class InvalidValue(InvalidRequest):
    code = "invalid_value"


class KeyTooLong(InvalidValue):
    """A string key value longer than the limit (``engine.model.coerce.MAX_KEY_BYTES``, UTF-8 bytes): refused
    before it is hashed, so one huge key cannot stall a shard host; ``row`` is None for a single value."""

    code = "key_too_long"

    def __init__(self, field: str, column: str, row: int | None, size: int, limit: int) -> None:
        super().__init__(
            f"{field}: the key '{column}' is {size} bytes long (UTF-8); string keys are at most {limit} bytes",
            field=field,
            column=column,
            row=row,
            bytes=size,
            limit=limit,
        )


class MalformedJson(InvalidRequest):
    code = "malformed_json"


class ColumnNotFound(InvalidRequest):
    """An unknown column is a 400 in the API contract, not a 404: the table exists, the request is wrong."""

    code = "column_not_found"

    def __init__(self, table: str, column: str, where: str = "") -> None:
        at = f" in {where}" if where else ""
        super().__init__(f"Column '{column}' not found in table '{table}'{at}", table=table, column=column)


@dataclass(frozen=True)
class FieldError:
    """One value that does not fit: ``loc`` is the path in the request, e.g. ``("rows", 3, "age")``."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    def to_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class SchemaMismatch(UserError):
    code = "schema_mismatch"

    def __init__(self, errors: list[FieldError]) -> None:
        shown = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"Invalid values: {shown}{more}")
        self.errors = errors

    def to_dict(self) -> dict[str, Any]:
        return {"detail": self.message, "code": self.code, "errors": [e.to_dict() for e in self.errors]}


class IdempotencyKeyReused(UserError):
    """The same Idempotency-Key came with a different request (422: the body does not match the key's)."""

    code = "idempotency_key_reused"

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key '{key}' was already used with a different request", idempotency_key=key)


class NotFound(UserError):
    code = "not_found"


class TableNotFound(NotFound):
    code = "table_not_found"

    def __init__(self, table: str) -> None:
        super().__init__(f"Table '{table}' not found", table=table)


class RowNotFound(NotFound):
    code = "row_not_found"

    def __init__(self, table: str, row_id: Any) -> None:
        super().__init__(f"Row '{row_id}' not found in table '{table}'", table=table, row_id=row_id)


class Conflict(UserError):
    code = "conflict"


class TableExists(Conflict):
    code = "table_exists"

    def __init__(self, table: str) -> None:
        super().__init__(f"Table '{table}' already exists", table=table)


class DuplicateKey(Conflict):
    code = "duplicate_key"

    def __init__(self, table: str, keys: list[Any]) -> None:
        shown = ", ".join(repr(k) for k in keys[:5])
        super().__init__(f"Duplicate primary key in table '{table}': {shown}", table=table, keys=keys[:20])


class LeaseExpired(Conflict):
    """A write held a shard's writer slot past its lease, so the shard gave the slot to the next writer and fenced
    this one off (its fencing token is no longer the shard's): nothing of it was applied, and retrying is safe.

    Not retried inside the engine: a write that outlasts the lease once under contention would likely do it again.
    """

    code = "lease_expired"

    def __init__(self, table: str, shard: int, detail: str) -> None:
        super().__init__(
            f"The write to shard {shard} of table '{table}' was aborted: {detail}; nothing was applied, retry it",
            table=table,
            shard=shard,
        )


class RequestInProgress(Conflict):
    """Another request with the same Idempotency-Key holds the key's reservation and has not answered yet (409,
    with Retry-After). Nothing of this request ran; retrying it once the first has answered returns that answer."""

    code = "request_in_progress"

    def __init__(self, key: str, retry_after: float = 1) -> None:
        super().__init__(
            f"A request with Idempotency-Key '{key}' is still in progress; retry shortly to get its result",
            idempotency_key=key,
            retry_after=retry_after,
        )


class ExpectationFailed(InvalidRequest):
    """A batch operation's ``expect_rows`` did not match the rows it affected (a compare-and-set that lost)."""

    code = "expectation_failed"


class TooLarge(UserError):
    code = "too_large"


class EngineError(TesseraError):
    code = "internal_error"


class ShardUnavailable(EngineError):
    code = "shard_unavailable"


class CatalogBusy(EngineError):
    """SQLite kept the catalog locked past its busy timeout (``sqlite3.OperationalError: database is locked``):
    other writers hold it, nothing was changed, and the same request is likely to pass in a moment (503)."""

    code = "busy"

    def __init__(self, message: str = "The catalog is busy; retry shortly", retry_after: float = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class CommitConflict(EngineError):
    code = "commit_conflict"


class StorageError(EngineError):
    code = "storage_error"


# -- expressions ------------------------------------------------------------------------------------------------------
class InvalidExpression(InvalidRequest):
    """An expression that cannot be compiled; ``line`` and ``col`` are 1-based."""

    code = "invalid_expression"

    def __init__(self, message: str, *, expression: str, line: int, col: int, field: str = "expr") -> None:
        super().__init__(
            f"{field}: {message} (line {line}, col {col})", expression=expression, line=line, col=col, field=field
        )
        self.expression, self.line, self.col, self.field = expression, line, col, field


class CellError(InvalidValue):
    """A cell whose value cannot be computed, with ``on_error="abort"``; ``row`` is 0-based in the evaluated table."""

    code = "cell_error"

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(f"row {row}: {reason}", row=row, reason=reason)
        self.row, self.reason = row, reason


# -- computed columns -------------------------------------------------------------------------------------------------
class InvalidComputedColumn(InvalidRequest):
    code = "invalid_computed_column"


# -- queries ----------------------------------------------------------------------------------------------------------
class OffsetTooDeep(InvalidRequest):
    """``offset + limit`` past the query window: every shard would have to send that many rows to find the page."""

    code = "offset_too_deep"

    def __init__(self, offset: int, limit: int, window: int, key: str) -> None:
        super().__init__(
            f"offset + limit is {offset + limit}, past the query window of {window} rows (TESSERA_MAX_QUERY_WINDOW); "
            f"page on the key instead: order_by ['{key}'] with where "
            f'[{{"column": "{key}", "operator": ">", "value": <the last {key} of the previous page>}}]',
            field="offset",
            offset=offset,
            limit=limit,
            max_query_window=window,
        )


class QueryTooLarge(InvalidRequest):
    """Ordering by aggregate or window values sorts the matching rows' sort columns in the API process; past
    ``max_query_rows`` matching rows that is refused rather than run."""

    code = "query_too_large"

    def __init__(self, rows: int, cap: int, columns: list[str]) -> None:
        super().__init__(
            f"order_by on aggregate or window column{'s' if len(columns) > 1 else ''} {', '.join(columns)} would "
            f"sort {rows} matching rows, more than the {cap} allowed (TESSERA_MAX_QUERY_ROWS); narrow the where "
            "filter, or order by stored columns",
            field="order_by",
            rows=rows,
            max_query_rows=cap,
        )


class DependencyConflict(Conflict):
    """Dropping a column that other computed columns read."""

    code = "computed_column_in_use"


class ColumnExists(Conflict):
    code = "column_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"column '{name}' already exists", column=name)


# -- user-defined functions -------------------------------------------------------------------------------------------
class UdfNotFound(NotFound):
    code = "udf_not_found"

    def __init__(self, table: str, name: str) -> None:
        super().__init__(f"UDF '{name}' not found in table '{table}'", table=table, udf=name)


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job '{job_id}' not found", job_id=job_id)


class JobCancelled(TesseraError):
    """Raised inside a job run when its job was cancelled (or timed out, or was taken over): the run stops, and a
    write it was making aborts (nothing of it is published)."""

    code = "job_cancelled"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job '{job_id}' was cancelled", job_id=job_id)


class JobParameterError(InvalidRequest):
    """A job's parameters do not fit its type; checked when the job runs, so it fails with this message."""

    code = "invalid_job_parameter"

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"parameter '{parameter}' {problem}", parameter=parameter)


class JobNotFinished(Conflict):
    """Deleting a job that is pending or running: it must finish (or be cancelled) first."""

    code = "job_not_finished"

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(
            f"Job '{job_id}' is {status}: only a finished job can be deleted (cancel it first)",
            job_id=job_id,
            status=status,
        )


# -- import / export formats -----------------------------------------------------------------------------------------
class FormatError(InvalidRequest):
    """An option of an import/export format (``plugins.formats``) that the format does not take, or a value it
    cannot have: a bad delimiter, an unknown encoding, a sheet the workbook does not have. Names the option."""

    code = "invalid_format_option"

    def __init__(self, fmt: str, option: str, problem: str) -> None:
        super().__init__(f"{fmt} option '{option}' {problem}", format=fmt, option=option)
        self.option = option


class SourceError(InvalidRequest):
    """A source that is not what its declared format says: ragged CSV rows, bytes that are not the declared
    encoding, malformed JSON, a file that is not Parquet or Excel. ``line`` (1-based, of the text formats) or
    ``record`` (1-based: a JSON array's element, a Parquet or Excel data row) says where, when it is known."""

    code = "invalid_source"

    def __init__(
        self, fmt: str, problem: str, *, line: int | None = None, record: int | None = None, column: str | None = None
    ) -> None:
        where = f", line {line}" if line is not None else f", record {record}" if record is not None else ""
        super().__init__(f"{fmt} source{where}: {problem}", format=fmt, line=line, record=record, column=column)
        self.line, self.record, self.column = line, record, column


class ImportSourceError(InvalidRequest):
    """An import's ``source_url`` (or uploaded file) that cannot be read: a scheme that is not allowed, a
    ``file://`` path outside ``TESSERA_IMPORT_DIR``, a URL that answers 404 or times out, a truncated gzip, a zip
    without exactly one file. Names the source."""

    code = "invalid_import_source"

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"source {source}: {problem}", source=source)
        self.source = source


class SourceTooLarge(TooLarge):
    """An import source past ``TESSERA_IMPORT_MAX_BYTES`` as read, or past the decompressed cap once decompressed
    (a zip or gzip bomb). Nothing was imported."""

    code = "source_too_large"

    def __init__(self, source: str, what: str, limit: int) -> None:
        super().__init__(f"source {source}: {what} passed the limit of {limit} bytes", source=source, limit=limit)


class ImportRejected(InvalidRequest):
    """An import with ``on_error: fail`` that met bad rows: nothing was imported. ``result`` is the import's result
    (the bad rows in ``errors``), which the failed job keeps."""

    code = "import_rejected"

    def __init__(self, bad_rows: int, result: dict[str, Any]) -> None:
        super().__init__(
            f"{bad_rows} rows failed validation and on_error is 'fail': nothing was imported (see the result's errors)",
            bad_rows=bad_rows,
        )
        self.result = result


class ExportEmpty(InvalidRequest):
    """An export whose ``where`` (or table) matches no row: there is nothing to write."""

    code = "export_empty"

    def __init__(self, table: str) -> None:
        super().__init__(
            f"the export of '{table}' matches 0 rows: nothing to export (check where and limit)", table=table
        )


class ExportNotFound(NotFound):
    code = "export_not_found"

    def __init__(self, job_id: str, why: str = "no export job has that id") -> None:
        super().__init__(f"Export {job_id} not found: {why}", job_id=job_id)


class ExportExpired(UserError):
    """The download of an export after its ``expires_at`` (``TESSERA_EXPORT_TTL_HOURS``): 410 Gone."""

    code = "export_expired"

    def __init__(self, job_id: str, expired_at: str) -> None:
        super().__init__(
            f"Export {job_id} expired at {expired_at}; its file was deleted. Run the export again",
            job_id=job_id,
            expired_at=expired_at,
        )


class UdfExists(Conflict):
    code = "udf_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"UDF '{name}' already exists", udf=name)


class UdfInUse(Conflict):
    code = "udf_in_use"


class InvalidUdf(InvalidRequest):
    """A definition that cannot be registered (bad name, language, parameter or type)."""

    code = "invalid_udf"


class UdfCompileError(InvalidRequest):
    """The code does not compile or breaks a sandbox rule; ``line`` and ``col`` are 1-based, in ``code``."""

    code = "udf_compile_error"

    def __init__(self, message: str, *, line: int, col: int, language: str = "") -> None:
        where = f" (line {line}, col {col})"
        super().__init__(f"code: {message}{where}", field="code", line=line, col=col, language=language)
        self.line, self.col = line, col


class UdfRuntimeError(InvalidRequest):
    """The function raised (or returned a value of the wrong type) for the arguments of an execute call."""

    code = "udf_error"


class UdfLimitExceeded(InvalidRequest):
    """A call overran a sandbox limit (``limit``: ``cpu_time``, ``memory`` or ``wall_clock``); its worker was
    killed and replaced. Fails the whole computation, whatever ``on_error`` says: the rows are not to blame alone."""

    code = "udf_limit_exceeded"

    def __init__(self, udf: str, limit: str, detail: str) -> None:
        super().__init__(f"UDF '{udf}' stopped: {detail}", udf=udf, limit=limit)
        self.limit = limit


class SandboxUnavailable(ShardUnavailable):
    """No sandbox worker could be started (503, like a shard that cannot be reached)."""

    code = "sandbox_unavailable"


class PluginError(EngineError):
    """The plugins installed here do not fit together (``engine.registry``): one fails to load or to answer its
    hook, two register the same name (``plugins`` names both), or none provides what is asked for."""

    code = "plugin_error"


# -- versions and retries -----------------------------------------------------------------------------------------
class SchemaChanged(Conflict):
    """A write planned against a table's old schema: a computed column was added or dropped meanwhile."""

    code = "schema_changed"

    def __init__(self, table_id: str) -> None:
        super().__init__(
            "the table's columns changed (a computed column was added or dropped) while this write ran; retry it",
            table_id=table_id,
        )


class VersionGone(Conflict):
    """A read of a shard version older than the history kept (``prune_log``): a fresh snapshot will do."""

    code = "version_gone"


class IdempotencyRace(EngineError):
    """This attempt no longer holds its key's reservation (another attempt took it over): nothing it wrote with
    the key was stored. The caller looks at the key again."""

    code = "idempotency_race"

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key '{key}' is reserved by another attempt", idempotency_key=key)
