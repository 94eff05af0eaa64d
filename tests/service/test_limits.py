"""Request limits on an app with small ones: body size (declared and streamed) and rows per request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

ErrorCheck = Callable[..., dict[str, Any]]
BODY_LIMIT = 4096
ROWS_LIMIT = 5


@pytest.fixture(scope="module")
def limited(serve: Callable[..., str]) -> Iterator[httpx.Client]:
    url = serve(max_body_bytes=BODY_LIMIT, max_rows_per_request=ROWS_LIMIT)
    with httpx.Client(base_url=f"{url}/api/v1", timeout=60) as c:
        yield c


def rows(n: int, start: int = 100, pad: int = 0) -> list[dict[str, Any]]:
    return [{"id": start + i, "name": "x" * pad} for i in range(n)]


def test_body_under_the_limit_is_served(limited: httpx.Client, users: str, row_count: Callable[[str], int]) -> None:
    r = limited.post(f"/tables/{users}/rows/batch", json={"rows": rows(ROWS_LIMIT)})
    assert r.status_code == 200, r.text
    assert row_count(users) == 3 + ROWS_LIMIT


def test_declared_body_over_the_limit_is_413(
    limited: httpx.Client, users: str, row_count: Callable[[str], int], expect_error: ErrorCheck
) -> None:
    body = {"rows": rows(2, pad=BODY_LIMIT)}
    r = limited.post(f"/tables/{users}/rows/batch", json=body)
    result = expect_error(r, 413, "body_too_large", str(BODY_LIMIT))
    assert result["limit"] == BODY_LIMIT
    assert row_count(users) == 3


def test_streamed_body_over_the_limit_is_413(
    limited: httpx.Client, users: str, row_count: Callable[[str], int], expect_error: ErrorCheck
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"rows": ['
        for i in range(20):
            yield b'{"id": %d, "name": "%s"},' % (200 + i, b"y" * 500)
        yield b'{"id": 1000, "name": "z"}]}'

    r = limited.post(f"/tables/{users}/rows/batch", content=chunks(), headers={"content-type": "application/json"})
    expect_error(r, 413, "body_too_large", str(BODY_LIMIT))
    assert row_count(users) == 3


def test_streamed_body_under_the_limit_is_served(limited: httpx.Client, users: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"data": '
        yield b'{"id": 7, "name": "streamed"}}'

    r = limited.post(f"/tables/{users}/rows", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["name"] == "streamed"


def test_too_many_rows_is_413_before_anything_runs(
    limited: httpx.Client, users: str, row_count: Callable[[str], int], expect_error: ErrorCheck
) -> None:
    result = expect_error(
        limited.post(f"/tables/{users}/rows/batch", json={"rows": rows(ROWS_LIMIT + 1)}), 413, "too_large", "6 rows"
    )
    assert result["limit"] == ROWS_LIMIT
    assert row_count(users) == 3


def test_too_many_rows_in_a_missing_table_is_still_413(limited: httpx.Client, expect_error: ErrorCheck) -> None:
    expect_error(limited.post("/tables/nowhere/rows/batch", json={"rows": rows(ROWS_LIMIT + 1)}), 413, "too_large")


def test_the_default_app_takes_a_large_batch(client: httpx.Client, users: str, row_count: Callable[[str], int]) -> None:
    r = client.post(f"/tables/{users}/rows/batch", json={"rows": rows(10_000, start=10)})
    assert r.status_code == 200, r.text
    assert r.json()["row_count"] == 10_000
    assert row_count(users) == 10_003
