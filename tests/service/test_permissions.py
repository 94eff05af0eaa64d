"""Permissions over REST: every route has its rule, every rule is enforced (a key lacking exactly that permission
is refused, one holding only it is let through), table constraints, batches checked before they run, and a
refused request changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from auth_helpers import ADMIN, ADMIN_KEY, READ_ONLY, bearer, new_key
from starlette.routing import Mount, Route

from engine import Database
from service import create_app
from service.auth.models import ACTIONS, RESOURCES
from service.auth.policy import RULES, rule_for

ErrorCheck = Callable[..., dict[str, Any]]
Count = Callable[[str], int]


@pytest.fixture
def other(name: str) -> str:
    """A second table name, beside ``users`` (which takes ``name``)."""
    return f"{name}_b"


@pytest.fixture(scope="module")
def api(serve: Callable[..., str]) -> str:
    return serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1"


def _routes(db: Database) -> set[tuple[str, str]]:
    """Every (method, template) the app serves, mounted routes with the mount's templates (HEAD aside)."""
    found: set[tuple[str, str]] = set()
    app = create_app(db, db.settings.with_(auth="required", admin_key=ADMIN_KEY))
    for route in app.routes:
        children = route.routes if isinstance(route, Mount) else [route]
        for child in children:
            assert isinstance(child, Route), child
            found |= {(m, child.path) for m in (child.methods or ()) if m != "HEAD"}
    return found


def test_every_route_has_a_rule_and_every_rule_a_route(db: Database) -> None:
    served = _routes(db)
    documented_only = {("GET", "/openapi.json"), ("GET", "/docs")}  # served by the docs routes at the root
    assert served - set(RULES) == set(), "routes without a rule in service.auth.policy.RULES"
    assert set(RULES) - served - documented_only == set(), "rules for routes that do not exist"
    with pytest.raises(KeyError, match=r"no permission rule for GET /tables/\{table\}/secret"):
        rule_for("GET", "/tables/{table}/secret")


# -- each rule enforced --------------------------------------------------------------------------------------------
def _all_but(resource: str, action: str) -> list[dict[str, Any]]:
    """Every permission (no admin) except ``action`` on ``resource``."""
    perms = []
    for r in RESOURCES:
        if r == "admin":
            continue
        actions = [a for a in ACTIONS if (r, a) != (resource, action)]
        perms.append({"resource": r, "actions": actions})
    return perms


PERMISSION_RULES = sorted((k, v) for k, v in RULES.items() if v.kind == "permission")


@pytest.mark.parametrize(("route", "rule"), PERMISSION_RULES, ids=[f"{m} {p}" for (m, p), _ in PERMISSION_RULES])
def test_each_rule_is_enforced(api: str, route: tuple[str, str], rule: Any, expect_error: ErrorCheck) -> None:
    method, template = route
    table = "ghost_table_for_permissions"  # never created: a request let through finds nothing (404) or fails 4xx
    path = template.format(table=table, row_id="1", column="c", name="f")
    body: dict[str, Any] = {"name": table, "schema": {"columns": {"id": "int"}}} if rule.table == "body" else {}
    payload = body if method in ("POST", "PUT", "PATCH", "DELETE") else None
    without, _ = new_key(api, _all_but(rule.resource, rule.action))
    r = httpx.request(method, f"{api}{path}", headers=bearer(without), json=payload)
    detail = expect_error(r, 403, "insufficient_permissions", "Insufficient permissions", rule.resource)["detail"]
    assert f"'{rule.action}'" in detail and table in detail
    only = [{"resource": rule.resource, "actions": [rule.action], "constraints": {"table_names": [table]}}]
    with_it, _ = new_key(api, only)
    r = httpx.request(method, f"{api}{path}", headers=bearer(with_it), json=payload)
    assert r.status_code != 403, r.text
    if rule.table == "body":  # it was created: drop it again
        assert r.status_code == 200, r.text
        assert httpx.delete(f"{api}/tables/{table}", headers=ADMIN).status_code == 200


# -- what keys see and change ---------------------------------------------------------------------------------------
def test_a_read_only_key_reads_and_changes_nothing(
    api: str, users: str, row_count: Count, expect_error: ErrorCheck
) -> None:
    key, _ = new_key(api, READ_ONLY)
    h = bearer(key)
    assert httpx.get(f"{api}/tables/{users}/rows/1", headers=h).status_code == 200
    assert httpx.post(f"{api}/tables/{users}/query", json={}, headers=h).status_code == 200
    assert httpx.get(f"{api}/tables/{users}/rows/count", headers=h).json()["row_count"] == 3
    for r in (
        httpx.post(f"{api}/tables/{users}/rows", json={"data": {"id": 9, "name": "x"}}, headers=h),
        httpx.put(f"{api}/tables/{users}/rows/1", json={"data": {"name": "y"}}, headers=h),
        httpx.request("DELETE", f"{api}/tables/{users}/rows", json={"where": {"id": 1}}, headers=h),
        httpx.delete(f"{api}/tables/{users}", headers=h),
    ):
        expect_error(r, 403, "insufficient_permissions", "Insufficient permissions", users)
    assert row_count(users) == 3
    assert httpx.get(f"{api}/tables/{users}/rows/1", headers=ADMIN).json()["data"]["name"] == "Ada"


def test_a_key_for_one_table_sees_only_that_table(api: str, users: str, other: str, expect_error: ErrorCheck) -> None:
    schema = {"columns": {"id": "int"}}
    assert httpx.post(f"{api}/tables", json={"name": other, "schema": schema}, headers=ADMIN).status_code == 200
    key, _ = new_key(
        api,
        [
            {"resource": "tables", "actions": ["read"], "constraints": {"table_names": [users]}},
            {"resource": "data", "actions": ["read"], "constraints": {"table_names": [users]}},
        ],
    )
    h = bearer(key)
    assert httpx.get(f"{api}/tables", headers=h).json() == [users]
    assert other in httpx.get(f"{api}/tables", headers=ADMIN).json()
    assert httpx.get(f"{api}/tables/{users}", headers=h).status_code == 200
    expect_error(httpx.get(f"{api}/tables/{other}", headers=h), 403, "insufficient_permissions", other)
    expect_error(httpx.get(f"{api}/tables/{other}/rows", headers=h), 403, "insufficient_permissions", other)
    data_only, _ = new_key(api, [{"resource": "data", "actions": ["read"]}])
    expect_error(httpx.get(f"{api}/tables", headers=bearer(data_only)), 403, "insufficient_permissions", "tables")


def test_a_key_creates_only_the_tables_it_names(api: str, name: str, expect_error: ErrorCheck) -> None:
    key, _ = new_key(
        api, [{"resource": "tables", "actions": ["create", "read"], "constraints": {"table_names": [name]}}]
    )
    schema = {"columns": {"id": "int"}}
    r = httpx.post(f"{api}/tables", json={"name": f"{name}_other", "schema": schema}, headers=bearer(key))
    expect_error(r, 403, "insufficient_permissions", f"{name}_other", "create")
    assert f"{name}_other" not in httpx.get(f"{api}/tables", headers=ADMIN).json()
    assert httpx.post(f"{api}/tables", json={"name": name, "schema": schema}, headers=bearer(key)).status_code == 200
    assert httpx.get(f"{api}/tables", headers=bearer(key)).json() == [name]


def test_a_batch_is_checked_whole_before_it_runs(
    api: str, users: str, other: str, row_count: Count, expect_error: ErrorCheck
) -> None:
    schema = {"columns": {"id": "int", "name": "string"}}
    assert (
        httpx.post(
            f"{api}/tables", json={"name": other, "schema": schema, "primary_key": "id"}, headers=ADMIN
        ).status_code
        == 200
    )
    writes_users, _ = new_key(
        api, [{"resource": "data", "actions": ["read", "write"], "constraints": {"table_names": [users]}}]
    )
    ops = [
        {"operation": "insert", "table": users, "data": [{"id": 40, "name": "ok"}]},
        {"operation": "insert", "table": other, "data": [{"id": 1, "name": "not allowed"}]},
    ]
    for transaction in (True, False):
        r = httpx.post(
            f"{api}/batch/operations",
            json={"operations": ops, "transaction": transaction, "continue_on_error": True},
            headers=bearer(writes_users),
        )
        expect_error(r, 403, "insufficient_permissions", other, "operation 1", "nothing was run")
    delete_op = [{"operation": "delete", "table": users, "where": {"id": 1}}]
    r = httpx.post(f"{api}/batch/operations", json={"operations": delete_op}, headers=bearer(writes_users))
    expect_error(r, 403, "insufficient_permissions", "'delete'", users)
    read_only, _ = new_key(api, READ_ONLY)
    r = httpx.post(f"{api}/batch/operations", json={"operations": ops[:1]}, headers=bearer(read_only))
    expect_error(r, 403, "insufficient_permissions", "write")
    assert (row_count(users), row_count(other)) == (3, 0)
    r = httpx.post(f"{api}/batch/operations", json={"operations": ops[:1]}, headers=bearer(writes_users))
    assert r.status_code == 200 and r.json()["committed"], r.text
    assert row_count(users) == 4


def test_an_administrator_key_may_do_everything(api: str, name: str) -> None:
    admin, _ = new_key(api, [{"resource": "admin", "actions": list(ACTIONS)}])
    h = bearer(admin)
    schema = {"columns": {"id": "int"}}
    assert (
        httpx.post(f"{api}/tables", json={"name": name, "schema": schema, "primary_key": "id"}, headers=h).status_code
        == 200
    )
    assert httpx.post(f"{api}/tables/{name}/rows", json={"data": {"id": 1}}, headers=h).status_code == 200
    assert httpx.get(f"{api}/auth/api-keys", headers=h).status_code == 200
    assert httpx.delete(f"{api}/tables/{name}", headers=h).status_code == 200
