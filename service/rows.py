"""Row endpoints: insert one or many, read (paged list, query, one row, count), update, delete.

Statuses: every success is 200, ``POST /tables/{t}/rows`` and ``POST /tables/{t}/rows/batch`` included (creating
POSTs answer 200, as the original Pixeltable server does).
``GET /tables/{t}/rows/{row_id}`` (not in the contract) answers ``{"data": row}``, like the other single-row
endpoints. ``GET /rows/count`` is routed before ``GET /rows/{row_id}``, so a row whose key is the text ``count`` is
read with a ``where`` filter instead (``POST /tables/{t}/query``). A key containing ``/`` cannot be addressed in a
path at all (the path is decoded before routing); use a ``where`` filter for those too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from engine import ColumnNotFound, QueryResult, SchemaMismatch, Table, TooLarge
from engine.errors import FieldError, InvalidRequest
from engine.model.coerce import table_to_rows
from service.context import settings, table_of
from service.json import JSONResponse, parse_body, parse_optional_body
from service.models import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    DeleteRows,
    InsertBatch,
    InsertRow,
    Message,
    Query,
    QueryResponse,
    RowCount,
    RowData,
    RowOnly,
    RowsUpdated,
    TableRowCount,
    UpdateRow,
    UpdateRows,
)
from service.query_string import integer, names, refuse_unknown

LIST_PARAMS = ("limit", "offset", "select", "order_by")
R = TypeVar("R")


# -- blocking work (run in the thread pool) ---------------------------------------------------------------------
def _query_response(table: Table, result: QueryResult) -> QueryResponse:
    return {
        "rows": table_to_rows(result.rows, table.schema),
        "total_count": result.total_count,
        "has_more": result.has_more,
        "next_offset": result.next_offset,
    }


def _as_single_row(exc: SchemaMismatch | ColumnNotFound) -> Exception:
    """The engine reports a one-row insert as ``rows.0.col``; the request's field is ``data.col``."""
    if isinstance(exc, ColumnNotFound):
        return ColumnNotFound(exc.fields["table"], exc.fields["column"], "data")
    return SchemaMismatch([FieldError(("data", *e.loc[2:]), e.msg, e.type) for e in exc.errors])


def _insert_row(table: Table, data: dict[str, Any]) -> RowData:
    schema = table.schema
    try:
        result = table.insert(data, return_rows=True)
    except (SchemaMismatch, ColumnNotFound) as exc:
        raise _as_single_row(exc) from None
    assert result.rows is not None
    return {"message": "Row inserted successfully", "data": table_to_rows(result.rows, schema)[0]}


def _insert_batch(table: Table, rows: list[Any]) -> RowCount:
    count = table.insert(rows).rows_affected
    return {"message": f"{count} rows inserted successfully", "row_count": count}


def _query(table: Table, q: Query) -> QueryResponse:
    result = table.query(select=q.select, where=q.where, order_by=q.order(), limit=q.limit, offset=q.offset)
    return _query_response(table, result)


def _update_rows(table: Table, body: UpdateRows) -> RowsUpdated:
    count = table.update(body.where, body.set)
    return {"message": f"{count} rows updated successfully", "updated_fields": list(body.set), "row_count": count}


def _delete_rows(table: Table, where: Any) -> RowCount:
    count = table.delete(where)
    return {"message": f"{count} rows deleted successfully", "row_count": count}


def _update_row(table: Table, text: str, body: UpdateRow) -> RowData:
    row_id = table.key_from_text(text)
    if body.row_id is not None and table.key_from_text(str(body.row_id)) != row_id:
        raise InvalidRequest(f"row_id {body.row_id!r} in the body differs from '{text}' in the path", field="row_id")
    return {"message": "Row updated successfully", "data": table.update_row(row_id, body.data)}


def _count(table: Table) -> TableRowCount:
    return {"table_name": table.name, "row_count": table.count()}


def _get_row(table: Table, text: str) -> RowOnly:
    return {"data": table.get(table.key_from_text(text))}


def _delete_row(table: Table, text: str) -> Message:
    table.delete_row(table.key_from_text(text))
    return {"message": "Row deleted successfully"}


def list_query(params: QueryParams) -> Query:
    """``?limit=100&offset=0&select=a,b&order_by=col:desc,other`` as a ``Query``; bad parameters are 400."""
    refuse_unknown(params, LIST_PARAMS, " (filter with POST /tables/{t}/query)")
    # The values are already checked, so this validation cannot fail; it turns "col:desc" into an OrderBy.
    return Query.model_validate(
        {
            "select": names(params, "select"),
            "order_by": names(params, "order_by"),
            "limit": integer(params, "limit", DEFAULT_LIMIT, MAX_LIMIT),
            "offset": integer(params, "offset", 0, MAX_OFFSET),
        }
    )


# -- endpoints --------------------------------------------------------------------------------------------------
async def _on_table(request: Request, work: Callable[[Table], R]) -> R:
    """Run ``work`` on the table named in the path, in the thread pool (finding the table reads the catalog)."""
    return await run_in_threadpool(lambda: work(table_of(request)))


async def insert_row(request: Request) -> Response:
    body = await parse_body(request, InsertRow)
    return JSONResponse(await _on_table(request, partial(_insert_row, data=body.data)))


async def insert_batch(request: Request) -> Response:
    body = await parse_body(request, InsertBatch)
    limit = settings(request).max_rows_per_request
    if len(body.rows) > limit:
        raise TooLarge(f"{len(body.rows)} rows in one request; the limit is {limit}", limit=limit)
    return JSONResponse(await _on_table(request, partial(_insert_batch, rows=body.rows)))


async def list_rows(request: Request) -> Response:
    query = list_query(request.query_params)
    return JSONResponse(await _on_table(request, partial(_query, q=query)))


async def query_rows(request: Request) -> Response:
    body = await parse_body(request, Query)
    return JSONResponse(await _on_table(request, partial(_query, q=body)))


async def update_rows(request: Request) -> Response:
    body = await parse_body(request, UpdateRows)
    return JSONResponse(await _on_table(request, partial(_update_rows, body=body)))


async def delete_rows(request: Request) -> Response:
    body = await parse_optional_body(request, DeleteRows)
    return JSONResponse(await _on_table(request, partial(_delete_rows, where=None if body is None else body.where)))


async def count_rows(request: Request) -> Response:
    return JSONResponse(await _on_table(request, _count))


async def get_row(request: Request) -> Response:
    return JSONResponse(await _on_table(request, partial(_get_row, text=request.path_params["row_id"])))


async def update_row(request: Request) -> Response:
    body = await parse_body(request, UpdateRow)
    return JSONResponse(await _on_table(request, partial(_update_row, text=request.path_params["row_id"], body=body)))


async def delete_row(request: Request) -> Response:
    return JSONResponse(await _on_table(request, partial(_delete_row, text=request.path_params["row_id"])))
