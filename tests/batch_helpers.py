"""Helpers for the batch and idempotency tests (engine and service): real faults and real waits.

- ``broken_storage``: a table's shard datasets replaced by plain files, so Lance writes fail for real;
- ``shards_held``: another writer holds a table's shard slots, so a write waits (a request stays "in progress");
- ``reserved``: an Idempotency-Key reserved and not answered yet, read from the catalog file;
- ``write_lock``: another connection holds the catalog's write lock, so catalog writes stay busy.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import ray

import engine
from engine.storage import lance as storage


def broken_table(db: engine.Database, name: str) -> str:
    """A one-shard table with one row (so its shard is loaded on its host)."""
    db.create_table(f"{name}_s", {"id": "int", "v": "int"}, primary_key="id", shards=1)
    db.table(f"{name}_s").insert({"id": -1, "v": 0})
    return f"{name}_s"


@contextmanager
def broken_storage(db: engine.Database, table: str) -> Iterator[None]:
    """Every shard dataset of ``table`` replaced by a plain file, so writes to Lance fail for real; put back after."""
    record = db.catalog.get_table(table)
    moved = []
    for i in range(record.shards):
        uri = Path(storage.shard_uri(db.root, record.id, i))
        aside = uri.with_name(uri.name + ".aside")
        uri.rename(aside)
        uri.write_text("not a dataset")
        moved.append((uri, aside))
    try:
        yield
    finally:
        for uri, aside in moved:
            uri.unlink()
            aside.rename(uri)


@contextmanager
def shards_held(db: engine.Database, table: str) -> Iterator[None]:
    """Another writer holds the writer slot of every shard of ``table`` until the block ends: writes wait."""
    record = db.catalog.get_table(table)
    txn = f"holder-{uuid.uuid4().hex}"
    hosts = [(db.coordinator.host(record.id, i), i) for i in range(record.shards)]
    ray.get([host.acquire.remote(record.id, i, txn) for host, i in hosts])
    try:
        yield
    finally:
        ray.get([host.finish.remote(record.id, i, txn, False) for host, i in hosts])


def reserved(db: engine.Database, key: str) -> bool:
    """The key is reserved and not answered yet (read straight from the catalog file)."""
    with sqlite3.connect(db.catalog.path) as catalog:
        row = catalog.execute("SELECT done FROM idempotency WHERE key = ?", (key,)).fetchone()
    return row is not None and row[0] == 0


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@contextmanager
def write_lock(path: str) -> Iterator[None]:
    """Another connection (as another process would) holds SQLite's write lock on the catalog file."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()
