"""POST /batch/operations over a real server on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from batch_helpers import broken_storage, broken_table, reserved, shards_held, wait_for, write_lock

import engine
from engine import Database, Settings
from service import create_app

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


def test_a_duplicate_while_the_first_runs_is_409_then_gets_the_first_answer(
    db: Database, client: httpx.Client, accounts: str, expect_error: Callable[..., dict[str, Any]]
) -> None:
    body = {
        "operations": [
            {"operation": "update", "table": accounts, "where": {"id": 2}, "set": {"balance": {"expr": "balance - 5"}}}
        ],
        "transaction": False,
    }
    headers = {"Idempotency-Key": f"dup-{accounts}"}
    first: list[httpx.Response] = []
    with shards_held(db, accounts):  # the first request reserves its key, then waits for a shard
        thread = threading.Thread(
            target=lambda: first.append(client.post("/batch/operations", json=body, headers=headers))
        )
        thread.start()
        wait_for(lambda: reserved(db, headers["Idempotency-Key"]))
        duplicate = client.post("/batch/operations", json=body, headers=headers)
        expect_error(duplicate, 409, "request_in_progress", headers["Idempotency-Key"])
        assert duplicate.headers["retry-after"] == "1"
    thread.join(timeout=120)
    assert first and first[0].status_code == 200 and first[0].json()["committed"] is True
    again = client.post("/batch/operations", json=body, headers=headers)
    assert again.status_code == 200 and again.json() == first[0].json()
    assert balances(client, accounts)[2] == 95.0  # applied once


def test_an_idempotency_key_over_255_characters_is_400_naming_the_header(
    client: httpx.Client, accounts: str, expect_error: Callable[..., dict[str, Any]]
) -> None:
    body = {"operations": [{"operation": "delete", "table": accounts, "where": {}}]}
    r = client.post("/batch/operations", json=body, headers={"Idempotency-Key": "k" * 256})
    assert expect_error(r, 400, "invalid_request", "Idempotency-Key", "255")["field"] == "Idempotency-Key"
    assert len(balances(client, accounts)) == 8


def test_a_storage_failure_shows_no_path_or_exception_and_is_logged(
    db: Database, client: httpx.Client, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    table = broken_table(db, name)
    rows = [{"id": i, "v": i} for i in range(300)]  # a large write: it goes to the shard's Lance dataset
    body = {"operations": [{"operation": "insert", "table": table, "data": rows}]}
    with caplog.at_level(logging.WARNING, logger="tessera.service"), broken_storage(db, table):
        r = client.post("/batch/operations", json=body, headers={"X-Request-ID": f"leak-{name}"})
    assert r.status_code == 200, r.text
    error = r.json()["errors"][0]
    assert error["code"] == "storage_error" and "retry" in error["error"]
    for leak in (db.root, "/tables/", ".lance", "Lance", "Error", "Exception", "Traceback", "os error", "ray"):
        assert leak not in r.text, leak
    logged = [rec for rec in caplog.records if f"leak-{name}" in rec.getMessage()]
    assert logged and db.root in logged[0].getMessage()  # the full cause, server-side, with the request id


@pytest.fixture(scope="module")
def locked_catalog(tmp_path_factory: pytest.TempPathFactory, serve: Callable[..., str]) -> Iterator[tuple[str, str]]:
    """A server over its own database whose catalog gives up on SQLite's lock after 0.2 s; yields its API URL and
    the catalog's path (the test takes the lock from another connection)."""
    busy = engine.connect(
        data_dir=str(tmp_path_factory.mktemp("busy")),
        settings=Settings(),
        num_cpus=2,
        maintenance_seconds=0,
        catalog_busy_timeout_seconds=0.2,
    )
    busy.create_table("t", {"id": "int"}, primary_key="id", shards=1)
    yield serve(create_app(busy, busy.settings)) + "/api/v1", busy.catalog.path
    busy.close()


def test_a_locked_catalog_is_503_busy_with_retry_after(
    locked_catalog: tuple[str, str], expect_error: Callable[..., dict[str, Any]]
) -> None:
    url, catalog = locked_catalog
    one = {"operations": [{"operation": "insert", "table": "t", "data": {"id": 1}}]}
    with httpx.Client(base_url=url, timeout=60) as http, write_lock(catalog):
        for r in (
            http.post("/tables/t/rows", json={"data": {"id": 1}}),
            http.post("/batch/operations", json=one, headers={"Idempotency-Key": "busy-1"}),  # cannot reserve
        ):
            expect_error(r, 503, "busy", "retry")
            assert r.headers["retry-after"] == "1"
        unkeyed = http.post("/batch/operations", json=one)  # processed: the operation failed on our side
        assert unkeyed.status_code == 200 and unkeyed.json()["errors"][0]["code"] == "busy"
        assert http.get("/tables/t/rows/count").json()["row_count"] == 0  # reads still answer (WAL)
    with httpx.Client(base_url=url, timeout=60) as http:  # the lock is gone: the same requests pass
        assert http.post("/batch/operations", json=one, headers={"Idempotency-Key": "busy-1"}).json()["committed"]
        assert http.get("/tables/t/rows/count").json()["row_count"] == 1
