"""``POST /batch/operations``: many operations on any tables, by default as one transaction.

A request that was processed answers 200 and its body says what failed (``errors``, per-operation ``status``);
a request that could not be processed at all answers 4xx: a malformed body (400), a body of the wrong shape
(422), more than 1000 operations or too many rows (413), an empty operation list (400), an Idempotency-Key
already used with a different body (422). A retry with the same key and body returns the first result.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from service.context import database
from service.json import JSONResponse, parse_body
from service.models import BatchRequest


async def batch_operations(request: Request) -> Response:
    body = await parse_body(request, BatchRequest)
    # exclude_unset keeps "where" absent when the client left it out, so the engine can say it is required.
    operations = [op.model_dump(exclude_unset=True) for op in body.operations]
    db = database(request)
    key = request.headers.get("idempotency-key")
    result = await run_in_threadpool(
        lambda: db.batch(
            operations, transaction=body.transaction, continue_on_error=body.continue_on_error, idempotency_key=key
        )
    )
    return JSONResponse(result.to_dict(body.return_results))
