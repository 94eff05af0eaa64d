"""Health, readiness, request ids, unknown routes and wrong methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest


@pytest.mark.parametrize("path", ["/health", "/api/v1/health"])
def test_health(base_url: str, path: str) -> None:
    r = httpx.get(base_url + path)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["version"] == "0.1.0"
    assert type(body["tables"]) is int and body["tables"] == len(httpx.get(base_url + "/api/v1/tables").json())
    assert body["ray"] == "connected"
    assert r.headers["x-request-id"]


def test_health_counts_tables(client: httpx.Client, users: str) -> None:
    tables = len(client.get("/tables").json())
    assert client.get("/health").json()["tables"] == tables
    assert client.delete(f"/tables/{users}").status_code == 200
    assert client.get("/health").json()["tables"] == tables - 1


@pytest.mark.parametrize("path", ["/ready", "/api/v1/ready"])
def test_ready(base_url: str, path: str) -> None:
    r = httpx.get(base_url + path)
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}
    assert r.headers["x-request-id"]


def test_request_id_is_echoed(client: httpx.Client) -> None:
    r = client.get("/health", headers={"X-Request-ID": "client-id.42:a_b"})
    assert r.headers["x-request-id"] == "client-id.42:a_b"


@pytest.mark.parametrize("given", ["has spaces", "x" * 200, "semi;colon", "new\tline"])
def test_insane_request_id_is_replaced(client: httpx.Client, given: str) -> None:
    r = client.get("/health", headers={"X-Request-ID": given})
    assert r.status_code == 200
    assert r.headers["x-request-id"] != given
    assert len(r.headers["x-request-id"]) == 32


def test_request_ids_differ(client: httpx.Client) -> None:
    ids = {client.get("/health").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("path", ["/nope", "/tables/x/nope", "/tables/x/rows/1/extra"])
def test_unknown_route_is_json_404(
    client: httpx.Client, expect_error: Callable[..., dict[str, Any]], path: str
) -> None:
    expect_error(client.get(path), 404, "not_found", path)


def test_unknown_route_outside_api(base_url: str, expect_error: Callable[..., dict[str, Any]]) -> None:
    expect_error(httpx.get(base_url + "/favicon.ico"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/tables", {"GET", "POST"}),
        ("PUT", "/tables/x/rows", {"GET", "POST", "PATCH", "DELETE"}),
        ("GET", "/tables/x/query", {"POST"}),
        ("POST", "/health", {"GET"}),
        ("POST", "/tables/x/rows/1", {"GET", "PUT", "DELETE"}),
    ],
)
def test_wrong_method_is_json_405(
    client: httpx.Client, expect_error: Callable[..., dict[str, Any]], method: str, path: str, allowed: set[str]
) -> None:
    r = client.request(method, path)
    expect_error(r, 405, "method_not_allowed", method)
    assert allowed <= {m.strip() for m in r.headers["allow"].split(",")}


def test_head_is_served_like_get(base_url: str) -> None:
    r = httpx.head(base_url + "/api/v1/health")
    assert r.status_code == 200
    assert r.headers["x-request-id"]
    assert r.content == b""
