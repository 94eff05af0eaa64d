"""``POST /batch/operations``: many operations on any tables, by default as one transaction.

A request that was processed answers 200 and its body says what failed (``errors``, per-operation ``status``);
a request that could not be processed at all answers 4xx: a malformed body (400), a body of the wrong shape
(422), more than 1000 operations or too many rows (413), an empty operation list (400), an Idempotency-Key
longer than 255 characters (400) or already used with a different body (422), or a retry while the first request
with that key still runs (409 ``request_in_progress``, Retry-After). A retry with the same key and body returns
the first answer.

An operation that failed on our side shows a stable sentence and its code, never the cause (a path of the data
directory, a Lance or Ray message): the cause is logged here with the request id.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine import BatchResult, EngineError
from service.auth.gate import principal_of
from service.auth.policy import authorize_operations
from service.context import database
from service.errors import REQUEST_ID_KEY
from service.json import JSONResponse, parse_body
from service.models import BatchRequest

log = logging.getLogger("tessera.service")


async def batch_operations(request: Request) -> Response:
    body = await parse_body(request, BatchRequest)
    # exclude_unset keeps "where" absent when the client left it out, so the engine can say it is required.
    operations = [op.model_dump(exclude_unset=True) for op in body.operations]
    authorize_operations(principal_of(request), operations)  # every operation, before any runs
    db = database(request)
    key = request.headers.get("idempotency-key")
    result = await run_in_threadpool(
        lambda: db.batch(
            operations, transaction=body.transaction, continue_on_error=body.continue_on_error, idempotency_key=key
        )
    )
    _log_causes(request, result)
    return JSONResponse(result.to_dict(body.return_results))


def _log_causes(request: Request, result: BatchResult) -> None:
    """Log the failures on our side with the request id: the client saw only a stable sentence and a code."""
    request_id = request.scope.get(REQUEST_ID_KEY, "-")
    for error in result.errors:
        if isinstance(error.cause, EngineError):
            log.warning(
                "batch operation %d (%s on table %r) failed on our side (request id %s): %s",
                error.operation,
                error.operation_type,
                error.table,
                request_id,
                error.cause.message,
                exc_info=error.cause,
            )
