"""Request bodies (pydantic models) and response shapes (TypedDicts) of the REST endpoints.

Envelopes are strict (no ``"5"`` for ``5``) and forbid unknown fields, so a typo is a 422 that names the field.
Row values, column types, ``where`` clauses and ``order_by`` columns are checked by the engine against the
table's schema, which names each offending field; the models only check the shape of the envelope.

Responses are TypedDicts rather than models: query results carry pre-encoded JSON cells (``orjson.Fragment``)
that are written out as they are, and re-validating thousands of rows on the way out would only cost time.
"""

from __future__ import annotations

from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,  # pydantic describes these before Python 3.12 too
)

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
MAX_OFFSET = 2**63 - 1 - MAX_LIMIT  # the engine reads offset + limit rows, a 64-bit count in Arrow


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


# -- shapes shared by several bodies -----------------------------------------------------------------------------
def _column_spec(value: Any) -> Any:
    if isinstance(value, str):
        return {"type": value}
    if not isinstance(value, dict):
        raise ValueError('a column is a type name ("int") or {"type": "int", "nullable": false}')
    return value


def _order_item(value: Any) -> Any:
    if isinstance(value, str):  # "col" or "col:desc", as in the query string
        column, _, direction = value.partition(":")
        return {"column": column, "direction": direction or "asc"}
    if not isinstance(value, dict):
        raise ValueError('an order_by item is "column[:asc|desc]" or {"column": ..., "direction": "asc"|"desc"}')
    return value


def _key_columns(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if value is not None and not isinstance(value, list):
        raise ValueError('primary_key is a column name ("id") or a list of column names (["a", "b"])')
    return value


def _where(value: Any) -> Any:
    if value is not None and not isinstance(value, (dict, list)):
        raise ValueError("where is an object {column: value} or a list of {column, operator, value} clauses")
    return value


class ColumnSpec(_Body):
    type: str  # checked by the engine, which lists the known types
    nullable: bool = True


class SchemaSpec(_Body):
    columns: dict[str, Annotated[ColumnSpec, BeforeValidator(_column_spec)]]


class OrderBy(_Body):
    column: str
    direction: str = "asc"  # "asc" | "desc" (either case); checked by the engine


Where = Annotated[dict[str, Any] | list[Any] | None, BeforeValidator(_where)]


# -- request bodies ----------------------------------------------------------------------------------------------
class CreateTable(_Body):
    name: str
    table_schema: SchemaSpec = Field(alias="schema")
    primary_key: Annotated[list[str] | None, BeforeValidator(_key_columns)] = None
    shards: int | None = None

    def columns(self) -> dict[str, Any]:
        return {name: spec.model_dump() for name, spec in self.table_schema.columns.items()}


class InsertRow(_Body):
    data: dict[str, Any]


class InsertBatch(_Body):
    # Each row is checked by the engine (an object of known columns, values of the column types), which reports
    # ``rows.<i>`` locations; validating 10,000 dicts here as well would cost a tenth of the request's time.
    rows: list[Any]
    batch_size: int | None = Field(default=None, ge=1, le=MAX_LIMIT)  # accepted; the insert is one transaction


class Query(_Body):
    select: list[str] | None = None
    where: Where = None
    order_by: list[Annotated[OrderBy, BeforeValidator(_order_item)]] | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=0, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)

    def order(self) -> list[dict[str, Any]] | None:
        return None if self.order_by is None else [o.model_dump() for o in self.order_by]


class UpdateRows(_Body):
    where: Where
    set: dict[str, Any]


class UpdateRow(_Body):
    row_id: Any = None
    data: dict[str, Any]


class DeleteRows(_Body):
    where: Where = None


# -- response shapes ---------------------------------------------------------------------------------------------
class ColumnInfo(TypedDict):
    name: str
    type: str
    is_computed: bool
    nullable: bool
    column_type: NotRequired[str]  # computed columns only: expression | udf | aggregate | window


class TableInfo(TypedDict):
    name: str
    column_count: int
    row_count: int
    columns: list[ColumnInfo]
    created_at: str
    primary_key: list[str] | None
    shards: int
    version: int


class Message(TypedDict):
    message: str


class TableCreated(TypedDict):
    message: str
    table: TableInfo


class RowData(TypedDict):
    message: str
    data: dict[str, Any]


class RowOnly(TypedDict):
    data: dict[str, Any]


class RowCount(TypedDict):
    message: str
    row_count: int


class RowsUpdated(TypedDict):
    message: str
    updated_fields: list[str]
    row_count: int


class QueryResponse(TypedDict):
    rows: list[dict[str, Any]]
    total_count: int
    has_more: bool
    next_offset: int | None


class TableRowCount(TypedDict):
    table_name: str
    row_count: int


class Health(TypedDict):
    status: str
    version: str
    tables: int
    ray: str


# -- batch operations ----------------------------------------------------------------------------------------------
class BatchOperation(_Body):
    """One operation; which fields it needs (``data`` or ``where``, ``set``) is checked by the engine, which
    reports it with the operation's index."""

    operation: Literal["insert", "update", "delete", "upsert"]
    table: str
    data: dict[str, Any] | list[dict[str, Any]] | None = None
    where: Where = None
    set: dict[str, Any] | None = None
    expect_rows: int | dict[str, int] | None = None


class BatchRequest(_Body):
    operations: list[BatchOperation]  # the count is the engine's to check: over 1000 is a 413, not a 422
    transaction: bool = True
    continue_on_error: bool = False
    return_results: bool = True


# -- computed columns ------------------------------------------------------------------------------------------------
class AddComputedColumn(_Body):
    """``column_type``, the expression and ``parameters`` are checked by the engine against the table's schema,
    which names the offending field (400); only the JSON types are checked here (422)."""

    name: str
    column_type: str  # expression | udf | aggregate | window; the engine lists them when it is none of those
    expression: str
    dependencies: list[str] | None = None
    parameters: dict[str, Any] | None = None
    cache_results: bool = True


class Recompute(_Body):
    where: Where = None  # None (or no body): every row


class ComputedColumnInfo(TypedDict):
    name: str
    column_type: str
    expression: str
    dependencies: list[str]
    parameters: dict[str, Any]
    cache_results: bool
    type: str  # the values' column type
    created_at: str
    last_computed: str | None
    computation_time_ms: float | None
    errors: int  # cells that failed (and were set to null) in the last computation
    stale: bool  # a UDF it calls was replaced since it was last computed


class RecomputeResult(TypedDict):
    column: str
    rows_recomputed: int
    computation_time_ms: float
    errors: int


# -- user-defined functions ------------------------------------------------------------------------------------------
class UdfParameter(_Body):
    name: str
    type: str  # int | float | string | bool | json | timestamp: the engine lists them when it is none of those
    description: str | None = None


class RegisterUdf(_Body):
    """Languages, types and the code are checked by the engine (400 naming the field, or the code's line)."""

    name: str
    language: str
    code: str
    parameters: list[UdfParameter] = Field(default_factory=list)
    return_type: str
    description: str | None = None
    deterministic: bool = False


class ReplaceUdf(RegisterUdf):
    """``PUT /tables/{t}/udfs/{name}``: the name is the path's (the body may repeat it); the rest as when registering."""

    name: str | None = None  # type: ignore[assignment]


class UdfParameterInfo(TypedDict):
    name: str
    type: str


class UDFInfo(TypedDict):
    id: str
    name: str
    language: str
    code: str
    parameters: list[UdfParameterInfo]
    return_type: str
    description: str | None
    deterministic: bool
    created_at: str
    updated_at: str
    usage_count: int
    inlined: bool  # compiled to the vectorised kernel instead of running row by row in the sandbox
    used_by: list[str]  # computed columns that call it


class UdfResult(TypedDict):
    result: Any
    execution_time_ms: float


# -- responses described for the API document ---------------------------------------------------------------------
class Ready(TypedDict):
    status: Literal["ready"]


class BatchOperationResult(TypedDict):
    operation: int
    status: Literal["success", "failed", "rolled_back", "skipped"]
    rows_affected: int


class BatchOperationError(TypedDict):
    operation: int
    table: str
    operation_type: str
    error: str
    code: str


class BatchResponse(TypedDict):
    """What ``engine.BatchResult.to_dict`` gives (the engine has no TypedDict for it)."""

    total_operations: int
    successful: int
    failed: int
    errors: list[BatchOperationError]
    results: list[BatchOperationResult]
    execution_time_ms: float
    committed: bool


# -- jobs ------------------------------------------------------------------------------------------------------------
JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
WebhookEvent = Literal["started", "progress", "completed", "failed"]
MAX_JOB_LIMIT = 100
DEFAULT_JOB_LIMIT = 50


class CreateJob(_Body):
    """A background job to queue. An unknown ``job_type`` is 400 listing the job types; the parameters a type needs
    are checked when the job runs (the job then fails, naming the parameter)."""

    job_type: str  # text, not a Literal: an unknown type is the engine's 400 with ``allowed``, as the contract says
    parameters: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=5, ge=1, le=10)  # higher runs first; FIFO within a priority
    webhook_url: str | None = None  # an absolute http(s) URL, checked by the engine
    webhook_events: list[WebhookEvent] | None = None
    timeout_seconds: float = Field(default=3600.0, gt=0, allow_inf_nan=False)  # from the start of running


class JobInfo(TypedDict):
    job_id: str
    job_type: str
    status: JobStatus
    progress: float  # 0..100
    parameters: Any
    result: Any
    error: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    webhook_url: str | None
    logs: list[str]  # the last 1,000 lines, each at most 2 KB


class JobCancelResult(TypedDict):
    message: str
    cancelled: bool
    status: NotRequired[JobStatus]  # when it was not cancelled: the status it had already finished with


class JobDeleted(TypedDict):
    message: str
    job_id: str


# -- import, export, streaming -----------------------------------------------------------------------------------
class _JobOptions(_Body):
    """What a job-creating endpoint takes besides its parameters (as ``POST /batch/jobs`` does)."""

    priority: int = Field(default=5, ge=1, le=10)
    webhook_url: str | None = None
    webhook_events: list[WebhookEvent] | None = None
    timeout_seconds: float = Field(default=3600.0, gt=0, allow_inf_nan=False)

    def job_fields(self) -> set[str]:
        return set(_JobOptions.model_fields)


class ImportData(_JobOptions):
    """``POST /batch/import``: the format is a registered one (checked by the engine, 400 with the list); the
    source is ``source_url`` or, in a multipart request, the ``file`` part."""

    table_name: str
    format: str
    source_url: str | None = None
    mapping: dict[str, str] | None = None
    options: dict[str, Any] | None = None
    validation_rules: dict[str, dict[str, Any]] | None = None
    on_error: Literal["skip", "fail", "default"] = "skip"
    batch_size: int = Field(default=1000, ge=1, le=10_000)


class ExportData(_JobOptions):
    table_name: str
    format: str
    columns: list[str] | None = None
    where: Where = None
    order_by: list[Annotated[OrderBy, BeforeValidator(_order_item)]] | None = None
    limit: int | None = Field(default=None, ge=0)
    options: dict[str, Any] | None = None
    compress: bool = False

    def order(self) -> list[dict[str, Any]] | None:
        return None if self.order_by is None else [o.model_dump() for o in self.order_by]


def _flat_stream_config(value: Any) -> Any:
    """The seed's clients send ``{"config": {...}, "where": [...]}``; the SDK sends the config's fields flat."""
    if isinstance(value, dict) and isinstance(value.get("config"), dict):
        rest = {k: v for k, v in value.items() if k != "config"}
        return {**value["config"], **rest}
    return value


class StreamData(_Body):
    _flat = model_validator(mode="before")(_flat_stream_config)
    chunk_size: int = Field(default=1000, ge=1, le=10_000)
    format: Literal["json", "jsonl", "csv", "arrow"] = "jsonl"
    compression: Literal["gzip"] | None = None
    include_headers: bool = True
    columns: list[str] | None = None
    where: Where = None
    order_by: list[Annotated[OrderBy, BeforeValidator(_order_item)]] | None = None

    def order(self) -> list[dict[str, Any]] | None:
        return None if self.order_by is None else [o.model_dump() for o in self.order_by]
