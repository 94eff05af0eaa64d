"""Kill -9 of the server in the middle of a batch without a transaction, sent with an Idempotency-Key.

Each operation commits on its own, and its commit also stores the results so far under the key; the retry after
the restart resumes after the operations that committed, so none is applied twice and the rest run once.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_crash import Server

pytestmark = pytest.mark.slow

BATCH = {
    "operations": [
        {"operation": "update", "table": "accounts", "where": {"id": 1}, "set": {"balance": {"expr": "balance - 30"}}},
        {"operation": "insert", "table": "ledger", "data": {"id": 1, "amount": 30}},
        {"operation": "update", "table": "accounts", "where": {"id": 6}, "set": {"balance": {"expr": "balance + 30"}}},
    ],
    "transaction": False,
}
KEY = {"Idempotency-Key": "transfer-1"}


def balances(server: Server) -> dict[int, int]:
    rows = server.http.post("/tables/accounts/query", json={"limit": 100}).json()["rows"]
    return {r["id"]: r["balance"] for r in rows}


def test_a_batch_cut_after_its_first_commit_resumes_on_retry(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = Server(data_dir)
    try:
        for name, columns in (
            ("accounts", {"id": "int", "balance": "int"}),
            ("ledger", {"id": "int", "amount": "int"}),
        ):
            body = {"name": name, "schema": {"columns": columns}, "primary_key": "id"}
            server.http.post("/tables", json=body).raise_for_status()
        rows = [{"id": i, "balance": 100} for i in range(8)]
        server.http.post("/tables/accounts/rows/batch", json={"rows": rows}).raise_for_status()
    finally:
        server.kill()
    server = Server(data_dir, env={"TESSERA_FAULT": "after_commit"})  # dies right after the first operation commits
    try:
        with pytest.raises(httpx.HTTPError):
            server.http.post("/batch/operations", json=BATCH, headers=KEY)
    finally:
        server.kill()
    server = Server(data_dir)
    try:
        assert balances(server)[1] == 70  # the first operation was committed before the kill
        r = server.http.post("/batch/operations", json=BATCH, headers=KEY)
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["success"] * 3
        assert balances(server) == {**dict.fromkeys(range(8), 100), 1: 70, 6: 130}  # each applied exactly once
        assert server.http.get("/tables/ledger/rows/count").json()["row_count"] == 1
        assert server.http.post("/batch/operations", json=BATCH, headers=KEY).json() == r.json()  # replayed
    finally:
        server.kill()
