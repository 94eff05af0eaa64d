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
    │   │   └── ColumnNotFound
    │   ├── SchemaMismatch         values do not fit the table's schema (422), one entry per field
    │   ├── IdempotencyKeyReused   an Idempotency-Key replayed with a different request (422)
    │   ├── NotFound               (404)
    │   │   ├── TableNotFound
    │   │   └── RowNotFound
    │   ├── Conflict               (409)
    │   │   ├── TableExists
    │   │   └── DuplicateKey
    │   └── TooLarge               (413)
    └── EngineError                our side failed: the request may be retried
        ├── ShardUnavailable       a shard actor could not be reached (503)
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


class CommitConflict(EngineError):
    code = "commit_conflict"


class StorageError(EngineError):
    code = "storage_error"
