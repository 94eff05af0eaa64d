"""Fixtures for the service tests: real uvicorn servers on loopback over the session's database.

``db`` and ``name`` come from ``tests/conftest.py`` (one real local Ray and one Database per session). Each server
here is the real app served by uvicorn in a background thread on a free port; tests talk to it with httpx.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from sample_tables import USERS_SCHEMA
from starlette.applications import Starlette

from engine import Database, Settings
from service import create_app
from service.background import live_server

SERVICE_SETTINGS = ("auth", "admin_key", "allowed_hosts", "cors_origins", "max_body_bytes", "max_rows_per_request")


def app_settings(db: Database, **changes: Any) -> Settings:
    """The database's settings with the service's own defaults (whatever ``TESSERA_*`` says), then ``changes``."""
    defaults = Settings()
    service = {f: getattr(defaults, f) for f in SERVICE_SETTINGS}
    return db.settings.with_(**{**service, **changes})


@pytest.fixture(scope="session")
def serve(db: Database) -> Iterator[Callable[..., str]]:
    """Start another app over the same database with some settings changed (or a given app); returns its URL."""
    with ExitStack() as stack:

        def start(app: Starlette | None = None, **changes: Any) -> str:
            return stack.enter_context(live_server(app or create_app(db, app_settings(db, **changes))))

        yield start


@pytest.fixture(scope="session")
def base_url(serve: Callable[..., str]) -> str:
    return serve()


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{base_url}/api/v1", timeout=60) as c:
        yield c


@pytest.fixture
def users(client: httpx.Client, name: str) -> str:
    """A table ``id int (key), name string not null, age int, score float, active bool, meta json, seen timestamp``
    with three rows; returns its name."""
    schema = USERS_SCHEMA
    r = client.post("/tables", json={"name": name, "schema": schema, "primary_key": "id", "shards": 2})
    assert r.status_code == 200, r.text
    rows = [
        {"id": 1, "name": "Ada", "age": 36, "score": 9.5, "active": True, "meta": {"lang": "en"}},
        {"id": 2, "name": "Grace", "age": 45, "score": 7.25, "active": False, "seen": "2024-05-01T12:00:00Z"},
        {"id": 3, "name": "Linus", "age": None, "score": None, "active": True, "meta": [1, 2]},
    ]
    r = client.post(f"/tables/{name}/rows/batch", json={"rows": rows})
    assert r.status_code == 200, r.text
    return name


def assert_error(r: httpx.Response, status: int, code: str | None = None, *mentions: str) -> dict[str, Any]:
    """An error response: its status, code, request id, and a ``detail`` that names each of ``mentions``."""
    assert r.status_code == status, r.text
    assert r.headers.get("x-request-id"), r.headers
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if code is not None:
        assert body["code"] == code, body
    for text in mentions:
        assert text in body["detail"], (text, body)
    assert "Traceback" not in r.text
    return body


@pytest.fixture(scope="session")
def expect_error() -> Callable[..., dict[str, Any]]:
    return assert_error


@pytest.fixture(scope="session")
def row_count(client: httpx.Client) -> Callable[[str], int]:
    def count(table: str) -> int:
        r = client.get(f"/tables/{table}/rows/count")
        assert r.status_code == 200, r.text
        return int(r.json()["row_count"])

    return count
