"""Imports, exports and streams through the Python client, on real files, real Ray and real Lance."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from engine import Database
from engine.errors import ExportExpired, ImportRejected, InvalidRequest

COLUMNS = {
    "id": {"type": "int", "nullable": False},
    "name": "string",
    "score": "float",
    "active": "bool",
    "born": "date",
    "seen": "timestamp",
    "meta": "json",
}
FORMATS = ["csv", "json", "jsonl", "parquet", "excel", "lance"]


def _rows(n: int) -> list[dict]:
    return [
        {
            "id": i,
            "name": f"name {i}" if i % 5 else None,
            "score": i * 0.5,
            "active": i % 2 == 0,
            "born": dt.date(2000, 1, 1) + dt.timedelta(days=i),
            "seen": dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
            "meta": {"i": i, "tags": ["a", "b"]} if i % 3 else None,
        }
        for i in range(n)
    ]


@pytest.fixture
def table(db: Database, name: str):
    t = db.create_table(name, COLUMNS, primary_key="id", shards=2)
    t.insert(_rows(50))
    return t


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(db: Database, table, fmt: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"out.{fmt}"
    done = table.export(path, fmt, order_by=["id"])
    assert done["rows_exported"] == 50 and path.stat().st_size == done["file_size_bytes"]
    copy = db.create_table(f"{name}_copy", COLUMNS, primary_key="id", shards=3)
    result = copy.import_file(path, fmt, on_error="fail")
    assert result["rows_imported"] == 50 and result["errors"] == []
    assert copy.query(order_by=["id"]).rows.to_pylist() == table.query(order_by=["id"]).rows.to_pylist()


def test_gzip_export_and_import(db: Database, table, tmp_path: Path, name: str) -> None:
    path = tmp_path / "out.csv.gz"
    table.export(
        path, "csv", compress=True, columns=["id", "name"], where=[{"column": "id", "operator": "<", "value": 10}]
    )
    assert gzip.decompress(path.read_bytes()).startswith(b'"id","name"')
    copy = db.create_table(f"{name}_gz", {"id": "int", "name": "string"}, primary_key="id")
    assert copy.import_file(path)["rows_imported"] == 10


def test_stream_merges_shards_in_order(table) -> None:
    batches = list(table.stream(order_by=[{"column": "score", "direction": "desc"}], chunk_size=7))
    assert all(b.num_rows <= 7 for b in batches)
    ids = [r["id"] for b in batches for r in b.to_pylist()]
    assert ids == list(range(49, -1, -1))


def test_pandas_and_polars(db: Database, name: str) -> None:
    t = db.create_table(name, {"id": "int", "name": "string", "x": "float"}, primary_key="id")
    t.insert(pd.DataFrame({"id": [1, 2], "name": ["a", None], "x": [0.5, 1.5]}))
    t.upsert(pl.DataFrame({"id": [2, 3], "name": ["b", "c"], "x": [2.5, 3.5]}))
    frame = t.to_pandas().sort_values("id")
    assert isinstance(frame["x"].dtype, pd.ArrowDtype)
    assert frame["name"].tolist() == ["a", "b", "c"]


def test_csv_with_rules_and_modes(db: Database, name: str, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,full name,age,email\n1,Ada,36,ada@x.org\n2,Bob,-3,bob@x.org\n3,Cy,40,nope\nx,Di,20,di@x.org\n")
    t = db.create_table(
        name,
        {"id": "int", "name": "string", "age": {"type": "int", "nullable": False}, "email": "string"},
        primary_key="id",
    )
    rules = {"age": {"min": 0}, "email": {"pattern": "^[^@]+@[^@]+$"}}
    mapping = {"full name": "name"}
    with pytest.raises(ImportRejected) as failed:
        t.import_file(path, mapping=mapping, validation_rules=rules, on_error="fail")
    assert [e["row"] for e in failed.value.result["errors"]] == [3, 4, 5]
    assert t.count() == 0
    skipped = t.import_file(path, mapping=mapping, validation_rules=rules, on_error="skip")
    assert (skipped["rows_imported"], skipped["rows_skipped"]) == (1, 3)
    t.delete()
    kept = t.import_file(path, mapping=mapping, validation_rules=rules, on_error="default")
    # age may not be null (row 2 dropped), the email becomes null, the bad key drops row 4
    assert (kept["rows_imported"], kept["rows_skipped"]) == (2, 2)
    assert t.get(3)["email"] is None


def test_bad_inputs(db: Database, table, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        table.import_file(tmp_path / "missing.csv")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,name\n1,a\n2,b,c\n")
    with pytest.raises(InvalidRequest):
        table.import_file(ragged)
    with pytest.raises(InvalidRequest):
        table.import_file(ragged, mapping={"name": "nope"})
    with pytest.raises(InvalidRequest):
        table.import_file(ragged, validation_rules={"name": {"pattern": "(a)\\1"}})
    assert table.count() == 50


def test_maintenance_sweeps_expired_exports(db: Database, tmp_path: Path) -> None:
    import os
    import time

    from engine.transfer import exporter

    folder = exporter.export_dir(db.root, "expired-job")
    os.makedirs(folder)
    Path(folder, "t.csv").write_text("id\n1\n")
    Path(folder, exporter.MANIFEST).write_text(
        '{"file": "t.csv", "expires_at": "2026-01-01T00:00:00Z", "expires": %f, "format": "csv"}' % (time.time() - 1)
    )
    db.maintain()
    assert not Path(folder, "t.csv").exists()
    with pytest.raises(ExportExpired):
        exporter.download(db.root, "expired-job")
