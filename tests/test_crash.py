"""Kill -9 of the whole server: acknowledged rows survive, and a write cut at any step is all there or absent.

Each case starts ``tessera serve`` in its own session (process group, Ray included), kills the group with
SIGKILL, and restarts on the same data directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from engine.physical.faults import STEPS

pytestmark = pytest.mark.slow


class Server:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.log = open(data_dir.parent / f"server-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                "--shards",
                "4",
                "--num-cpus",
                "2",
            ],
            # No job workers unless a case asks for them: two more engine processes per start cost these cases time.
            env={**os.environ, "TESSERA_JOB_WORKERS": "0", **(env or {}), "TESSERA_MAINTENANCE_SECONDS": "0"},
            start_new_session=True,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"server exited early, see {self.log.name}"
            try:
                if self.http.get("/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the server and everything it started (Ray's processes share its session)."""
        self.http.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def prepared(tmp_path_factory: pytest.TempPathFactory, setup: Callable[[Server], None]) -> Path:
    """A data directory made once by ``setup`` on a server that is then killed: the cases copy it rather than
    each starting a server to build the same tables (a server start is most of a case's time)."""
    template = tmp_path_factory.mktemp("template") / "data"
    server = Server(template)
    try:
        setup(server)
    finally:
        server.kill()
    return template


def copy_of(template: Path, data_dir: Path) -> Path:
    shutil.copytree(template, data_dir)
    return data_dir


def _one_table(server: Server) -> None:
    server.http.post(
        "/tables", json={"name": "t", "schema": {"columns": {"id": "int"}}, "primary_key": "id"}
    ).raise_for_status()
    server.http.post("/tables/t/rows/batch", json={"rows": [{"id": i} for i in range(100)]}).raise_for_status()


def _two_tables(server: Server) -> None:
    accounts = {"name": "accounts", "schema": {"columns": {"id": "int", "balance": "int"}}, "primary_key": "id"}
    ledger = {"name": "ledger", "schema": {"columns": {"id": "int", "amount": "int"}}, "primary_key": "id"}
    for body in (accounts, ledger):
        server.http.post("/tables", json=body).raise_for_status()
    server.http.post(
        "/tables/accounts/rows/batch", json={"rows": [{"id": i, "balance": 100} for i in range(8)]}
    ).raise_for_status()


@pytest.fixture(scope="module")
def one_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepared(tmp_path_factory, _one_table)


@pytest.fixture(scope="module")
def two_tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepared(tmp_path_factory, _two_tables)


def ids(server: Server, table: str) -> list[int]:
    r = server.http.post(
        f"/tables/{table}/query",
        json={"select": ["id"], "order_by": [{"column": "id", "direction": "asc"}], "limit": 10_000},
    )
    r.raise_for_status()
    return [row["id"] for row in r.json()["rows"]]


def test_acknowledged_rows_survive_kill_9(data_dir: Path) -> None:
    server = Server(data_dir)
    try:
        assert (
            server.http.post(
                "/tables", json={"name": "t", "schema": {"columns": {"id": "int", "v": "string"}}, "primary_key": "id"}
            ).status_code
            == 200
        )
        acked = []
        for b in range(5):
            rows = [{"id": b * 1000 + i, "v": "x"} for i in range(1000)]
            assert server.http.post("/tables/t/rows/batch", json={"rows": rows}).status_code == 200
            acked += [r["id"] for r in rows]
        assert server.http.post("/tables/t/rows", json={"data": {"id": -1, "v": "single"}}).status_code == 200
        assert (
            server.http.patch("/tables/t/rows", json={"where": {"id": 0}, "set": {"v": "updated"}}).status_code == 200
        )
        assert server.http.request("DELETE", "/tables/t/rows", json={"where": {"id": 1}}).status_code == 200
    finally:
        server.kill()
    server = Server(data_dir)
    try:
        assert ids(server, "t") == sorted({-1, *acked} - {1})
        assert server.http.get("/tables/t/rows/0").json()["data"]["v"] == "updated"
        assert server.http.post("/tables/t/rows", json={"data": {"id": 99_999}}).status_code == 200
        assert server.http.get("/tables/t/rows/count").json()["row_count"] == len(acked) + 1
    finally:
        server.kill()


@pytest.mark.parametrize("rows", [200, 2000], ids=["logged", "lance"])
@pytest.mark.parametrize("step", STEPS)
def test_write_cut_at_each_step_is_all_or_nothing(data_dir: Path, one_table: Path, step: str, rows: int) -> None:
    """``rows``: a write small enough for the shard log, or large enough to go to Lance (see engine.physical.shardlog)."""
    copy_of(one_table, data_dir)
    server = Server(data_dir, env={"TESSERA_FAULT": step})
    try:
        with pytest.raises(httpx.HTTPError):  # the server dies at the fault point, before answering
            server.http.post("/tables/t/rows/batch", json={"rows": [{"id": i} for i in range(100, 100 + rows)]})
    finally:
        server.kill()
    server = Server(data_dir)
    try:
        got = ids(server, "t")
        assert got in (list(range(100)), list(range(100 + rows))), f"partial write visible after a crash at {step}"
        if step == "after_commit":
            assert got == list(range(100 + rows))
        # Staged leftovers do not get in the way: the next write succeeds and is based on committed data.
        server.http.post(
            "/tables/t/rows/batch", json={"rows": [{"id": i} for i in range(10_000, 10_100)]}
        ).raise_for_status()
        assert len(ids(server, "t")) == len(got) + 100
    finally:
        server.kill()


@pytest.mark.parametrize("step", STEPS)
def test_batch_across_tables_cut_at_each_step_is_all_or_nothing(data_dir: Path, two_tables: Path, step: str) -> None:
    copy_of(two_tables, data_dir)
    batch = {
        "operations": [
            {
                "operation": "update",
                "table": "accounts",
                "where": {"id": 1},
                "set": {"balance": {"expr": "balance - 30"}},
            },
            {
                "operation": "update",
                "table": "accounts",
                "where": {"id": 6},
                "set": {"balance": {"expr": "balance + 30"}},
            },
            {"operation": "insert", "table": "ledger", "data": {"id": 1, "amount": 30}},
        ]
    }
    server = Server(data_dir, env={"TESSERA_FAULT": step})
    try:
        with pytest.raises(httpx.HTTPError):
            server.http.post("/batch/operations", json=batch, headers={"Idempotency-Key": "transfer-1"})
    finally:
        server.kill()
    server = Server(data_dir)
    try:
        rows = server.http.post("/tables/accounts/query", json={"limit": 100}).json()["rows"]
        balances = {r["id"]: r["balance"] for r in rows}
        ledger_rows = server.http.get("/tables/ledger/rows/count").json()["row_count"]
        applied = balances[1] == 70
        assert balances == {**dict.fromkeys(range(8), 100), **({1: 70, 6: 130} if applied else {})}
        assert ledger_rows == (1 if applied else 0), f"accounts and ledger disagree after a crash at {step}"
        if step == "after_commit":
            assert applied
        # The client retries with the same key: applied exactly once either way.
        r = server.http.post("/batch/operations", json=batch, headers={"Idempotency-Key": "transfer-1"})
        assert r.status_code == 200 and r.json()["committed"] is True
        rows = server.http.post("/tables/accounts/query", json={"limit": 100}).json()["rows"]
        assert {r["id"]: r["balance"] for r in rows}[1] == 70
        assert server.http.get("/tables/ledger/rows/count").json()["row_count"] == 1
    finally:
        server.kill()
