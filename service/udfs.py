"""UDF endpoints: register, list, describe, replace, drop and execute the user-defined functions of a table.

``POST /tables/{t}/udfs`` answers 200 with the UDF's info (creating POSTs answer 200, as the original Pixeltable
server does); ``PUT /tables/{t}/udfs/{name}`` replaces a UDF's code (and, while no computed column calls it, its
parameters and return type) and marks the stored columns that call it ``stale``; the others answer 200.
``GET /tables/{t}/udfs`` is a JSON array, like ``GET /tables``. An execute body is the arguments by name: a
missing, unknown or mistyped argument is 422 naming each; a UDF that raises (or returns the wrong type) is 400
``udf_error``; one that overruns a sandbox limit is 400 ``udf_limit_exceeded`` naming the limit. The engine's errors
map to statuses in ``service.errors``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine import Table
from engine.errors import InvalidUdf
from service.context import table_of
from service.json import JSONResponse, loads, parse_body
from service.models import Message, RegisterUdf, ReplaceUdf, UDFInfo, UdfResult

R = TypeVar("R")


# -- blocking work (run in the thread pool) ---------------------------------------------------------------------
def _register(table: Table, body: RegisterUdf | ReplaceUdf, name: str | None = None) -> UDFInfo:
    info = table.register_udf(
        name or cast(str, body.name),
        body.language,
        body.code,
        [p.model_dump(exclude_none=True) for p in body.parameters],
        body.return_type,
        description=body.description,
        deterministic=body.deterministic,
        replace=name is not None,
    )
    return cast(UDFInfo, info)


def _drop(table: Table, name: str) -> Message:
    table.drop_udf(name)
    return {"message": f"UDF '{name}' deleted successfully"}


def _execute(table: Table, name: str, arguments: Any) -> UdfResult:
    start = time.perf_counter()
    result = table.execute_udf(name, arguments)
    return {"result": result, "execution_time_ms": round((time.perf_counter() - start) * 1000, 3)}


# -- endpoints --------------------------------------------------------------------------------------------------
async def _on_table(request: Request, work: Callable[[Table], R]) -> R:
    return await run_in_threadpool(lambda: work(table_of(request)))


async def register_udf(request: Request) -> Response:
    body = await parse_body(request, RegisterUdf)
    return JSONResponse(await _on_table(request, partial(_register, body=body)))


async def replace_udf(request: Request) -> Response:
    body = await parse_body(request, ReplaceUdf)
    name = request.path_params["name"]
    if body.name is not None and body.name != name:
        raise InvalidUdf(f"name: the body names '{body.name}' but the path names '{name}'", field="name")
    return JSONResponse(await _on_table(request, partial(_register, body=body, name=name)))


async def list_udfs(request: Request) -> Response:
    return JSONResponse(await _on_table(request, lambda t: t.udfs()))


async def get_udf(request: Request) -> Response:
    name = request.path_params["name"]
    return JSONResponse(await _on_table(request, lambda t: t.udf(name)))


async def drop_udf(request: Request) -> Response:
    return JSONResponse(await _on_table(request, partial(_drop, name=request.path_params["name"])))


async def execute_udf(request: Request) -> Response:
    body = await request.body()
    arguments = {} if not body.strip() else loads(body)
    name = request.path_params["name"]
    return JSONResponse(await _on_table(request, partial(_execute, name=name, arguments=arguments)))
