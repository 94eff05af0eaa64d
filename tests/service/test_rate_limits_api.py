"""Rate limits over REST: the headers, 429 with Retry-After, exact counts under concurrency (with exactly the
accepted requests applied), disabled limits, and the unlimited anonymous administrator of open mode."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from auth_helpers import ADMIN, ADMIN_KEY, READ_ONLY, READ_WRITE, bearer, new_key

ErrorCheck = Callable[..., dict[str, Any]]
Serve = Callable[..., str]


def parallel(n: int, call: Callable[[int], httpx.Response], workers: int = 50) -> list[httpx.Response]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(call, range(n)))


def test_keyed_responses_carry_the_limit_headers(serve: Serve) -> None:
    api = serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1"
    key, _ = new_key(api, READ_ONLY)
    before = time.time()
    r = httpx.get(f"{api}/tables", headers=bearer(key))
    assert r.status_code == 200
    assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == ("50", "49")  # the burst
    assert before <= int(r.headers["x-ratelimit-reset"]) <= before + 60  # epoch seconds, when the burst is back
    r = httpx.get(f"{api}/tables/nope", headers=bearer(key))  # errors too
    assert r.status_code == 404 and r.headers["x-ratelimit-remaining"] in ("48", "49")  # 20 tokens a second come back


def test_the_anonymous_administrator_is_not_limited(client: httpx.Client) -> None:
    responses = parallel(120, lambda _: client.get("/tables"))
    assert {r.status_code for r in responses} == {200}
    assert all("x-ratelimit-limit" not in r.headers for r in responses)


def test_a_burst_past_the_limit_sees_429s(serve: Serve, expect_error: ErrorCheck) -> None:
    api = serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1"
    key, _ = new_key(api, READ_ONLY)
    with httpx.Client(headers=bearer(key), limits=httpx.Limits(max_connections=100)) as c:
        responses = parallel(100, lambda _: c.get(f"{api}/tables"), workers=100)
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] >= 50 and statuses[429] > 0 and set(statuses) == {200, 429}, statuses
    limited = next(r for r in responses if r.status_code == 429)
    body = expect_error(limited, 429, "rate_limited", "Rate limit exceeded", "1200 requests per minute")
    assert body["limit"] == "requests"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining"] == "0"


def test_exactly_the_batch_limit_is_accepted_and_applied(serve: Serve, name: str) -> None:
    """200 parallel batches from one key with the general limit off: exactly 100 accepted, exactly those applied."""
    api = serve(auth="required", admin_key=ADMIN_KEY, rate_limit_requests_per_minute=0) + "/api/v1"
    schema = {"columns": {"id": "int"}}
    r = httpx.post(f"{api}/tables", json={"name": name, "schema": schema, "primary_key": "id"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    key, _ = new_key(api, READ_WRITE)

    def batch(i: int) -> httpx.Response:
        ops = [{"operation": "insert", "table": name, "data": [{"id": i}]}]
        return c.post(f"{api}/batch/operations", json={"operations": ops})

    with httpx.Client(headers=bearer(key), timeout=120, limits=httpx.Limits(max_connections=50)) as c:
        responses = parallel(200, batch)
    accepted = {i for i, r in enumerate(responses) if r.status_code == 200}
    refused = [r for r in responses if r.status_code == 429]
    assert len(accepted) == 100 and len(refused) == 100, Counter(r.status_code for r in responses)
    assert all(
        r.json()["limit"] == "batch" and "100 batch operations per minute" in r.json()["detail"] for r in refused
    )
    assert all(r.headers["x-ratelimit-limit"] == "100" for r in responses)
    rows = httpx.post(f"{api}/tables/{name}/query", json={"limit": 1000}, headers=ADMIN).json()["rows"]
    assert {row["id"] for row in rows} == accepted


def test_a_limit_of_zero_is_off_and_off_turns_them_all_off(serve: Serve) -> None:
    api = serve(auth="required", admin_key=ADMIN_KEY, rate_limit_requests_per_minute=0) + "/api/v1"
    key, _ = new_key(api, READ_ONLY)
    r = httpx.get(f"{api}/tables", headers=bearer(key))
    assert r.status_code == 200 and "x-ratelimit-limit" not in r.headers  # no limit applied: no headers
    api = serve(auth="required", admin_key=ADMIN_KEY, rate_limits="off", rate_limit_burst=1) + "/api/v1"
    with httpx.Client(headers=bearer(key)) as c:
        responses = parallel(60, lambda _: c.get(f"{api}/tables"))
    assert {r.status_code for r in responses} == {200}
    assert all("x-ratelimit-limit" not in r.headers for r in responses)


def test_limits_are_per_key(serve: Serve) -> None:
    api = serve(auth="required", admin_key=ADMIN_KEY, rate_limit_burst=3, rate_limit_requests_per_minute=60) + "/api/v1"
    first, _ = new_key(api, READ_ONLY)
    second, _ = new_key(api, READ_ONLY)
    assert [httpx.get(f"{api}/tables", headers=bearer(first)).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert httpx.get(f"{api}/tables", headers=bearer(second)).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/api/v1/health", "/api/v1/ready"])
def test_public_paths_are_not_limited(serve: Serve, path: str) -> None:
    root = serve(auth="required", admin_key=ADMIN_KEY, rate_limit_burst=1, rate_limit_requests_per_minute=1)
    key, _ = new_key(root + "/api/v1", READ_ONLY)
    statuses = {httpx.get(root + path, headers=bearer(key)).status_code for _ in range(5)}
    assert statuses == {200}
