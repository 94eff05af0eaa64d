"""Keys for the service tests: the one administrator key every required-mode server of the session is given (a
configured key replaces the one configured before it, so the session's servers share one), and ``new_key``."""

from __future__ import annotations

from typing import Any

import httpx

ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READ_ONLY = [{"resource": "tables", "actions": ["read"]}, {"resource": "data", "actions": ["read"]}]
READ_WRITE = [
    {"resource": "tables", "actions": ["read", "create", "delete", "write"]},
    {"resource": "data", "actions": ["read", "write", "delete"]},
]


def new_key(api: str, permissions: list[dict[str, Any]], name: str = "test key", **extra: Any) -> tuple[str, dict]:
    """Create a key through ``api`` (an ``.../api/v1`` URL) as the administrator; returns the key and its info."""
    r = httpx.post(f"{api}/auth/api-keys", json={"name": name, "permissions": permissions, **extra}, headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["api_key"], body["key_info"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
