"""POST /batch/operations over a real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

JSON = {"content-type": "application/json"}  # raw bodies need it; httpx sets it only for json=


@pytest.fixture
def accounts(client: httpx.Client, name: str) -> str:
    schema = {"columns": {"id": "int", "balance": "float", "version": "int"}}
    r = client.post("/tables", json={"name": name, "schema": schema, "primary_key": "id", "shards": 4})
    assert r.status_code == 200, r.text
    rows = [{"id": i, "balance": 100.0, "version": 0} for i in range(8)]
    assert client.post(f"/tables/{name}/rows/batch", json={"rows": rows}).status_code == 200
    return name


def balances(client: httpx.Client, table: str) -> dict[int, float]:
    r = client.post(f"/tables/{table}/query", json={"limit": 1000})
    return {row["id"]: row["balance"] for row in r.json()["rows"]}


def test_transfer_with_expressions(client: httpx.Client, accounts: str) -> None:
    body = {
        "operations": [
            {
                "operation": "update",
                "table": accounts,
                "where": {"id": 1},
                "set": {"balance": {"expr": "balance - 10"}},
                "expect_rows": 1,
            },
            {
                "operation": "update",
                "table": accounts,
                "where": {"id": 6},
                "set": {"balance": {"expr": "balance + 10"}},
                "expect_rows": 1,
            },
        ]
    }
    r = client.post("/batch/operations", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["committed"] is True and out["successful"] == 2 and out["failed"] == 0 and out["errors"] == []
    assert out["total_operations"] == 2 and isinstance(out["execution_time_ms"], float)
    assert out["results"] == [
        {"operation": 0, "status": "success", "rows_affected": 1},
        {"operation": 1, "status": "success", "rows_affected": 1},
    ]
    b = balances(client, accounts)
    assert b[1] == 90.0 and b[6] == 110.0 and sum(b.values()) == 800.0


def test_a_processed_request_that_failed_is_200_with_the_failure(client: httpx.Client, accounts: str) -> None:
    body = {
        "operations": [
            {"operation": "update", "table": accounts, "where": {}, "set": {"balance": 0.0}},
            {"operation": "insert", "table": accounts, "data": {"id": 3, "balance": 1.0, "version": 0}},
        ],
        "return_results": False,
    }
    r = client.post("/batch/operations", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["committed"] is False and out["failed"] == 1 and out["results"] == []
    assert out["errors"] == [
        {
            "operation": 1,
            "table": accounts,
            "operation_type": "insert",
            "error": out["errors"][0]["error"],
            "code": "duplicate_key",
        }
    ]
    assert set(balances(client, accounts).values()) == {100.0}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{", 400, "malformed_json"),
        ({"operations": []}, 400, "invalid_request"),
        ({"operations": [{"operation": "merge", "table": "t"}]}, 422, "validation_error"),
        ({"operations": [{"operation": "insert"}]}, 422, "validation_error"),
        ({"operations": "x"}, 422, "validation_error"),
        ({"operations": [], "surprise": 1}, 422, "validation_error"),
        ({"operations": [{"operation": "delete", "table": "t", "where": {}}] * 1001}, 413, "too_large"),
    ],
)
def test_requests_that_cannot_be_processed(
    client: httpx.Client, expect_error: Callable[..., dict[str, Any]], body: Any, status: int, code: str
) -> None:
    r = (
        client.post("/batch/operations", content=body, headers=JSON)
        if isinstance(body, bytes)
        else client.post("/batch/operations", json=body)
    )
    expect_error(r, status, code)


def test_too_many_rows_is_413_before_anything_runs(
    client: httpx.Client, accounts: str, expect_error: Callable[..., dict[str, Any]]
) -> None:
    rows = [{"id": 1000 + i, "balance": 0.0, "version": 0} for i in range(100_001)]
    r = client.post(
        "/batch/operations", json={"operations": [{"operation": "insert", "table": accounts, "data": rows}]}
    )
    expect_error(r, 413, "too_large")
    assert len(balances(client, accounts)) == 8


def test_validation_failure_changes_nothing(client: httpx.Client, accounts: str) -> None:
    ops = [
        {"operation": "update", "table": accounts, "where": {"id": 1}, "set": {"balance": 1.0}},
        {"operation": "update", "table": accounts, "where": {"id": 2}, "set": {"balance": {"expr": "balance.real"}}},
        {"operation": "upsert", "table": "nope", "data": {"id": 1}},
    ]
    r = client.post("/batch/operations", json={"operations": ops, "continue_on_error": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [e["operation"] for e in out["errors"]] == [1, 2] and [e["code"] for e in out["errors"]] == [
        "invalid_expression",
        "table_not_found",
    ]
    assert [x["status"] for x in out["results"]] == ["rolled_back", "failed", "failed"]
    assert set(balances(client, accounts).values()) == {100.0}


def test_idempotency_key_header(
    client: httpx.Client, accounts: str, expect_error: Callable[..., dict[str, Any]]
) -> None:
    ops = {
        "operations": [
            {"operation": "update", "table": accounts, "where": {"id": 0}, "set": {"balance": {"expr": "balance - 1"}}}
        ]
    }
    headers = {"Idempotency-Key": f"retry-{accounts}"}
    first = client.post("/batch/operations", json=ops, headers=headers)
    again = client.post("/batch/operations", json=ops, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert balances(client, accounts)[0] == 99.0  # applied once
    other = {"operations": [{"operation": "delete", "table": accounts, "where": {}}]}
    expect_error(client.post("/batch/operations", json=other, headers=headers), 422, "idempotency_key_reused")
    assert len(balances(client, accounts)) == 8
