"""The OpenAPI 3.1 document of the REST API (``GET /openapi.json``), built from the table below and the app's routes.

``OPERATIONS`` says, for each method and path template, what the operation takes and returns: its body is a pydantic
model of ``service.models`` / ``service.auth.models``, its 200 response a TypedDict of the same modules, and pydantic
writes their JSON Schemas (hoisted into ``components.schemas``). The document is built by walking the routes that
are really served, mounts included, so it never lists an endpoint that does not exist, and a route the table lacks
is an ``UndocumentedRoute`` error naming it: adding an endpoint without documenting it fails loudly.

>>> from starlette.routing import Mount
>>> from service.app import api_routes
>>> doc = openapi_document([Mount("/api/v1", routes=api_routes())])
>>> doc["paths"]["/api/v1/tables"]["post"]["requestBody"]["content"]["application/json"]["schema"]
{'$ref': '#/components/schemas/CreateTable'}

Error statuses follow from an operation's shape (a path parameter can be 404, a body 413/415/422, a non-public
operation 401/403/429) plus the ones it lists itself (409 for a duplicate name); all share the ``Error`` schema.
Each operation's description says which permission it needs (``service.auth.policy``).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import typing_extensions
from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from engine.jobs.types import JOB_TYPES
from engine.storage.jobs import STATUSES
from service import models as m
from service.auth import models as auth
from service.auth.policy import rule_for
from service.health import VERSION

OPENAPI_VERSION = "3.1.0"
SCHEMA_REF = "#/components/schemas/{model}"
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]  # either one
Needs = Callable[[str, str], str | None]  # (method, template as the policy names it) -> "data:read"

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})  # the media-type and size checks read these bodies
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


class UndocumentedRoute(LookupError):
    """Routes the app serves that ``OPERATIONS`` does not describe (a programming error, found when building)."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            f"{len(missing)} route(s) missing from the OpenAPI table (service/openapi.py OPERATIONS): "
            + ", ".join(missing)
        )


# -- the table ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """A query or header parameter (path parameters come from the template)."""

    name: str
    schema: dict[str, Any]
    description: str
    location: Literal["query", "header"] = "query"


@dataclass(frozen=True)
class Operation:
    """One endpoint. ``body``/``response``: a pydantic model, a TypedDict or any type pydantic can describe (``None``:
    no body, or a 200 described by ``media_type`` alone); ``errors``: statuses beyond those its shape implies."""

    summary: str
    tag: str
    body: Any = None
    response: Any = None
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    description: str = ""
    body_required: bool = True
    public: bool = False
    media_type: str = "application/json"


_LIST_PARAMS = (
    Param(
        "limit", {"type": "integer", "minimum": 0, "maximum": m.MAX_LIMIT, "default": m.DEFAULT_LIMIT}, "Rows to return"
    ),
    Param("offset", {"type": "integer", "minimum": 0, "maximum": m.MAX_OFFSET, "default": 0}, "Rows to skip"),
    Param("select", {"type": "string"}, "Columns to return, comma-separated (`a,b`)"),
    Param("order_by", {"type": "string"}, "Sort order, comma-separated `column[:asc|desc]` (`age:desc,name`)"),
)
_IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    {"type": "string", "maxLength": 255},
    "A retry with the same key and body returns the first answer without applying the operations twice",
    "header",
)
_JOB_IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    {"type": "string", "maxLength": 255},
    "A retry with the same key (from the same API key) returns the job created first instead of a second one",
    "header",
)
_JOB_LIST_PARAMS = (
    Param("status", {"enum": list(STATUSES)}, "Only jobs in this status"),
    Param("job_type", {"enum": list(JOB_TYPES)}, "Only jobs of this type"),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": m.MAX_JOB_LIMIT, "default": m.DEFAULT_JOB_LIMIT},
        "Jobs to return (newest first)",
    ),
    Param("offset", {"type": "integer", "minimum": 0, "maximum": m.MAX_OFFSET, "default": 0}, "Jobs to skip"),
)
_HOURS = Param("hours", {"type": "integer", "minimum": 1, "default": 24}, "The period to count, in hours")
_PATH_PARAMS = {
    "table": "Table name (`^[A-Za-z][A-Za-z0-9_]*$`)",
    "row_id": "The row's primary-key value (or the engine's row id when the table has no primary key)",
    "column": "Computed column name",
    "name": "UDF name",
    "key_id": "API key id",
    "job_id": "Job id (as `POST /batch/jobs` answered it)",
    "path": "File name",
}
_OPEN_KEYS = " In open mode key management is open to every local caller."


def _health(prefix: str) -> dict[tuple[str, str], Operation]:
    return {
        ("GET", f"{prefix}/health"): Operation("Liveness", "health", response=m.Health, errors=(503,), public=True),
        ("GET", f"{prefix}/ready"): Operation(
            "Readiness: 200 once the engine can serve, else 503", "health", response=m.Ready, errors=(503,), public=True
        ),
    }


def _operations() -> dict[tuple[str, str], Operation]:
    t = "/api/v1/tables/{table}"
    keys = "/api/v1/auth/api-keys"
    job = "/api/v1/batch/jobs/{job_id}"
    return {
        **_health(""),
        **_health("/api/v1"),
        # the documentation itself (service.docs)
        ("GET", "/openapi.json"): Operation("This document", "docs", public=True),
        ("GET", "/docs"): Operation("API documentation page (Swagger UI)", "docs", public=True, media_type="text/html"),
        ("GET", "/docs/assets/{path}"): Operation(
            "Static files of the documentation page", "docs", errors=(404,), public=True, media_type="*/*"
        ),
        # tables
        ("GET", "/api/v1/tables"): Operation("List table names", "tables", response=list[str]),
        ("POST", "/api/v1/tables"): Operation(
            "Create a table", "tables", body=m.CreateTable, response=m.TableCreated, errors=(409,)
        ),
        ("GET", t): Operation("Describe a table", "tables", response=m.TableInfo),
        ("DELETE", t): Operation("Drop a table", "tables", response=m.Message, errors=(409,)),
        # rows
        ("POST", f"{t}/query"): Operation(
            "Query rows (filter, sort, page)", "rows", body=m.Query, response=m.QueryResponse
        ),
        ("GET", f"{t}/rows/count"): Operation("Count rows", "rows", response=m.TableRowCount),
        ("POST", f"{t}/rows/batch"): Operation(
            "Insert many rows (one transaction)", "rows", body=m.InsertBatch, response=m.RowCount, errors=(409,)
        ),
        ("GET", f"{t}/rows"): Operation("List rows", "rows", response=m.QueryResponse, query=_LIST_PARAMS),
        ("POST", f"{t}/rows"): Operation("Insert a row", "rows", body=m.InsertRow, response=m.RowData, errors=(409,)),
        ("PATCH", f"{t}/rows"): Operation(
            "Update the rows matching `where`", "rows", body=m.UpdateRows, response=m.RowsUpdated
        ),
        ("DELETE", f"{t}/rows"): Operation(
            "Delete the rows matching `where` (no body: every row)",
            "rows",
            body=m.DeleteRows,
            response=m.RowCount,
            body_required=False,
        ),
        ("GET", t + "/rows/{row_id}"): Operation("Read a row", "rows", response=m.RowOnly),
        ("PUT", t + "/rows/{row_id}"): Operation("Update a row", "rows", body=m.UpdateRow, response=m.RowData),
        ("DELETE", t + "/rows/{row_id}"): Operation("Delete a row", "rows", response=m.Message),
        # computed columns
        ("GET", f"{t}/computed-columns"): Operation(
            "List computed columns", "computed columns", response=list[m.ComputedColumnInfo]
        ),
        ("POST", f"{t}/computed-columns"): Operation(
            "Add a computed column",
            "computed columns",
            body=m.AddComputedColumn,
            response=m.ComputedColumnInfo,
            errors=(409,),
        ),
        ("GET", t + "/computed-columns/{column}"): Operation(
            "Describe a computed column", "computed columns", response=m.ComputedColumnInfo
        ),
        ("DELETE", t + "/computed-columns/{column}"): Operation(
            "Drop a computed column", "computed columns", response=m.Message, errors=(409,)
        ),
        ("POST", t + "/computed-columns/{column}/recompute"): Operation(
            "Recompute a computed column (no body: every row)",
            "computed columns",
            body=m.Recompute,
            response=m.RecomputeResult,
            body_required=False,
        ),
        # UDFs
        ("GET", f"{t}/udfs"): Operation("List UDFs", "udfs", response=list[m.UDFInfo]),
        ("POST", f"{t}/udfs"): Operation(
            "Register a UDF", "udfs", body=m.RegisterUdf, response=m.UDFInfo, errors=(409,)
        ),
        ("GET", t + "/udfs/{name}"): Operation("Describe a UDF", "udfs", response=m.UDFInfo),
        ("PUT", t + "/udfs/{name}"): Operation(
            "Replace a UDF's code", "udfs", body=m.ReplaceUdf, response=m.UDFInfo, errors=(409,)
        ),
        ("DELETE", t + "/udfs/{name}"): Operation("Drop a UDF", "udfs", response=m.Message, errors=(409,)),
        ("POST", t + "/udfs/{name}/execute"): Operation(
            "Execute a UDF",
            "udfs",
            body=dict[str, Any],
            response=m.UdfResult,
            description="The body holds the arguments by name (no body: no arguments).",
            body_required=False,
        ),
        # batch operations
        ("POST", "/api/v1/batch/operations"): Operation(
            "Run many operations, by default as one transaction",
            "batch",
            body=m.BatchRequest,
            response=m.BatchResponse,
            query=(_IDEMPOTENCY_KEY,),
            errors=(409,),
            description="A request that was processed answers 200 and its body says what failed; more than 1000 "
            "operations is 413; a retry while the first request with its Idempotency-Key runs is 409.",
        ),
        # jobs (service.jobs)
        ("POST", "/api/v1/batch/jobs"): Operation(
            "Queue a background job",
            "jobs",
            body=m.CreateJob,
            response=m.JobInfo,
            query=(_JOB_IDEMPOTENCY_KEY,),
            description="Answers the job, usually still `pending`. An unknown `job_type`, or a `custom` job whose "
            "`parameters.type` names no registered job type, is 400 with `allowed`; the parameters a type needs "
            "are checked when the job runs (it then fails naming the parameter).",
        ),
        ("GET", "/api/v1/batch/jobs"): Operation(
            "List jobs, newest first", "jobs", response=list[m.JobInfo], query=_JOB_LIST_PARAMS
        ),
        ("GET", job): Operation(
            "Read a job: status, progress, result or error, and its log", "jobs", response=m.JobInfo
        ),
        ("POST", f"{job}/cancel"): Operation(
            "Cancel a job (idempotent: a finished job answers `cancelled: false` and its status)",
            "jobs",
            response=m.JobCancelResult,
        ),
        ("DELETE", job): Operation(
            "Delete a finished job and its log (409 while it is pending or running)",
            "jobs",
            response=m.JobDeleted,
            errors=(409,),
        ),
        # import, export, streaming (service.transfer)
        ("POST", "/api/v1/batch/import"): Operation(
            "Import a file into a table (a `data_import` job)",
            "transfer",
            body=m.ImportData,
            response=m.JobInfo,
            errors=(404, 413),
            description="JSON with `source_url` (http(s):// under the fetch rules, file:// under "
            "TESSERA_IMPORT_DIR), or multipart/form-data with the same fields as form fields (objects as JSON text) "
            "and the file as the `file` part. Checked up front (422 shape, 400 format, mapping, rules, source "
            "scheme; 404 table); the job's result is `{rows_processed, rows_imported, rows_skipped, errors, "
            "error_count, duration_seconds}`.",
        ),
        ("POST", "/api/v1/batch/export"): Operation(
            "Export a table's rows to a file (a `data_export` job)",
            "transfer",
            body=m.ExportData,
            response=m.JobInfo,
            errors=(404,),
            description="The job's result is `{rows_exported, file_size_bytes, download_url, expires_at, format}`; "
            "the file is one table version, written atomically, kept TESSERA_EXPORT_TTL_HOURS.",
        ),
        ("GET", "/api/v1/batch/exports/{job_id}/download"): Operation(
            "Download an export's file (Range supported; 410 once expired)",
            "transfer",
            errors=(404, 410),
            media_type="application/octet-stream",
        ),
        ("POST", "/api/v1/batch/stream/{table}"): Operation(
            "Stream a table's rows (jsonl, json, csv or Arrow IPC; gzip optional)",
            "transfer",
            body=m.StreamData,
            errors=(404, 429),
            media_type="application/x-ndjson",
            description="Rows of one table version, encoded chunk by chunk as the shards send them: memory stays "
            "bounded. Also accepts the seed's `{config: {...}, where}`. At most TESSERA_MAX_CONCURRENT_STREAMS "
            "streams per key in flight (429).",
        ),
        # API keys (service.auth.routes)
        ("POST", keys): Operation(
            "Create an API key (the full key is shown once)",
            "auth",
            body=auth.CreateApiKey,
            response=auth.ApiKeyCreated,
            description=_OPEN_KEYS.strip(),
        ),
        ("GET", keys): Operation("List API keys", "auth", response=list[auth.ApiKeyInfo]),
        ("GET", keys + "/{key_id}"): Operation("Describe an API key", "auth", response=auth.ApiKeyInfo),
        ("POST", f"{keys}/revoke"): Operation(
            "Revoke an API key (by `key_id` or `key_prefix`)", "auth", body=auth.RevokeApiKey, response=m.Message
        ),
        ("POST", keys + "/{key_id}/rotate"): Operation(
            "Rotate an API key: a new key with the same permissions; the old one is revoked",
            "auth",
            response=auth.ApiKeyCreated,
        ),
        ("GET", keys + "/{key_id}/usage"): Operation(
            "Usage of an API key", "auth", response=auth.ApiKeyUsage, query=(_HOURS,)
        ),
        ("GET", "/api/v1/auth/verify"): Operation("Check the presented key", "auth", response=auth.Verified),
    }


OPERATIONS: dict[tuple[str, str], Operation] = _operations()

_TAGS = [
    ("tables", "Create, describe and drop tables"),
    ("rows", "Insert, read, update and delete rows"),
    ("batch", "Many operations on any tables, transactional by default"),
    ("jobs", "Background jobs: a durable queue run on the Ray cluster, with progress, logs and cancel"),
    ("computed columns", "Columns computed from expressions, UDFs, aggregates and windows"),
    ("udfs", "User-defined functions in Python, SQL or JavaScript"),
    ("auth", "API keys and their permissions"),
    ("health", "Liveness and readiness (no key needed)"),
    ("docs", "This document and its page (no key needed)"),
]


# -- error responses -----------------------------------------------------------------------------------------------
_ERRORS: dict[int, tuple[str, str, tuple[str, ...]]] = {
    400: ("BadRequest", "Malformed JSON, or an invalid operation or parameter", ()),
    401: ("Unauthorized", "API key required but missing, unknown, revoked or expired", ("WWW-Authenticate",)),
    403: ("Forbidden", "The key lacks the permission (`detail` contains `Insufficient permissions`)", ()),
    404: ("NotFound", "The table, row, column, UDF, job or API key named in the path does not exist", ()),
    409: ("Conflict", "Duplicate name or primary key, or the object is in use", ()),
    410: ("Gone", "The export expired (after `expires_at`); its file was deleted", ()),
    413: ("TooLarge", "Body over the size limit, or too many rows or operations in one request", ()),
    415: ("UnsupportedMediaType", "The body is not declared JSON (`Content-Type: application/json`)", ()),
    422: ("ValidationError", "The body does not match the request schema; `errors` lists each field", ()),
    429: ("RateLimited", "Rate limit or quota exceeded", ("Retry-After",)),
    503: ("Unavailable", "Engine not ready or a shard unavailable", ("Retry-After",)),
}
_HEADERS = {
    "X-Request-ID": ("The request's id (echoed when the client sent a sane one), also in the server's log", "string"),
    "Retry-After": ("Seconds to wait before retrying", "integer"),
    "WWW-Authenticate": ("`Bearer`", "string"),
}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error: a human message, a stable machine code, and fields that depend on the code.",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string", "examples": ["table_not_found"]},
        "errors": {
            "type": "array",
            "description": "422 only: each field that does not match",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
        "request_id": {"type": "string", "description": "500 only"},
    },
    "required": ["detail", "code"],
    "additionalProperties": True,
}


def _error_statuses(method: str, template: str, op: Operation) -> list[int]:
    """The error statuses an operation can answer: 400 for every request (the ``Host`` check, bad parameters)."""
    statuses = {400, *op.errors}
    if not op.public:
        statuses |= {401, 403, 429, 503}
        if _PARAM.search(template):
            statuses.add(404)
        if method in _BODY_METHODS:
            statuses |= {413, 415}
        if op.body is not None:
            statuses.add(422)
    return sorted(statuses)


def _header_refs(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in ("X-Request-ID", *names)}


def _components_responses() -> dict[str, Any]:
    return {
        name: {
            "description": description,
            "headers": _header_refs(*headers),
            "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(model="Error")}}},
        }
        for name, description, headers in _ERRORS.values()
    }


# -- schemas -------------------------------------------------------------------------------------------------------
def _is_named(tp: Any) -> bool:
    return typing_extensions.is_typeddict(tp) or (isinstance(tp, type) and issubclass(tp, BaseModel))


class _Schemas:
    """``components.schemas`` being filled: each type's JSON Schema, its nested definitions hoisted beside it."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Error": _ERROR_SCHEMA}

    def ref(self, tp: Any, mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        """A schema for ``tp``: a ``$ref`` to its component when it is a model or TypedDict, else inline."""
        schema = TypeAdapter(tp).json_schema(ref_template=SCHEMA_REF, mode=mode)
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        if _is_named(tp) and "$ref" not in schema:
            self._add(tp.__name__, schema)
            return {"$ref": SCHEMA_REF.format(model=tp.__name__)}
        return schema

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        known = self.components.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"two different schemas are both named '{name}' in the OpenAPI document")


# -- walking the routes ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Endpoint:
    method: str
    template: str  # the full path: "/api/v1/tables/{table}"
    local: str  # the path inside its mount, as the permission policy names it: "/tables/{table}"


def _endpoints(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[_Endpoint]:
    for route in routes:
        if isinstance(route, Route):
            if route.methods is None:
                raise TypeError(f"route {route.path} accepts every method; list its methods to document it")
            local = _PARAM.sub(r"{\1}", route.path)
            methods = route.methods - {"HEAD"} if "GET" in route.methods else route.methods
            for method in sorted(methods):
                yield _Endpoint(method, prefix + local, local)
        elif isinstance(route, Mount):
            path = prefix + _PARAM.sub(r"{\1}", route.path)
            if route.routes:
                yield from _endpoints(route.routes, path)
            else:  # an app of its own (static files): everything under it, by GET
                yield _Endpoint("GET", path + "/{path}", route.path + "/{path}")
        else:
            raise TypeError(f"cannot document a {type(route).__name__} route ({getattr(route, 'path', route)!r})")


# -- the document ----------------------------------------------------------------------------------------------------
def _operation_id(method: str, template: str) -> str:
    return method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", template).rstrip("_")


def _parameters(template: str, op: Operation) -> list[dict[str, Any]]:
    path = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": _PATH_PARAMS.get(name, ""),
        }
        for name in _PARAM.findall(template)
    ]
    other = [{"name": p.name, "in": p.location, "schema": p.schema, "description": p.description} for p in op.query]
    return path + other


def _success(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    if op.response is not None:
        schema = schemas.ref(op.response, "serialization")
    else:
        schema = {"type": "string"} if op.media_type.startswith("text/") else {}
    return {"description": "OK", "headers": _header_refs(), "content": {op.media_type: {"schema": schema}}}


def _operation(endpoint: _Endpoint, op: Operation, schemas: _Schemas, needs: Needs | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": _operation_id(endpoint.method, endpoint.template),
    }
    required = None if op.public or needs is None else needs(endpoint.method, endpoint.local)
    description = " ".join(part for part in (op.description, f"Needs: {required}." if required else "") if part)
    if description:
        out["description"] = description
    parameters = _parameters(endpoint.template, op)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schemas.ref(op.body, "validation")}},
        }
    responses: dict[str, Any] = {"200": _success(op, schemas)}
    for status in _error_statuses(endpoint.method, endpoint.template, op):
        responses[str(status)] = {"$ref": f"#/components/responses/{_ERRORS[status][0]}"}
    out["responses"] = responses
    if not op.public:
        out["security"] = SECURITY
    return out


def policy_needs(method: str, template: str) -> str:
    """What ``service.auth.policy`` says the operation needs (``data:read``)."""
    return rule_for(method, template).needs


_DESCRIPTION = """Tessera's REST API: sharded tables, rows, transactional batch operations, computed columns and \
user-defined functions.

**Authentication**: send a key as `Authorization: Bearer <key>` or `X-API-Key: <key>`. In **open** mode (local \
development, loopback only) a request without a key acts as the administrator; a key that is presented is still \
checked and its permissions enforced. In **required** mode every request but health, readiness and this \
documentation needs a key.

**Errors** are `{"detail": "<message>", "code": "<stable_code>", ...}` with the status of their kind; every response \
carries `X-Request-ID`. Every success is 200, creating POSTs included."""


def openapi_document(routes: Sequence[BaseRoute], needs: Needs | Literal["policy"] | None = "policy") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (mounts included); ``UndocumentedRoute`` names each route that
    ``OPERATIONS`` lacks. ``needs`` says what permission an operation needs (default: ``service.auth.policy``)."""
    endpoints = list(_endpoints(routes))
    missing = [f"{e.method} {e.template}" for e in endpoints if (e.method, e.template) not in OPERATIONS]
    if missing:
        raise UndocumentedRoute(missing)
    resolved = policy_needs if needs == "policy" else needs
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        op = OPERATIONS[(endpoint.method, endpoint.template)]
        paths.setdefault(endpoint.template, {})[endpoint.method.lower()] = _operation(endpoint, op, schemas, resolved)
    used_tags = {op["tags"][0] for path in paths.values() for op in path.values()}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Tessera", "version": VERSION, "description": _DESCRIPTION},
        "tags": [{"name": name, "description": text} for name, text in _TAGS if name in used_tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "responses": _components_responses(),
            "headers": {
                name: {"description": text, "schema": {"type": kind}} for name, (text, kind) in _HEADERS.items()
            },
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


# -- serving it ------------------------------------------------------------------------------------------------------
_RENDERED: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def document_bytes(app: Any) -> bytes:
    """``app``'s document as JSON, built once per app (its routes do not change once it serves). Calling it when the
    app is built makes an undocumented route fail at start-up rather than at the first ``GET /openapi.json``."""
    rendered = _RENDERED.get(app)
    if rendered is None:
        rendered = _RENDERED[app] = orjson.dumps(openapi_document(app.routes))
    return rendered


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json``."""
    return Response(document_bytes(request.app), media_type="application/json")
