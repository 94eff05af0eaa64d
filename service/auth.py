"""Authentication, minimal for now: one administrator key from the settings.

``open`` mode lets every request through. ``required`` mode wants ``Authorization: Bearer <admin_key>`` or
``X-API-Key: <admin_key>`` on every route but health and readiness; without a configured key nothing gets in.
Real API keys with permissions replace ``AdminKey`` later; the middleware only asks an ``Authenticator``.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.config import Settings
from service.errors import Unauthorized

PUBLIC_PATHS = frozenset({"/health", "/ready", "/api/v1/health", "/api/v1/ready"})


class Authenticator(Protocol):
    def check(self, key: str | None) -> None:
        """Return if ``key`` may use the API; raise ``Unauthorized`` otherwise."""


def presented_key(headers: Headers) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, if any."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None


class AdminKey:
    """Accepts exactly the configured administrator key (compared in constant time)."""

    def __init__(self, admin_key: str | None) -> None:
        self._key = admin_key.encode() if admin_key else None

    def check(self, key: str | None) -> None:
        if key is None:
            raise Unauthorized("API key required")
        if self._key is None or not hmac.compare_digest(key.encode(), self._key):
            raise Unauthorized("Invalid API key")


class AuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            self.authenticator.check(presented_key(Headers(scope=scope)))
        await self.app(scope, receive, send)


def authenticator_for(settings: Settings) -> Authenticator | None:
    """The authenticator for the configured mode; ``None`` in open mode."""
    return AdminKey(settings.admin_key) if settings.auth == "required" else None
