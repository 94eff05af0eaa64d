"""Pure ASGI middleware (no ``BaseHTTPMiddleware``: it copies every message through a task group and is slow).

- ``RequestContextMiddleware`` (outermost): gives every request an id, echoed as ``X-Request-ID`` on every
  response, and turns any exception that escaped the inner layers into an error response (``service.errors``),
  so that even a 500 carries the id.
- ``TrustedHostsMiddleware``: refuses a ``Host`` header that names another server (400 ``invalid_host``). A web
  page that rebinds its own domain name to 127.0.0.1 reaches a loopback service with its own name as the host.
- ``CorsMiddleware`` (only with ``cors_origins``) and ``ErrorResponseMiddleware`` just inside it, which renders the
  errors of the layers below so that they carry the CORS headers too.
- ``MediaTypeMiddleware``: a request body must be JSON (415 otherwise). Browsers send ``text/plain`` or form bodies
  from any page without asking the server first; a JSON body needs a CORS preflight, which fails unless allowed.
- ``BodyLimitMiddleware``: a ``Content-Length`` over the limit is refused before the body is read; a chunked body
  that grows past it is refused while it streams.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import Settings
from service.errors import (
    REQUEST_ID_KEY,
    BodyTooLarge,
    CorsRefused,
    InvalidHost,
    UnsupportedMediaType,
    error_response,
)

# The body formats the API reads; an upload endpoint adds "multipart/form-data" (and then needs its own CSRF guard:
# a browser sends a form without a preflight).
ACCEPTED_MEDIA_TYPES: tuple[str, ...] = ("application/json", "application/*+json")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HOST_PATTERN = re.compile(r"^(\*|(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])$")
_ORIGIN = re.compile(r"^(\*|[a-z][a-z0-9+.-]*://[^/\s]+)$")
_HOST_OK = "tessera.host_ok"
_RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")

_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _request_id(scope: Scope) -> str:
    given = Headers(scope=scope).get("x-request-id")
    return given if given and _SANE_ID.match(given) else uuid.uuid4().hex


async def _answering_errors(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app``; an exception it raises before its response started becomes the error response."""
    started = False

    async def watched(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, receive, watched)
    except Exception as exc:
        if started:  # too late to answer with an error; let the server log it and drop the connection
            raise
        await error_response(Request(scope), exc)(scope, receive, send)


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

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await _answering_errors(self.app, scope, receive, send_with_id)


class ErrorResponseMiddleware:
    """Renders the errors of the layers inside it here, so the layers outside (CORS) treat them as responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _answering_errors(self.app, scope, receive, send)


# -- Host and Origin ---------------------------------------------------------------------------------------------
def _host_name(host: str) -> str:
    """``host`` as a ``Host`` header names it: lower case, an IPv6 address in brackets."""
    host = host.strip().lower()
    try:
        return f"[{host}]" if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address) else host
    except ValueError:
        return host


def trusted_hosts(settings: Settings) -> list[str] | None:
    """The ``Host`` names to answer: loopback names, the bound address and ``allowed_hosts``. ``None`` (any host)
    in required mode without ``allowed_hosts``: a key is needed anyway. ``ValueError`` names a pattern that cannot
    match (a port, a scheme, a misplaced ``*``)."""
    if settings.auth != "open" and not settings.allowed_hosts:
        return None
    for pattern in settings.allowed_hosts:
        if not _HOST_PATTERN.match(_host_name(pattern)):
            raise ValueError(
                f"allowed host {pattern!r} cannot match a Host header: give a name or address without scheme or "
                "port, or '*.example.com' for every subdomain"
            )
    names = [*LOOPBACK_HOSTS, settings.host, *settings.allowed_hosts]
    return list(dict.fromkeys(_host_name(n) for n in names))


def cors_origins(settings: Settings) -> list[str]:
    """The origins allowed to call the API from a browser; ``ValueError`` names one that no browser sends (a path,
    a trailing slash, no scheme)."""
    for origin in settings.cors_origins:
        if not _ORIGIN.match(origin.lower()):
            raise ValueError(f"CORS origin {origin!r} is not an origin: write it like 'https://app.example:3000'")
    return list(settings.cors_origins)


def cors_options(origins: Sequence[str]) -> dict[str, Any]:
    """``CorsMiddleware`` options: the given origins, the methods and headers the API uses, no cookies (keys travel
    in headers, so credentialed requests are never needed)."""
    return {
        "allow_origins": list(origins),
        "allow_methods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        "allow_headers": ["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        "expose_headers": ["X-Request-ID", "Retry-After", *_RATE_LIMIT_HEADERS],
    }


class TrustedHostsMiddleware:
    """Starlette's ``TrustedHostMiddleware`` decides; its refusal, a plain-text 400, becomes ``InvalidHost`` (the
    project's JSON error, with the request id). It is asked as a predicate: it calls its app for a trusted host."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(_mark_trusted, allowed_hosts=list(allowed_hosts), www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.check(scope, receive, _discard)
        if not scope.pop(_HOST_OK, False):
            raise InvalidHost(Headers(scope=scope).get("host"))
        await self.app(scope, receive, send)


async def _mark_trusted(scope: Scope, receive: Receive, send: Send) -> None:
    scope[_HOST_OK] = True


async def _discard(message: Message) -> None:
    pass


class CorsMiddleware(CORSMiddleware):
    """Starlette's, with a refused preflight raised as ``CorsRefused`` (a JSON error) instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 400:
            refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
            raise CorsRefused(request_headers["origin"], refused)
        return response


# -- bodies ------------------------------------------------------------------------------------------------------
def media_type_accepted(content_type: str | None, accepted: Sequence[str]) -> bool:
    """Whether ``content_type`` (parameters such as ``charset`` ignored) is one of ``accepted``, where a subtype
    ``*+json`` stands for any structured-syntax JSON type (``application/problem+json``)."""
    if not content_type:
        return False
    kind, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    for pattern in accepted:
        p_kind, _, p_subtype = pattern.partition("/")
        if kind != p_kind:
            continue
        if subtype == p_subtype:
            return True
        suffix = p_subtype.removeprefix("*")
        if suffix != p_subtype and subtype.endswith(suffix) and len(subtype) > len(suffix) and "/" not in subtype:
            return True
    return False


class MediaTypeMiddleware:
    """A POST, PUT, PATCH or DELETE with a body must declare an accepted type; without a body none is needed."""

    def __init__(
        self,
        app: ASGIApp,
        accepted: Sequence[str] = ACCEPTED_MEDIA_TYPES,
        paths: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.app = app
        self.accepted = tuple(accepted)
        self.paths = {path: (*self.accepted, *types) for path, types in (paths or {}).items()}  # more types there

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS:
            headers = Headers(scope=scope)
            declared = headers.get("content-type")
            accepted = self.paths.get(scope["path"], self.accepted)
            if not media_type_accepted(declared, accepted):
                receive = await self._refuse_a_body(headers, receive, declared, accepted)
        await self.app(scope, receive, send)

    async def _refuse_a_body(
        self, headers: Headers, receive: Receive, declared: str | None, accepted: Sequence[str]
    ) -> Receive:
        """Raise ``UnsupportedMediaType`` if the request has a body; the ``receive`` to go on with if it has not.

        ``Content-Length`` says; a chunked body is read up to its first non-empty chunk (replayed afterwards);
        HTTP/1.1 without either has no body."""
        length = headers.get("content-length")
        if length is not None:
            if length.strip().lstrip("0"):
                raise UnsupportedMediaType(declared, accepted)
            return receive
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            return receive
        read: list[Message] = []
        while not read or (read[-1]["type"] == "http.request" and read[-1].get("more_body", False)):
            read.append(await receive())
            if read[-1].get("body"):
                raise UnsupportedMediaType(declared, accepted)

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        return replay


class BodyLimitMiddleware:
    """``max_body_bytes`` for every body, or the limit ``paths`` gives a path (uploads: the import cap)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, paths: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = max_body_bytes
        self.paths = dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"], self.default)
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise BodyTooLarge(limit)
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, receive_limited, send)
