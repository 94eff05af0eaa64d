"""Start-up reconciliation against a table being created by another process on the same data directory.

A table's data is written before the catalog names it, so a process that starts in between must not take the new
directory for a crashed request's leftovers. Two Databases on one data directory stand for the two processes (they
share the session's Ray and, since hosts are named by data directory, the shard hosts).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.model.schema import build_schema
from engine.storage import lance as storage


def open_db(data_dir: Path) -> engine.Database:
    return engine.connect(data_dir=str(data_dir), maintenance_seconds=0)


def test_a_table_created_while_another_process_starts_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creator = open_db(tmp_path)
    create_in_catalog = creator.catalog.create_table

    def another_process_starts_first(*args: Any) -> None:
        # The data of the new table is on disk and the catalog does not name it yet: another process starts
        # on the same data directory right now (and reconciles) before this create reaches the catalog.
        open_db(tmp_path).close()
        create_in_catalog(*args)

    monkeypatch.setattr(creator.catalog, "create_table", another_process_starts_first)
    table = creator.create_table("fresh", {"id": "int", "v": "int"}, primary_key="id", shards=2)
    record = creator.catalog.get_table("fresh")
    assert Path(storage.table_dir(creator.root, record.id)).is_dir()
    table.insert([{"id": i, "v": i} for i in range(600)])  # a large write: it goes to the shards' Lance datasets
    assert table.count() == 600
    creator.close()


def test_leftovers_of_a_crashed_create_are_removed_once_idle(tmp_path: Path) -> None:
    schema = build_schema("t", {"id": "int"}, "id").arrow_schema()
    old, recent = uuid.uuid4().hex, uuid.uuid4().hex
    for table_id in (old, recent):
        storage.create(storage.shard_uri(str(tmp_path), table_id, 0), schema)
    day_ago = time.time() - 86_400
    for path in [Path(storage.table_dir(str(tmp_path), old)), *Path(storage.table_dir(str(tmp_path), old)).rglob("*")]:
        os.utime(path, (day_ago, day_ago))
    open_db(tmp_path).close()
    assert storage.list_table_dirs(str(tmp_path)) == [recent]  # the idle one went; a create may still own the other
