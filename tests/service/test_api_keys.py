"""API keys over REST: creation, the key's format, listing, revocation, rotation, expiry, usage, verify, the
modes, and every kind of bad key or bad request (401/400/422 with a clear detail, and nothing changed)."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from auth_helpers import ADMIN, ADMIN_KEY, READ_ONLY, READ_WRITE, bearer, new_key

from engine import Database
from engine.storage.catalog import catalog_path

ErrorCheck = Callable[..., dict[str, Any]]
Serve = Callable[..., str]


@pytest.fixture(scope="module")
def api(serve: Serve) -> str:
    """A required-mode server over the session's database."""
    return serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1"


@pytest.fixture(scope="module")
def other_api(serve: Serve) -> str:
    """A second required-mode server on the same data directory (its own key checks, limits and usage)."""
    return serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1"


def verify(api: str, key: str) -> httpx.Response:
    return httpx.get(f"{api}/auth/verify", headers=bearer(key))


# -- creation and format ---------------------------------------------------------------------------------------------
def test_a_key_is_created_once_in_the_seed_format(api: str, db: Database) -> None:
    live, info = new_key(api, READ_WRITE, name="writer")
    read, read_info = new_key(api, READ_ONLY, name="reader")
    assert re.fullmatch(r"pxt_live_[0-9a-f]{64}", live) and re.fullmatch(r"pxt_read_[0-9a-f]{64}", read)
    assert info["key_prefix"] == live[:16] and read_info["key_prefix"] == read[:16]
    assert set(info) == {"id", "name", "key_prefix", "permissions", "created_at", "last_used", "expires_at", "revoked"}
    assert info["name"] == "writer" and info["revoked"] is False and info["last_used"] is None
    assert info["permissions"][1] == {"resource": "data", "actions": ["read", "write", "delete"], "constraints": None}
    assert info["created_at"].endswith("Z")
    # shown once: never in a listing or a get, and the catalog holds only a keyed hash
    listed = httpx.get(f"{api}/auth/api-keys", headers=ADMIN).json()
    assert info in listed and all("api_key" not in k for k in listed)
    assert httpx.get(f"{api}/auth/api-keys/{info['id']}", headers=ADMIN).json() == info
    with sqlite3.connect(catalog_path(db.root)) as conn:
        dump = "\n".join(conn.iterdump())
    assert live not in dump and live[16:] not in dump and info["key_prefix"] in dump


def test_every_key_is_different(api: str) -> None:
    keys = [new_key(api, READ_ONLY)[0] for _ in range(5)]
    assert len({k for k in keys}) == 5 and len({k[:16] for k in keys}) == 5


def test_permissions_with_table_constraints_round_trip(api: str) -> None:
    perms = [{"resource": "tables", "actions": ["read"], "constraints": {"table_names": ["products"]}}]
    key, info = new_key(api, perms)
    assert info["permissions"] == [{**perms[0], "actions": ["read"]}]
    body = verify(api, key).json()
    assert body == {"valid": True, "key_id": info["id"], "name": "test key", "permissions": info["permissions"]}


# -- a key in use --------------------------------------------------------------------------------------------------
def test_a_key_authenticates_with_either_header(api: str) -> None:
    key, info = new_key(api, READ_ONLY)
    assert verify(api, key).json()["key_id"] == info["id"]
    assert httpx.get(f"{api}/auth/verify", headers={"X-API-Key": key}).json()["key_id"] == info["id"]


def test_revoked_keys_stop_at_once_in_every_server(api: str, other_api: str, expect_error: ErrorCheck) -> None:
    key, info = new_key(api, READ_ONLY)
    assert verify(other_api, key).status_code == 200
    r = httpx.post(f"{api}/auth/api-keys/revoke", json={"key_id": info["id"]}, headers=ADMIN)
    assert r.status_code == 200 and "revoked" in r.json()["message"] and info["key_prefix"] in r.json()["message"]
    for server in (api, other_api):
        body = expect_error(verify(server, key), 401, "unauthorized", "revoked")
        assert body["reason"] == "revoked"
    assert httpx.get(f"{api}/auth/api-keys/{info['id']}", headers=ADMIN).json()["revoked"] is True


def test_a_key_is_revoked_by_its_prefix(api: str, expect_error: ErrorCheck) -> None:
    key, info = new_key(api, READ_ONLY)
    r = httpx.post(f"{api}/auth/api-keys/revoke", json={"key_prefix": info["key_prefix"]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    expect_error(verify(api, key), 401, "unauthorized", "revoked")


def test_rotation_as_the_seed_does_it(api: str, other_api: str, expect_error: ErrorCheck) -> None:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat().replace("+00:00", "Z")
    key, info = new_key(api, READ_WRITE, name="ci", expires_at=expires)
    r = httpx.post(f"{api}/auth/api-keys/{info['id']}/rotate", headers=bearer(key))  # a key may rotate itself
    assert r.status_code == 200, r.text
    new, new_info = r.json()["api_key"], r.json()["key_info"]
    assert new != key and new.startswith("pxt_live_") and new_info["id"] != info["id"]
    assert new_info["name"] == "ci (rotated)"
    assert new_info["permissions"] == info["permissions"] and new_info["expires_at"] == info["expires_at"]
    for server in (api, other_api):
        assert expect_error(verify(server, key), 401, "unauthorized", "rotated")["reason"] == "rotated"
        assert verify(server, new).json()["key_id"] == new_info["id"]
    # a rotated-out key cannot be rotated again (by an administrator either): nothing changes
    r = httpx.post(f"{api}/auth/api-keys/{info['id']}/rotate", headers=ADMIN)
    expect_error(r, 400, "invalid_api_key_request", "rotated")
    assert verify(api, new).status_code == 200


def test_expired_keys_answer_401(api: str, expect_error: ErrorCheck) -> None:
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)).isoformat()
    key, info = new_key(api, READ_ONLY, expires_at=soon)
    assert info["expires_at"].endswith("Z")
    assert verify(api, key).status_code == 200
    deadline = time.monotonic() + 10
    while (r := verify(api, key)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    body = expect_error(r, 401, "unauthorized", "expired")
    assert body["reason"] == "expired"


def test_keys_survive_a_restart(serve: Serve) -> None:
    first = serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1"
    key, info = new_key(first, READ_ONLY)
    later = serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1"  # a new app: a new gate over the same catalog
    assert verify(later, key).json()["key_id"] == info["id"]


def test_usage_counts_by_route_template_and_status(api: str) -> None:
    key, info = new_key(api, READ_WRITE)
    h = bearer(key)
    httpx.get(f"{api}/tables", headers=h)
    httpx.get(f"{api}/tables/no_such_table", headers=h)
    httpx.get(f"{api}/tables/no_such_table/rows/7", headers=h)
    r = httpx.get(f"{api}/auth/api-keys/{info['id']}/usage", params={"hours": 1}, headers=h)
    assert r.status_code == 200, r.text
    usage = r.json()
    assert set(usage) == {
        "key_id",
        "endpoint_counts",
        "status_code_counts",
        "total_requests",
        "avg_response_time_ms",
        "period_start",
        "period_end",
    }
    assert usage["endpoint_counts"] == {
        "GET /api/v1/tables": 1,
        "GET /api/v1/tables/{table}": 1,
        "GET /api/v1/tables/{table}/rows/{row_id}": 1,
    }
    assert usage["status_code_counts"] == {"200": 1, "404": 2} and usage["total_requests"] == 3
    assert usage["avg_response_time_ms"] > 0 and usage["key_id"] == info["id"]
    start, end = (dt.datetime.fromisoformat(usage[k].replace("Z", "+00:00")) for k in ("period_start", "period_end"))
    assert end - start == dt.timedelta(hours=1)


def test_usage_is_written_to_the_catalog(serve: Serve, db: Database) -> None:
    api = serve(auth="required", admin_key=ADMIN_KEY, usage_flush_seconds=0.2) + "/api/v1"
    key, info = new_key(api, READ_ONLY)
    httpx.get(f"{api}/tables", headers=bearer(key))
    deadline = time.monotonic() + 10
    rows: list[Any] = []
    while not rows and time.monotonic() < deadline:
        time.sleep(0.1)
        with sqlite3.connect(catalog_path(db.root)) as conn:
            rows = conn.execute(
                "SELECT endpoint, status, requests FROM api_key_usage WHERE key_id = ?", (info["id"],)
            ).fetchall()
            last_used = conn.execute("SELECT last_used FROM api_keys WHERE id = ?", (info["id"],)).fetchone()[0]
    assert rows == [("GET /api/v1/tables", 200, 1)]
    assert last_used is not None
    assert httpx.get(f"{api}/auth/api-keys/{info['id']}", headers=ADMIN).json()["last_used"] == last_used


# -- self-service and administration -------------------------------------------------------------------------------
def test_a_key_reads_its_own_info_but_not_others(api: str, expect_error: ErrorCheck) -> None:
    key, info = new_key(api, READ_ONLY)
    _, other = new_key(api, READ_ONLY)
    h = bearer(key)
    assert httpx.get(f"{api}/auth/api-keys/{info['id']}", headers=h).status_code == 200
    assert httpx.get(f"{api}/auth/api-keys/{info['id']}/usage", headers=h).status_code == 200
    for r in (
        httpx.get(f"{api}/auth/api-keys/{other['id']}", headers=h),
        httpx.get(f"{api}/auth/api-keys/{other['id']}/usage", headers=h),
        httpx.post(f"{api}/auth/api-keys/{other['id']}/rotate", headers=h),
        httpx.get(f"{api}/auth/api-keys", headers=h),
        httpx.post(f"{api}/auth/api-keys", json={"name": "x", "permissions": READ_ONLY}, headers=h),
        httpx.post(f"{api}/auth/api-keys/revoke", json={"key_id": other["id"]}, headers=h),
    ):
        expect_error(r, 403, "insufficient_permissions", "Insufficient permissions", "admin")
    assert httpx.get(f"{api}/auth/api-keys/{other['id']}", headers=ADMIN).json()["revoked"] is False


def test_open_mode_leaves_key_management_to_every_local_caller(client: httpx.Client) -> None:
    r = client.post("/auth/api-keys", json={"name": "anon made", "permissions": READ_ONLY})  # no key at all
    assert r.status_code == 200, r.text
    weak, weak_info = r.json()["api_key"], r.json()["key_info"]
    victim = client.post("/auth/api-keys", json={"name": "victim", "permissions": READ_ONLY}).json()["key_info"]
    # the seed's clients revoke keys with a key that is not an administrator
    r = client.post("/auth/api-keys/revoke", json={"key_id": victim["id"]}, headers=bearer(weak))
    assert r.status_code == 200, r.text
    # but every other permission of a presented key holds in open mode too
    r = client.post("/tables", json={"name": "never_made", "schema": {"columns": {"id": "int"}}}, headers=bearer(weak))
    assert r.status_code == 403, r.text
    assert client.get("/auth/verify").json() == {
        "valid": True,
        "key_id": None,
        "name": "local administrator (open mode, no key)",
        "permissions": [{"resource": "admin", "actions": ["read", "write", "create", "delete"], "constraints": None}],
    }
    assert client.get("/auth/verify", headers=bearer(weak)).json()["key_id"] == weak_info["id"]


def test_the_configured_administrator_key_is_replaced_when_the_configuration_changes(serve: Serve) -> None:
    other = "another-admin-key-0123456789"
    api = serve(auth="required", admin_key=other) + "/api/v1"
    assert verify(api, other).status_code == 200
    assert verify(api, ADMIN_KEY).status_code == 401  # the earlier configured key stopped
    serve(auth="required", admin_key=ADMIN_KEY)  # the session's key again, for the other tests
    assert verify(api, other).status_code == 401 and verify(api, ADMIN_KEY).status_code == 200


# -- bad keys --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "malformed"),
        ({"Authorization": "Bearer"}, "malformed"),
        ({"X-API-Key": "pxt_live_" + "0" * 64}, "unknown"),
        ({"Authorization": "Bearer pxt_read_nope"}, "unknown"),
        ({"X-API-Key": "k" * 300}, "malformed"),
        ({"X-API-Key": "pxt_live_\u00e9t\u00e9".encode()}, "malformed"),  # bytes: httpx sends them as they are
    ],
)
def test_bad_keys_are_401_with_a_reason(
    api: str, headers: dict[str, str], reason: str, expect_error: ErrorCheck
) -> None:
    body = expect_error(httpx.get(f"{api}/tables", headers=headers), 401, "unauthorized")
    assert body["reason"] == reason


def test_huge_header_values_are_refused_without_a_500(api: str, expect_error: ErrorCheck) -> None:
    for headers in ({"X-API-Key": "x" * 8_000}, {"Authorization": "Bearer " + "x" * 8_000}):
        assert expect_error(httpx.get(f"{api}/tables", headers=headers), 401, "unauthorized")["reason"] == "malformed"
    # past h11's 16 KB of request head, uvicorn refuses the request before the app sees it: a 400 or a closed
    # connection, never a 500
    for headers in ({"X-API-Key": "x" * 200_000}, {"Authorization": "Bearer " + "x" * 200_000}):
        try:
            status = httpx.get(f"{api}/tables", headers=headers).status_code
        except (httpx.RemoteProtocolError, httpx.ReadError):
            status = 400
        assert status in (400, 431), status
    assert httpx.get(f"{api}/tables", headers=ADMIN).status_code == 200  # the server is fine


# -- bad requests ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("permissions", "field"),
    [
        ([{"resource": "tablez", "actions": ["read"]}], "resource"),
        ([{"resource": "data", "actions": ["reed"]}], "actions"),
        ([{"resource": "data", "actions": []}], "actions"),
        ([{"resource": "data", "actions": "read"}], "actions"),
        ([{"resource": "data", "actions": ["read"], "constraints": "products"}], "constraints"),
        ([{"resource": "data", "actions": ["read"], "constraints": {"table_names": "products"}}], "table_names"),
        ([{"resource": "data", "actions": ["read"], "constraints": {"table_names": []}}], "table_names"),
        ([{"resource": "data", "actions": ["read"], "constraints": {"tables": ["p"]}}], "constraints"),
        ([{"resource": "data", "actions": ["read"], "scope": "all"}], "scope"),
        ([], "permissions"),
        ("all", "permissions"),
    ],
)
def test_bad_permissions_are_422(api: str, permissions: Any, field: str, expect_error: ErrorCheck) -> None:
    before = len(httpx.get(f"{api}/auth/api-keys", headers=ADMIN).json())
    r = httpx.post(f"{api}/auth/api-keys", json={"name": "bad", "permissions": permissions}, headers=ADMIN)
    body = expect_error(r, 422, "validation_error", field)
    assert body["errors"]
    assert len(httpx.get(f"{api}/auth/api-keys", headers=ADMIN).json()) == before


@pytest.mark.parametrize(
    ("body", "status", "mention"),
    [
        ({"permissions": READ_ONLY}, 422, "name"),
        ({"name": "", "permissions": READ_ONLY}, 422, "name"),
        ({"name": "x" * 101, "permissions": READ_ONLY}, 422, "name"),
        ({"name": "past", "permissions": READ_ONLY, "expires_at": "2020-01-01T00:00:00Z"}, 400, "expires_at"),
        ({"name": "when", "permissions": READ_ONLY, "expires_at": "next tuesday"}, 422, "expires_at"),
        ({"name": 5, "permissions": READ_ONLY}, 422, "name"),
    ],
)
def test_bad_key_requests(api: str, body: dict[str, Any], status: int, mention: str, expect_error: ErrorCheck) -> None:
    before = len(httpx.get(f"{api}/auth/api-keys", headers=ADMIN).json())
    expect_error(httpx.post(f"{api}/auth/api-keys", json=body, headers=ADMIN), status, None, mention)
    assert len(httpx.get(f"{api}/auth/api-keys", headers=ADMIN).json()) == before


def test_a_key_cannot_revoke_itself(api: str, client: httpx.Client, expect_error: ErrorCheck) -> None:
    key, info = new_key(api, [{"resource": "admin", "actions": ["read", "delete"]}])
    for body in ({"key_id": info["id"]}, {"key_prefix": info["key_prefix"]}):
        r = httpx.post(f"{api}/auth/api-keys/revoke", json=body, headers=bearer(key))
        expect_error(r, 400, "invalid_api_key_request", "cannot revoke itself")
    assert verify(api, key).status_code == 200  # nothing changed


@pytest.mark.parametrize(
    ("body", "status"),
    [({}, 400), ({"key_id": "a", "key_prefix": "b"}, 400), ({"key_id": 5}, 422), ({"key": "x"}, 422)],
)
def test_bad_revocations(api: str, body: dict[str, Any], status: int, expect_error: ErrorCheck) -> None:
    expect_error(httpx.post(f"{api}/auth/api-keys/revoke", json=body, headers=ADMIN), status)


def test_unknown_keys_are_404(api: str, expect_error: ErrorCheck) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    for r in (
        httpx.get(f"{api}/auth/api-keys/{missing}", headers=ADMIN),
        httpx.get(f"{api}/auth/api-keys/{missing}/usage", headers=ADMIN),
        httpx.post(f"{api}/auth/api-keys/{missing}/rotate", headers=ADMIN),
        httpx.post(f"{api}/auth/api-keys/revoke", json={"key_id": missing}, headers=ADMIN),
        httpx.post(f"{api}/auth/api-keys/revoke", json={"key_prefix": "pxt_live_zzzzzzz"}, headers=ADMIN),
    ):
        expect_error(r, 404, "api_key_not_found")


@pytest.mark.parametrize("query", ["hours=0", "hours=-1", "hours=abc", "hours=745", "hours=1&hours=2", "days=1"])
def test_bad_usage_queries_are_400(api: str, query: str, expect_error: ErrorCheck) -> None:
    _, info = new_key(api, READ_ONLY)
    expect_error(httpx.get(f"{api}/auth/api-keys/{info['id']}/usage?{query}", headers=ADMIN), 400, "invalid_parameter")


def test_rotation_takes_no_body(api: str, expect_error: ErrorCheck) -> None:
    key, info = new_key(api, READ_ONLY)
    r = httpx.post(f"{api}/auth/api-keys/{info['id']}/rotate", json={"name": "renamed"}, headers=ADMIN)
    expect_error(r, 422, "validation_error")
    assert verify(api, key).status_code == 200  # not rotated
