"""``required`` auth mode: an app on its own port over the same database; health and readiness stay open."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from auth_helpers import ADMIN_KEY

from engine import Database, Settings

ErrorCheck = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def auth_url(serve: Callable[..., str]) -> str:
    return serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1"


def test_no_key_is_401(auth_url: str) -> None:
    r = httpx.get(f"{auth_url}/tables")
    assert r.status_code == 401
    assert r.json() == {"detail": "API key required", "code": "unauthorized", "reason": "missing"}
    assert r.headers["x-request-id"]
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": "Bearer"},
        {"X-API-Key": "wrong"},
        {"X-API-Key": ADMIN_KEY + "x"},
        {"Authorization": "Bearer wrong", "X-API-Key": ADMIN_KEY},  # a key that is presented must be right
    ],
)
def test_wrong_key_is_401(auth_url: str, headers: dict[str, str], expect_error: ErrorCheck) -> None:
    expect_error(httpx.get(f"{auth_url}/tables", headers=headers), 401, "unauthorized")


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {ADMIN_KEY}"}, {"X-API-Key": ADMIN_KEY}])
def test_admin_key_is_accepted(auth_url: str, client: httpx.Client, name: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=auth_url, headers=headers) as c:
        assert c.get("/tables").status_code == 200
        r = c.post("/tables", json={"name": name, "schema": {"columns": {"id": "int"}}, "primary_key": "id"})
        assert r.status_code == 200, r.text
        assert c.post(f"/tables/{name}/rows", json={"data": {"id": 1}}).status_code == 200
    assert client.get(f"/tables/{name}/rows/count").json()["row_count"] == 1  # same database as the open app


def test_the_key_stays_out_of_the_settings_repr(auth_url: str, db: Database) -> None:
    for settings in (Settings(admin_key="s3cret"), db.settings.with_(auth="required", admin_key=ADMIN_KEY)):
        assert settings.admin_key in ("s3cret", ADMIN_KEY)
        assert settings.admin_key not in repr(settings)
        assert settings.admin_key not in str(settings)
        assert settings.admin_key not in f"{settings!r} {[settings]}"
    assert "auth='required'" in repr(settings)
    assert httpx.get(f"{auth_url}/tables", headers={"X-API-Key": ADMIN_KEY}).status_code == 200


def test_writes_without_a_key_change_nothing(auth_url: str, users: str, row_count: Callable[[str], int]) -> None:
    assert httpx.post(f"{auth_url}/tables/{users}/rows", json={"data": {"id": 50, "name": "x"}}).status_code == 401
    assert httpx.delete(f"{auth_url}/tables/{users}").status_code == 401
    assert row_count(users) == 3


def test_unknown_route_without_a_key_is_401(auth_url: str, expect_error: ErrorCheck) -> None:
    expect_error(httpx.get(f"{auth_url}/nope"), 401, "unauthorized")
    r = httpx.get(f"{auth_url}/nope", headers={"X-API-Key": ADMIN_KEY})
    expect_error(r, 404, "not_found")


@pytest.mark.parametrize("path", ["/health", "/ready", "/api/v1/health", "/api/v1/ready"])
def test_health_needs_no_key(auth_url: str, path: str) -> None:
    root = auth_url.removesuffix("/api/v1")
    assert httpx.get(root + path).status_code == 200


def test_open_mode_checks_a_presented_key(client: httpx.Client) -> None:
    assert client.get("/tables").status_code == 200  # no key: the local administrator
    r = client.get("/tables", headers={"Authorization": "Bearer anything"})
    assert (r.status_code, r.json()["reason"]) == (401, "unknown")
