"""Concurrent transfer batches are serialisable; a host killed mid-batch leaves nothing partial."""

from __future__ import annotations

import itertools
import random
import threading
from pathlib import Path

import pytest
import ray

import engine

ACCOUNTS, INITIAL = 16, 1000


@pytest.fixture
def bank(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = engine.connect(data_dir=str(tmp_path), maintenance_seconds=0)
    db.create_table("accounts", {"id": "int", "balance": "int"}, primary_key="id", shards=4)
    db.create_table("ledger", {"id": "int", "src": "int", "dst": "int", "amount": "int"}, primary_key="id", shards=2)
    db.table("accounts").insert([{"id": i, "balance": INITIAL} for i in range(ACCOUNTS)])
    yield db
    db.close()


def transfer(transfer_id: int, src: int, dst: int, amount: int) -> list[dict]:
    return [
        {
            "operation": "update",
            "table": "accounts",
            "where": {"id": src},
            "set": {"balance": {"expr": f"balance - {amount}"}},
            "expect_rows": 1,
        },
        {
            "operation": "update",
            "table": "accounts",
            "where": {"id": dst},
            "set": {"balance": {"expr": f"balance + {amount}"}},
            "expect_rows": 1,
        },
        {
            "operation": "insert",
            "table": "ledger",
            "data": {"id": transfer_id, "src": src, "dst": dst, "amount": amount},
        },
    ]


def check_books(db: engine.Database) -> None:
    """Every account = initial + net of the committed transfers in the ledger; nothing lost, nothing extra."""
    balances = {r["id"]: r["balance"] for r in db.table("accounts").to_pylist()}
    expected = dict.fromkeys(range(ACCOUNTS), INITIAL)
    for t in db.table("ledger").to_pylist():
        expected[t["src"]] -= t["amount"]
        expected[t["dst"]] += t["amount"]
    assert balances == expected


@pytest.mark.slow
def test_concurrent_transfers_are_serialisable(bank: engine.Database) -> None:
    ids = itertools.count()
    lock = threading.Lock()
    committed: list[int] = []
    sums: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def client(seed: int, batches: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(batches):
                with lock:
                    tid = next(ids)
                src, dst = rng.sample(range(ACCOUNTS), 2)
                result = bank.batch(transfer(tid, src, dst, rng.randint(1, 50)))
                assert result.committed, result.errors
                committed.append(tid)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        while not done.is_set():
            sums.append(sum(bank.table("accounts").to_arrow()["balance"].to_pylist()))

    readers = [threading.Thread(target=reader) for _ in range(2)]
    clients = [threading.Thread(target=client, args=(k, 250)) for k in range(8)]  # 2,000 batches
    for t in readers + clients:
        t.start()
    for t in clients:
        t.join(timeout=600)
    done.set()
    for t in readers:
        t.join()
    assert not errors, errors[:3]
    assert len(committed) == 2000
    assert sums and set(sums) == {ACCOUNTS * INITIAL}  # every read saw whole batches only
    assert sorted(r["id"] for r in bank.table("ledger").to_pylist()) == sorted(committed)
    check_books(bank)


def test_host_killed_mid_batches_leaves_nothing_partial(bank: engine.Database) -> None:
    stop = threading.Event()
    outcomes: list[bool] = []
    ids = itertools.count()

    def client() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            src, dst = rng.sample(range(ACCOUNTS), 2)
            try:
                outcomes.append(bank.batch(transfer(next(ids), src, dst, 5)).committed)
            except engine.TesseraError:
                outcomes.append(False)  # failed cleanly (a host stayed down past the retry window)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        for _ in range(3):
            for host in bank.coordinator.hosts:
                ray.kill(host, no_restart=False)
            before = len(outcomes)
            while len(outcomes) < before + 5 and thread.is_alive():  # let some batches through between kills
                stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=120)
    assert outcomes
    check_books(bank)
    assert bank.batch(transfer(10**6, 0, 1, 1)).committed  # the next batch succeeds
    check_books(bank)
