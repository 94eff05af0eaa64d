"""What a web page can make a browser send to a service on 127.0.0.1, and what the service does with it.

A page on any site can POST a ``text/plain`` (or form) body to http://127.0.0.1:8000 without the browser asking the
server first (no CORS preflight), and a page whose domain name was rebound to 127.0.0.1 talks to the service with
its own name in ``Host``. Both are refused before anything runs: a body must be declared JSON (415) and, in open
mode, ``Host`` must be a loopback name, the bound address or an allowed host (400). CORS stays off unless origins
are configured. Every request here goes to 127.0.0.1; ``Host`` and ``Origin`` are only headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from auth_helpers import ADMIN_KEY

ErrorCheck = Callable[..., dict[str, Any]]
Count = Callable[[str], int]
PAGE = "http://localhost:3000"


def delete_everything(table: str) -> bytes:
    batch = {"operations": [{"operation": "delete", "table": table, "where": {}}], "transaction": True}
    return orjson.dumps(batch)


def preflight(url: str, origin: str, method: str = "POST", headers: str = "content-type") -> httpx.Response:
    return httpx.options(
        url,
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


# -- the attack --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None]
)
def test_a_non_json_batch_is_415_and_deletes_nothing(
    base_url: str, users: str, row_count: Count, expect_error: ErrorCheck, content_type: str | None
) -> None:
    headers = {"Origin": "https://evil.example"} | ({"content-type": content_type} if content_type else {})
    r = httpx.post(f"{base_url}/api/v1/batch/operations", content=delete_everything(users), headers=headers)
    body = expect_error(r, 415, "unsupported_media_type", "application/json")
    if content_type:
        assert content_type in body["detail"]
    assert body["content_type"] == content_type
    assert body["expected"] == ["application/json", "application/*+json"]
    assert "access-control-allow-origin" not in r.headers
    assert row_count(users) == 3


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]"])
def test_a_foreign_host_is_400_and_changes_nothing(
    base_url: str, users: str, row_count: Count, expect_error: ErrorCheck, host: str
) -> None:
    json = {"content-type": "application/json"}
    url = f"{base_url}/api/v1"
    r = httpx.post(f"{url}/batch/operations", content=delete_everything(users), headers={"Host": host, **json})
    body = expect_error(r, 400, "invalid_host", "--allowed-hosts")
    assert body["host"] == host
    expect_error(httpx.delete(f"{url}/tables/{users}", headers={"Host": host}), 400, "invalid_host")
    expect_error(httpx.get(f"{url}/tables/{users}/rows", headers={"Host": host}), 400, "invalid_host")
    assert row_count(users) == 3


# -- bodies ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/x+json"]
)
def test_json_types_are_accepted(client: httpx.Client, users: str, row_count: Count, content_type: str) -> None:
    r = client.post(
        f"/tables/{users}/rows", content=b'{"data": {"id": 9, "name": "Joan"}}', headers={"content-type": content_type}
    )
    assert r.status_code == 200, r.text
    assert row_count(users) == 4


@pytest.mark.parametrize("content_type", ["application/jsonx", "application/+json", "text/json", "json"])
def test_near_misses_are_refused(client: httpx.Client, users: str, expect_error: ErrorCheck, content_type: str) -> None:
    r = client.post(
        f"/tables/{users}/rows", content=b'{"data": {"id": 9, "name": "Joan"}}', headers={"content-type": content_type}
    )
    expect_error(r, 415, "unsupported_media_type", content_type)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_every_method_with_a_body_needs_json(
    client: httpx.Client, users: str, row_count: Count, expect_error: ErrorCheck, method: str
) -> None:
    path = f"/tables/{users}/rows/1" if method == "PUT" else f"/tables/{users}/rows"
    body = {"PUT": b'{"data": {"age": 1}}', "PATCH": b'{"where": {}, "set": {"age": 1}}', "DELETE": b'{"where": {}}'}
    r = client.request(method, path, content=body[method], headers={"content-type": "text/plain"})
    expect_error(r, 415, "unsupported_media_type", "text/plain")
    assert row_count(users) == 3
    assert client.get(f"/tables/{users}/rows/1").json()["data"]["age"] == 36


def test_a_chunked_body_without_json_type_is_refused(
    client: httpx.Client, users: str, row_count: Count, expect_error: ErrorCheck
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        yield b""
        yield delete_everything(users)

    r = client.post("/batch/operations", content=chunks(), headers={"content-type": "text/plain"})
    expect_error(r, 415, "unsupported_media_type")
    assert row_count(users) == 3


def test_a_chunked_json_body_is_read_whole(client: httpx.Client, users: str, row_count: Count) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"data": '
        yield b'{"id": 8, "name": "chunked"}}'

    r = client.post(f"/tables/{users}/rows", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert row_count(users) == 4


def test_requests_without_a_body_need_no_type(client: httpx.Client, users: str) -> None:
    r = client.post(
        f"/tables/{users}/computed-columns",
        json={"name": "next_age", "column_type": "expression", "expression": "age + 1"},
    )
    assert r.status_code == 200, r.text
    recompute = client.post(f"/tables/{users}/computed-columns/next_age/recompute")  # Content-Length: 0
    assert recompute.status_code == 200, recompute.text
    assert recompute.json()["rows_recomputed"] == 3
    typed_but_empty = client.post(
        f"/tables/{users}/computed-columns/next_age/recompute", headers={"content-type": "text/plain"}
    )
    assert typed_but_empty.status_code == 200, typed_but_empty.text
    assert client.request("DELETE", f"/tables/{users}/rows/3").status_code == 200
    assert client.delete(f"/tables/{users}").status_code == 200
    assert client.get(f"/tables/{users}").status_code == 404


# -- Host --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:8000", "[::1]", "[::1]:8000"])
def test_loopback_names_are_served(base_url: str, host: str) -> None:
    r = httpx.get(f"{base_url}/api/v1/tables", headers={"Host": host})
    assert r.status_code == 200, r.text


def test_a_request_without_host_is_refused(base_url: str, expect_error: ErrorCheck) -> None:
    r = httpx.get(f"{base_url}/api/v1/tables", headers={"Host": ""})
    expect_error(r, 400, "invalid_host")


def test_allowed_hosts_extend_the_loopback_names(serve: Callable[..., str], expect_error: ErrorCheck) -> None:
    url = serve(allowed_hosts=("tessera.local", "*.corp.example")) + "/api/v1/tables"
    for host in ("tessera.local", "tessera.local:8000", "db.corp.example", "127.0.0.1"):
        assert httpx.get(url, headers={"Host": host}).status_code == 200, host
    for host in ("corp.example", "evil.example", "tessera.local.evil.example"):
        expect_error(httpx.get(url, headers={"Host": host}), 400, "invalid_host", host)


def test_required_mode_checks_host_only_when_names_are_given(
    serve: Callable[..., str], expect_error: ErrorCheck
) -> None:
    key = {"X-API-Key": ADMIN_KEY}
    anywhere = serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1/tables"
    assert httpx.get(anywhere, headers={"Host": "tessera.example.com", **key}).status_code == 200
    named = serve(auth="required", admin_key=ADMIN_KEY, allowed_hosts=("tessera.example.com",)) + "/api/v1/tables"
    assert httpx.get(named, headers={"Host": "tessera.example.com", **key}).status_code == 200
    assert httpx.get(named, headers=key).status_code == 200  # 127.0.0.1
    expect_error(httpx.get(named, headers={"Host": "evil.example", **key}), 400, "invalid_host")


# -- CORS --------------------------------------------------------------------------------------------------------
def test_cors_is_off_by_default(base_url: str) -> None:
    url = f"{base_url}/api/v1/tables"
    r = preflight(url, PAGE)
    assert "access-control-allow-origin" not in r.headers
    assert r.status_code == 405
    r = httpx.get(url, headers={"Origin": PAGE})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers


@pytest.fixture(scope="module")
def cors_url(serve: Callable[..., str]) -> str:
    return serve(cors_origins=(PAGE, "https://app.example")) + "/api/v1"


def test_cors_for_configured_origins(cors_url: str) -> None:
    r = preflight(f"{cors_url}/batch/operations", PAGE, headers="content-type, idempotency-key, x-api-key")
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == PAGE
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["x-request-id"]
    r = httpx.get(f"{cors_url}/tables", headers={"Origin": "https://app.example"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "X-Request-ID" in r.headers["access-control-expose-headers"]


def test_cors_refuses_other_origins(cors_url: str, expect_error: ErrorCheck) -> None:
    r = preflight(f"{cors_url}/tables", "https://evil.example")
    body = expect_error(r, 400, "cors_refused", "https://evil.example", "origin")
    assert body["origin"] == "https://evil.example"
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(f"{cors_url}/tables", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_headers_on_errors_of_the_middleware(cors_url: str, expect_error: ErrorCheck) -> None:
    """A page that is allowed can read why its request failed, also when a middleware refused it."""
    r = httpx.post(f"{cors_url}/tables", content=b"{}", headers={"Origin": PAGE, "content-type": "text/plain"})
    expect_error(r, 415, "unsupported_media_type")
    assert r.headers["access-control-allow-origin"] == PAGE
