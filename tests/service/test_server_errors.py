"""Our own failures: a 500 shows no internals and is logged with the request id; an unavailable shard is a 503.

The app is the real one with a few extra routes that fail on purpose, served like the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import Database
from engine.errors import CatalogBusy, ShardUnavailable, StorageError
from service import create_app
from service.errors import NotReady

ErrorCheck = Callable[..., dict[str, Any]]


async def boom(request: Request) -> Response:
    raise RuntimeError("secret internal detail")


async def storage(request: Request) -> Response:
    raise StorageError("lance failed at /secret/path")


async def shard(request: Request) -> Response:
    raise ShardUnavailable("a shard host was unavailable; it is being restarted", retry_after=3)


async def not_ready(request: Request) -> Response:
    raise NotReady("Engine not ready")


async def busy(request: Request) -> Response:
    raise CatalogBusy()


@pytest.fixture(scope="module")
def failing(serve: Callable[..., str], db: Database) -> str:
    app = create_app(db, db.settings.with_(auth="open"))
    routes = [("/boom", boom), ("/storage", storage), ("/shard", shard), ("/not-ready", not_ready), ("/busy", busy)]
    for path, endpoint in routes:
        app.router.routes.insert(0, Route(path, endpoint, methods=["GET", "POST"]))
    return serve(app)


@pytest.mark.parametrize("path", ["/boom", "/storage"])
def test_internal_error_is_a_generic_500(
    failing: str, path: str, caplog: pytest.LogCaptureFixture, expect_error: ErrorCheck
) -> None:
    with caplog.at_level(logging.ERROR, logger="tessera.service"):
        r = httpx.get(failing + path, headers={"X-Request-ID": "req-500-check"})
    body = expect_error(r, 500, "internal_error", "req-500-check")
    assert body == {
        "detail": "Internal server error (request id req-500-check)",
        "code": "internal_error",
        "request_id": "req-500-check",
    }
    assert r.headers["x-request-id"] == "req-500-check"
    assert "secret" not in r.text
    logged = [rec for rec in caplog.records if "req-500-check" in rec.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_internal_error_with_a_body(failing: str) -> None:
    r = httpx.post(failing + "/boom", json={"x": 1})
    assert r.status_code == 500
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_shard_unavailable_is_503_with_retry_after(failing: str, expect_error: ErrorCheck) -> None:
    r = httpx.get(failing + "/shard")
    expect_error(r, 503, "shard_unavailable", "shard")
    assert r.headers["retry-after"] == "3"


def test_not_ready_is_503(failing: str, expect_error: ErrorCheck) -> None:
    r = httpx.get(failing + "/not-ready")
    expect_error(r, 503, "not_ready")
    assert r.headers["retry-after"] == "1"


def test_a_busy_catalog_is_503_with_retry_after(failing: str, expect_error: ErrorCheck) -> None:
    """SQLite still locked after its busy timeout: nothing changed, worth retrying; not a 500."""
    r = httpx.post(failing + "/busy", json={})
    body = expect_error(r, 503, "busy", "retry")
    assert body["retry_after"] == 1
    assert r.headers["retry-after"] == "1"


def test_the_same_app_still_serves(failing: str) -> None:
    assert httpx.get(failing + "/api/v1/ready").status_code == 200
