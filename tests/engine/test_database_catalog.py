"""What a Database does with its catalog: a lock held past the busy timeout reaches the caller as CatalogBusy and
changes nothing; the maintenance pass forgets Idempotency-Keys past their time to live."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_helpers import write_lock

import engine
from engine.errors import CatalogBusy
from engine.storage.idempotency import iso


@pytest.fixture(scope="module")
def busy_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engine.Database]:
    db = engine.connect(
        data_dir=str(tmp_path_factory.mktemp("busy")),
        maintenance_seconds=0,
        catalog_busy_timeout_seconds=0.2,
        idempotency_ttl_hours=1.0,
    )
    yield db
    db.close()


def test_a_locked_catalog_fails_engine_calls_with_catalog_busy(busy_db: engine.Database) -> None:
    t = busy_db.create_table("t", {"id": "int"}, primary_key="id", shards=2)
    one = [{"operation": "insert", "table": "t", "data": {"id": 1}}]
    with write_lock(busy_db.catalog.path):
        with pytest.raises(CatalogBusy) as exc:
            t.insert({"id": 1})
        assert exc.value.fields["retry_after"] == 1
        with pytest.raises(CatalogBusy):
            busy_db.create_table("u", {"id": "int"}, primary_key="id", shards=1)
        with pytest.raises(CatalogBusy):  # an idempotent batch cannot even reserve its key: nothing ran
            busy_db.batch(one, idempotency_key="locked")
        result = busy_db.batch(one)  # without a key the batch runs, and its operation fails on our side
        assert not result.committed and [e.code for e in result.errors] == ["busy"] and result.transient
        assert t.count() == 0  # reads still answer
    assert busy_db.list_tables() == ["t"] and t.count() == 0  # nothing of those calls was applied
    assert not [p for p in Path(busy_db.root, "tables").iterdir() if p.name != busy_db.catalog.get_table("t").id]
    assert busy_db.batch(one, idempotency_key="locked").committed  # the key was never reserved: it runs now
    t.insert({"id": 2})
    assert t.count() == 2


def test_maintenance_forgets_keys_past_their_time_to_live(busy_db: engine.Database) -> None:
    busy_db.create_table("ttl", {"id": "int", "v": "int"}, primary_key="id", shards=1)
    busy_db.table("ttl").insert({"id": 1, "v": 0})
    ops = [{"operation": "update", "table": "ttl", "where": {"id": 1}, "set": {"v": {"expr": "v + 1"}}}]
    for key in ("old", "new"):
        busy_db.batch(ops, idempotency_key=key)
    with sqlite3.connect(busy_db.catalog.path) as db:  # "old" was answered more than an hour ago
        db.execute("UPDATE idempotency SET created_at = ? WHERE key = 'old'", (iso(time.time() - 2 * 3600),))
    busy_db.maintain()
    with sqlite3.connect(busy_db.catalog.path) as db:
        assert [k for (k,) in db.execute("SELECT key FROM idempotency WHERE key IN ('old', 'new')")] == ["new"]
    busy_db.batch(ops, idempotency_key="new")  # replayed
    busy_db.batch(ops, idempotency_key="old")  # forgotten: runs again
    assert busy_db.table("ttl").to_pylist() == [{"id": 1, "v": 3}]


def test_the_time_to_live_and_busy_timeout_come_from_the_environment() -> None:
    settings = engine.Settings.from_env(
        {"TESSERA_IDEMPOTENCY_TTL_HOURS": "0.5", "TESSERA_CATALOG_BUSY_TIMEOUT_SECONDS": "2"}
    )
    assert settings.idempotency_ttl_hours == 0.5 and settings.catalog_busy_timeout_seconds == 2.0
    assert engine.Settings().idempotency_ttl_hours == 24.0
