"""Pure ASGI middleware (no ``BaseHTTPMiddleware``: it copies every message through a task group and is slow).

- ``RequestContextMiddleware`` (outermost): gives every request an id, echoed as ``X-Request-ID`` on every
  response, and turns any exception that escaped the inner layers into an error response (``service.errors``),
  so that even a 500 carries the id.
- ``BodyLimitMiddleware``: a ``Content-Length`` over the limit is refused before the body is read; a chunked body
  that grows past it is refused while it streams.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import REQUEST_ID_KEY, BodyTooLarge, error_response

_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _request_id(scope: Scope) -> str:
    given = Headers(scope=scope).get("x-request-id")
    return given if given and _SANE_ID.match(given) else uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope[REQUEST_ID_KEY] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:  # too late to answer with an error; let the server log it and drop the connection
                raise
            response = error_response(Request(scope), exc)
            await response(scope, receive, send_with_id)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            raise BodyTooLarge(self.limit)
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, receive_limited, send)
