"""Computed column endpoints: add, list, describe, drop and recompute the computed columns of a table.

``POST /tables/{t}/computed-columns`` answers 200 with the column's info (creating POSTs answer 200), as do
the others.
``GET /tables/{t}/computed-columns`` is a JSON array, like ``GET /tables``. A computed column named in the path
that does not exist is 404 ``computed_column_not_found``; an unknown column named in the body (the expression,
``dependencies``, ``parameters``, a recompute's ``where``) is 400 ``column_not_found``, as in the row endpoints.
The engine validates definitions and names the offending field; its statuses come from ``service.errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine import ColumnNotFound, Table
from service.context import table_of
from service.errors import ComputedColumnNotFound
from service.json import JSONResponse, parse_body, parse_optional_body
from service.models import AddComputedColumn, ComputedColumnInfo, Message, Recompute, RecomputeResult

R = TypeVar("R")


# -- blocking work (run in the thread pool) ---------------------------------------------------------------------
def _add(table: Table, body: AddComputedColumn) -> ComputedColumnInfo:
    info = table.add_computed_column(
        body.name,
        body.column_type,
        body.expression,
        dependencies=body.dependencies,
        parameters=body.parameters,
        cache_results=body.cache_results,
    )
    return cast(ComputedColumnInfo, info)


def _list(table: Table) -> list[ComputedColumnInfo]:
    return cast(list[ComputedColumnInfo], table.computed_columns())


def _describe(table: Table, column: str) -> ComputedColumnInfo:
    return cast(ComputedColumnInfo, table.computed_column(column))


def _drop(table: Table, column: str) -> Message:
    table.drop_computed_column(column)
    return {"message": f"Computed column '{column}' dropped successfully"}


def _recompute(table: Table, column: str, where: object) -> RecomputeResult:
    return cast(RecomputeResult, table.recompute(column, where))


# -- endpoints --------------------------------------------------------------------------------------------------
async def _on_table(request: Request, work: Callable[[Table], R]) -> R:
    """Run ``work`` on the table named in the path, in the thread pool (finding the table reads the catalog)."""
    return await run_in_threadpool(lambda: work(table_of(request)))


async def _on_column(request: Request, work: Callable[[Table, str], R]) -> R:
    """Run ``work`` on the table and computed column named in the path; a missing column is a 404."""
    column: str = request.path_params["column"]

    def run(table: Table) -> R:
        try:
            return work(table, column)
        except ColumnNotFound as exc:
            # The engine says ColumnNotFound (400) for every unknown column; the one in the path is a resource.
            if exc.fields.get("column") == column:
                raise ComputedColumnNotFound(table.name, column) from None
            raise

    return await _on_table(request, run)


async def add_computed_column(request: Request) -> Response:
    body = await parse_body(request, AddComputedColumn)
    return JSONResponse(await _on_table(request, partial(_add, body=body)))


async def list_computed_columns(request: Request) -> Response:
    return JSONResponse(await _on_table(request, _list))


async def get_computed_column(request: Request) -> Response:
    return JSONResponse(await _on_column(request, _describe))


async def drop_computed_column(request: Request) -> Response:
    return JSONResponse(await _on_column(request, _drop))


async def recompute(request: Request) -> Response:
    body = await parse_optional_body(request, Recompute)
    where = None if body is None else body.where
    return JSONResponse(await _on_column(request, partial(_recompute, where=where)))
