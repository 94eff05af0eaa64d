"""The one place that maps exceptions to HTTP statuses and error bodies.

Every error body is ``{"detail": "<human message>", "code": "<stable_machine_code>", ...fields}``. The status is
found by walking the exception's class hierarchy (most specific class first), the way Starlette looks up its
exception handlers::

    SchemaMismatch 422   InvalidRequest 400   NotFound 404   Conflict 409   TooLarge 413   Unauthorized 401
    UnsupportedMediaType 415   Forbidden 403   RateLimited 429 (Retry-After)   UserError 400   ShardUnavailable, CatalogBusy 503 (Retry-After)   EngineError 500
    ValidationError 422
    HTTPException (routing: 404 unknown path, 405 wrong method)   anything else 500

A 500 never shows the exception to the client: the body names the request id, and the traceback is logged with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine.errors import (
    CatalogBusy,
    Conflict,
    EngineError,
    ExportExpired,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    RequestInProgress,
    SchemaMismatch,
    ShardUnavailable,
    TooLarge,
    UserError,
)
from service.json import JSONResponse

log = logging.getLogger("tessera.service")

REQUEST_ID_KEY = "tessera.request_id"  # where the request-id middleware leaves the id in the ASGI scope


# -- errors raised by the service itself -------------------------------------------------------------------------
class Unauthorized(UserError):
    """No usable key: ``reason`` is ``missing``, ``malformed``, ``unknown``, ``revoked``, ``rotated`` or ``expired``."""

    code = "unauthorized"

    def __init__(self, message: str = "API key required", reason: str = "missing") -> None:
        super().__init__(message, reason=reason)


class Forbidden(UserError):
    """A key without the permission a request needs: 403, naming the resource, action and table it lacks."""

    code = "insufficient_permissions"

    def __init__(self, resource: str, action: str, table: str | None = None, why: str = "") -> None:
        where = f" on table '{table}'" if table else ""
        super().__init__(
            f"Insufficient permissions: this API key lacks '{action}' on '{resource}'{where}{why}",
            resource=resource,
            action=action,
            table=table,
        )


class RateLimited(UserError):
    """A key past one of its rate limits: 429 with Retry-After; nothing of the request ran."""

    code = "rate_limited"

    def __init__(self, limit: str, description: str, retry_after: float) -> None:
        wait = max(1, math.ceil(retry_after))
        super().__init__(
            f"Rate limit exceeded: {description} for this API key; retry in {wait} s",
            limit=limit,
            retry_after=wait,
        )


class InvalidParameter(InvalidRequest):
    """A query-string parameter that cannot be used (``limit=abc``)."""

    code = "invalid_parameter"

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"Query parameter '{parameter}': {message}", field=parameter)


class BodyTooLarge(TooLarge):
    code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body is larger than the limit of {limit} bytes", limit=limit)


class UnsupportedMediaType(UserError):
    """A body in a format the endpoint does not read (``text/plain``, a form): refused before anything runs, which
    also keeps a web page from sending the API a request a browser would not have checked with CORS first."""

    code = "unsupported_media_type"

    def __init__(self, received: str | None, expected: Sequence[str]) -> None:
        shown = " or ".join(expected)
        got = f"Content-Type '{received}' is not supported" if received else "A request body needs a Content-Type"
        super().__init__(f"{got}; send Content-Type: {shown}", content_type=received, expected=list(expected))


class InvalidHost(InvalidRequest):
    """A ``Host`` header naming a server this is not: what a DNS-rebinding page sends to a loopback service."""

    code = "invalid_host"

    def __init__(self, host: str | None) -> None:
        message = f"Host '{host}' is not allowed" if host else "The request has no valid Host header"
        super().__init__(f"{message}; add the name with --allowed-hosts (TESSERA_ALLOWED_HOSTS)", host=host)


class CorsRefused(InvalidRequest):
    """A CORS preflight from an origin (or asking for a method or header) that the server does not allow."""

    code = "cors_refused"

    def __init__(self, origin: str, refused: str) -> None:
        super().__init__(f"CORS preflight refused ({refused}) for origin '{origin}'", origin=origin)


class NotReady(ShardUnavailable):
    code = "not_ready"


class ComputedColumnNotFound(NotFound):
    """The computed column named in the path does not exist (404), unlike an unknown column named in a body or
    an expression, which is a bad request (``ColumnNotFound``, 400)."""

    code = "computed_column_not_found"

    def __init__(self, table: str, column: str) -> None:
        super().__init__(f"Computed column '{column}' not found in table '{table}'", table=table, column=column)


__all__ = [
    "BodyTooLarge",
    "ComputedColumnNotFound",
    "CorsRefused",
    "Forbidden",
    "InvalidHost",
    "InvalidParameter",
    "NotReady",
    "RateLimited",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_response",
    "exception_handlers",
    "status_for",
]

# -- the mapping -------------------------------------------------------------------------------------------------
_STATUS: dict[type[BaseException], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    RateLimited: 429,
    UnsupportedMediaType: 415,
    SchemaMismatch: 422,
    IdempotencyKeyReused: 422,
    InvalidRequest: 400,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    ExportExpired: 410,
    UserError: 400,
    ShardUnavailable: 503,
    CatalogBusy: 503,
    EngineError: 500,
    ValidationError: 422,
}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
_GENERIC = "Internal server error"
# our side is busy or recovering, or the first request with this Idempotency-Key still runs: shown, with Retry-After
_RETRYABLE = (ShardUnavailable, CatalogBusy, RequestInProgress, RateLimited)


def status_for(exc: BaseException) -> int:
    """The HTTP status of an exception: the entry of its most specific class that has one."""
    if isinstance(exc, HTTPException):
        return exc.status_code
    for cls in type(exc).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 500


def _validation_body(exc: ValidationError) -> dict[str, Any]:
    errors = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:10])
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return {"detail": f"Invalid request body: {shown}{more}", "code": "validation_error", "errors": errors}


def _http_body(exc: HTTPException, request: Request) -> dict[str, Any]:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404:
        detail = f"Not found: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"Method {request.method} not allowed on {request.url.path}; allowed: {allowed}"
    else:
        detail = str(exc.detail)
    return {"detail": detail, "code": code}


def error_response(request: Request, exc: BaseException) -> Response:
    """The response for ``exc``; unexpected errors are logged with the request id and shown generically."""
    status = status_for(exc)
    request_id = request.scope.get(REQUEST_ID_KEY, "-")
    headers: dict[str, str] = {}
    body: dict[str, Any]
    if isinstance(exc, HTTPException):
        body = _http_body(exc, request)
        headers.update(exc.headers or {})
    elif isinstance(exc, ValidationError):
        body = _validation_body(exc)
    elif isinstance(exc, (UserError, *_RETRYABLE)):
        body = exc.to_dict()
        if isinstance(exc, _RETRYABLE):
            headers["Retry-After"] = str(max(1, math.ceil(exc.fields.get("retry_after", 1))))
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
    else:
        log.error(
            "request %s %s %s failed (request id %s)",
            request.method,
            request.url.path,
            type(exc).__name__,
            request_id,
            exc_info=exc,
        )
        body = {"detail": f"{_GENERIC} (request id {request_id})", "code": "internal_error", "request_id": request_id}
        status = 500
    return JSONResponse(body, status_code=status, headers=headers)


async def _handle(request: Request, exc: Exception) -> Response:
    return error_response(request, exc)


def exception_handlers() -> dict[Any, Any]:
    """Starlette exception handlers for everything the app raises on purpose.

    Anything else escapes to ``service.middleware.RequestContextMiddleware``, which calls ``error_response`` too
    (so a 500 still carries ``X-Request-ID``).
    """
    return {HTTPException: _handle, UserError: _handle, EngineError: _handle, ValidationError: _handle}
