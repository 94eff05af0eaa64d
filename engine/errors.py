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
    │   │   ├── MalformedJson
    │   │   ├── ColumnNotFound
    │   │   ├── InvalidExpression   an expression that does not compile (line, col)
    │   │   ├── CellError           a computed cell failed with on_error "abort" (row, reason)
    │   │   ├── InvalidComputedColumn
    │   │   ├── InvalidUdf
    │   │   ├── UdfCompileError     the user's code does not compile (line, col)
    │   │   ├── UdfRuntimeError     the user's code raised
    │   │   └── UdfLimitExceeded    the user's code overran a sandbox limit
    │   ├── SchemaMismatch         values do not fit the table's schema (422), one entry per field
    │   ├── IdempotencyKeyReused   an Idempotency-Key replayed with a different request (422)
    │   ├── NotFound               (404)
    │   │   ├── TableNotFound
    │   │   ├── RowNotFound
    │   │   └── UdfNotFound
    │   ├── Conflict               (409)
    │   │   ├── TableExists
    │   │   ├── DuplicateKey
    │   │   ├── ColumnExists
    │   │   ├── DependencyConflict   a column other computed columns read
    │   │   ├── UdfExists
    │   │   └── UdfInUse
    │   └── TooLarge               (413)
    └── EngineError                our side failed: the request may be retried
        ├── ShardUnavailable       a shard actor could not be reached (503)
        │   └── SandboxUnavailable  no sandbox worker could be started
        ├── CatalogBusy            the catalog stayed locked past its busy timeout (503)
        ├── CommitConflict         a concurrent commit won the race (retried inside the engine)
        └── StorageError           the storage layer failed (500)
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
