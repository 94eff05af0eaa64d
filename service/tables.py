"""Table endpoints: list, create, describe, drop.

``POST /tables`` answers 200 with the created table, as the original Pixeltable server does (the contract's
"creating POSTs answer 200"); so do the others.
"""

from __future__ import annotations

from typing import cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine import Database
from service.auth.gate import principal_of
from service.context import database, table_of
from service.json import JSONResponse, parse_body
from service.models import CreateTable, Message, TableCreated, TableInfo


def _create(db: Database, body: CreateTable) -> TableCreated:
    table = db.create_table(body.name, body.columns(), primary_key=body.primary_key, shards=body.shards)
    return {"message": f"Table '{body.name}' created successfully", "table": cast(TableInfo, table.info())}


def _drop(db: Database, name: str) -> Message:
    db.table(name)  # an invalid name is a 400, like everywhere else, before the catalog says 404
    db.drop_table(name)
    return {"message": f"Table '{name}' dropped successfully"}


async def list_tables(request: Request) -> Response:
    """The tables the caller may read (a key limited to some tables sees only those)."""
    names = await run_in_threadpool(database(request).list_tables)
    principal = principal_of(request)
    return JSONResponse(names if principal.anonymous else principal.readable_tables(names))


async def create_table(request: Request) -> Response:
    body = await parse_body(request, CreateTable)
    return JSONResponse(await run_in_threadpool(_create, database(request), body))


async def get_table(request: Request) -> Response:
    info = await run_in_threadpool(lambda: table_of(request).info())
    return JSONResponse(info)


async def drop_table(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_drop, database(request), request.path_params["table"]))
