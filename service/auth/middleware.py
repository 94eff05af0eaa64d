"""Authentication, the general rate limit, the ``X-RateLimit-*`` headers and usage counting, around every
request but the public ones (health, readiness, the API document and its page)."""

from __future__ import annotations

import time

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth.gate import LIMIT_KEY, PRINCIPAL_KEY, ROUTE_KEY, Gate, rate_limit_headers
from service.errors import error_response


class AuthMiddleware:
    """``public``: the paths that need no key (``service.auth.policy.public_paths``), and everything under
    ``public_prefix`` (the docs page's assets)."""

    def __init__(self, app: ASGIApp, gate: Gate, public: frozenset[str], public_prefix: str) -> None:
        self.app = app
        self.gate = gate
        self.public = public
        self.public_prefix = public_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public or scope["path"].startswith(self.public_prefix):
            await self.app(scope, receive, send)
            return
        principal = self.gate.principal(Headers(scope=scope))  # Unauthorized: rendered by the layer outside
        scope[PRINCIPAL_KEY] = principal
        if principal.key_id is None:  # the anonymous administrator of open mode: not limited, not counted
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_limits(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                decision = scope.get(LIMIT_KEY)
                if decision is not None:
                    message["headers"] = [*message.get("headers", []), *rate_limit_headers(decision)]
            await send(message)

        try:
            decision = self.gate.take(principal, "requests")
            scope[LIMIT_KEY] = decision
            if decision is not None and not decision.allowed:
                await error_response(Request(scope), self.gate.refuse(decision))(scope, receive, send_with_limits)
                return
            await self.app(scope, receive, send_with_limits)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.gate.usage.record(principal.key_id, scope.get(ROUTE_KEY, "(no route)"), status, elapsed_ms)
