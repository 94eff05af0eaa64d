"""The Python client against a real local Ray and real Lance files."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest
import ray

import engine
from engine.errors import (
    ColumnNotFound,
    DuplicateKey,
    InvalidRequest,
    RowNotFound,
    SchemaMismatch,
    TableExists,
    TableNotFound,
    TooLarge,
)
from engine.logical.plan import Insert
from engine.physical import shardlog
from engine.physical.coordinator import resolve
from engine.storage import lance as storage

COLUMNS = {"id": "int", "name": "string", "score": "float"}


def people(db: engine.Database, name: str, n: int = 0, shards: int = 4) -> engine.Table:
    table = db.create_table(name, COLUMNS, primary_key="id", shards=shards)
    if n:
        table.insert([{"id": i, "name": f"p{i}", "score": float(i % 7)} for i in range(n)])
    return table


def wait_for(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class TestTables:
    def test_create_describe_list_drop(self, db: engine.Database, name: str) -> None:
        people(db, name, 10)
        info = db.table(name).info()
        assert info["name"] == name and info["row_count"] == 10 and info["shards"] == 4
        assert info["primary_key"] == ["id"] and info["column_count"] == 3 and info["version"] == 1
        assert {"name": "id", "type": "int", "nullable": False, "is_computed": False} in info["columns"]
        assert name in db.list_tables()
        db.drop_table(name)
        assert name not in db.list_tables()
        with pytest.raises(TableNotFound):
            db.table(name)

    def test_duplicate_table(self, db: engine.Database, name: str) -> None:
        people(db, name)
        with pytest.raises(TableExists):
            people(db, name)

    def test_drop_then_recreate_starts_empty(self, db: engine.Database, name: str) -> None:
        people(db, name, 5)
        db.drop_table(name)
        assert people(db, name).count() == 0

    @pytest.mark.parametrize("shards", [0, -1, 1000, "2", True])
    def test_bad_shard_count(self, db: engine.Database, name: str, shards: object) -> None:
        with pytest.raises(InvalidRequest):
            db.create_table(name, COLUMNS, shards=shards)  # type: ignore[arg-type]


class TestRows:
    def test_all_types_round_trip(self, db: engine.Database, name: str) -> None:
        cols = {
            "id": "string",
            "n": "int",
            "x": "float",
            "b": "bool",
            "j": "json",
            "at": "timestamp",
            "d": "date",
            "img": "image",
        }
        t = db.create_table(name, cols, primary_key="id", shards=2)
        row = {
            "id": "k",
            "n": -(2**63),
            "x": 0.5,
            "b": False,
            "j": {"a": [1, None, "x"]},
            "at": "2024-05-06T07:08:09.123456Z",
            "d": "2024-05-06",
            "img": "s3://b/k.png",
        }
        t.insert(row)
        got = t.get("k")
        assert got["j"] == {"a": [1, None, "x"]} and got["n"] == -(2**63) and got["b"] is False
        assert got["at"] == dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC) and got["d"] == dt.date(2024, 5, 6)

    def test_query_orders_globally_and_pages(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 200)
        page = t.query(order_by=[{"column": "score", "direction": "desc"}, "id:asc"], limit=30, offset=10)
        expected = sorted(range(200), key=lambda i: (-(i % 7), i))[10:40]
        assert page.rows["id"].to_pylist() == expected
        assert page.total_count == 200 and page.has_more and page.next_offset == 40
        last = t.query(limit=30, offset=190)
        assert last.rows["id"].to_pylist() == list(range(190, 200)) and not last.has_more and last.next_offset is None

    def test_filters_that_pin_the_key_still_apply_every_clause(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 30)
        in_list = {"column": "id", "operator": "in", "value": [3, 4, 5, 99]}
        assert sorted(t.query(where=[in_list]).rows["id"].to_pylist()) == [3, 4, 5]
        assert t.query(where=[in_list, {"column": "name", "operator": "=", "value": "p4"}]).rows["id"].to_pylist() == [
            4
        ]
        assert t.count([in_list, {"column": "score", "operator": ">", "value": 3.5}]) == 2  # ids 4 and 5
        assert t.update({"id": 6, "name": "nobody"}, {"score": 0.5}) == 0
        assert t.update({"id": 6, "name": "p6"}, {"score": 0.5}) == 1 and t.get(6)["score"] == 0.5
        assert t.delete([{"column": "id", "operator": "in", "value": []}]) == 0
        assert t.delete([in_list, {"column": "name", "operator": "!=", "value": "p3"}]) == 2
        assert t.count() == 28 and t.get(3)["name"] == "p3"

    def test_huge_offset_is_an_empty_page(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 5)
        page = t.query(offset=2**63 - 1, limit=10)
        assert page.rows.num_rows == 0 and page.total_count == 5 and not page.has_more

    def test_select_where_count(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 50)
        res = t.query(select=["name"], where=[{"column": "score", "operator": ">=", "value": 5}])
        assert res.rows.column_names == ["name"] and res.total_count == len([i for i in range(50) if i % 7 >= 5])
        assert t.count() == 50 and t.count({"score": 0.0}) == 8

    def test_update_delete_upsert(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 20)
        assert t.update([{"column": "id", "operator": "<", "value": 5}], {"name": "low", "score": None}) == 5
        assert t.query(where={"name": "low"}).total_count == 5 and t.get(0)["score"] is None
        assert t.delete([{"column": "id", "operator": ">=", "value": 15}]) == 5
        assert t.count() == 15
        t.upsert([{"id": 1, "name": "one"}, {"id": 100, "name": "hundred"}])
        assert t.get(1)["name"] == "one" and t.get(100)["name"] == "hundred" and t.count() == 16
        assert t.delete() == 16 and t.count() == 0

    def test_upsert_repeating_a_key_keeps_the_last_row(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 2)
        t.upsert([{"id": 1, "name": "first"}, {"id": 5, "name": "new"}, {"id": 1, "name": "last"}])
        assert t.get(1)["name"] == "last" and t.get(5)["name"] == "new" and t.count() == 3

    def test_row_by_id(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 3)
        assert t.update_row(2, {"id": 2, "name": "two"})["name"] == "two"
        assert t.update_row(2, {"id": 2}) == t.get(2)  # only the unchanged key: nothing to write
        t.delete_row(2)
        with pytest.raises(RowNotFound):
            t.get(2)
        with pytest.raises(RowNotFound):
            t.delete_row(2)
        with pytest.raises(RowNotFound):
            t.update_row(2, {"name": "x"})
        with pytest.raises(InvalidRequest):
            t.update_row(1, {"id": 5})  # keys are not updated in place
        assert t.key_from_text("7") == 7
        with pytest.raises(InvalidRequest):
            t.key_from_text("seven")

    def test_table_without_key_gets_row_ids(self, db: engine.Database, name: str) -> None:
        t = db.create_table(name, {"msg": "string"}, shards=3)
        for _ in range(3):
            t.insert([{"msg": f"m{i}"} for i in range(10)])
        ids = t.to_arrow()["_row_id"].to_pylist()
        assert len(ids) == len(set(ids)) == 30
        stored = t.insert({"msg": "new"}, return_rows=True).rows
        assert stored is not None
        rid = stored["_row_id"][0].as_py()
        assert t.get(rid)["msg"] == "new"
        t.delete_row(rid)
        assert t.count() == 30
        with pytest.raises(InvalidRequest):
            t.upsert({"msg": "x"})

    def test_composite_key(self, db: engine.Database, name: str) -> None:
        t = db.create_table(name, {"a": "int", "b": "string", "v": "int"}, primary_key=["a", "b"], shards=2)
        t.insert([{"a": 1, "b": "x", "v": 1}, {"a": 1, "b": "y", "v": 2}])
        with pytest.raises(DuplicateKey):
            t.insert({"a": 1, "b": "x", "v": 3})
        t.upsert({"a": 1, "b": "x", "v": 9})
        assert t.query(where={"a": 1, "b": "x"}).to_pylist()[0]["v"] == 9 and t.count() == 2
        with pytest.raises(InvalidRequest):
            t.get(1)

    def test_arrow_polars_and_ray_data(self, db: engine.Database, name: str) -> None:
        t = people(db, name)
        t.insert(pa.table({"id": np.arange(1000), "name": [f"n{i}" for i in range(1000)], "score": np.ones(1000)}))
        assert t.to_arrow().num_rows == 1000
        assert t.to_polars()["score"].sum() == 1000
        ds = t.to_ray_dataset()
        assert ds.count() == 1000 and sorted(r["id"] for r in ds.take_all()) == list(range(1000))

    def test_row_limit_per_request(self, db: engine.Database, name: str) -> None:
        t = people(db, name)
        limited = engine.Table(engine.Database.__new__(engine.Database), name)
        limited.db.__dict__.update(db.__dict__)
        limited.db.settings = db.settings.with_(max_rows_per_request=5)
        with pytest.raises(TooLarge):
            limited.insert([{"id": i} for i in range(6)])
        assert t.count() == 0


class TestAtomicity:
    def test_failed_multi_shard_insert_leaves_nothing(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 10)
        before = t.info()["version"]
        with pytest.raises(DuplicateKey):
            t.insert([{"id": i} for i in range(5, 500)])  # 5..9 exist, on some shards only
        assert t.count() == 10 and t.to_arrow().num_rows == 10 and t.info()["version"] == before
        t.insert([{"id": i} for i in range(10, 500)])
        assert t.count() == 500

    @pytest.mark.parametrize(
        "bad",
        [
            [{"id": 1, "name": 5}],
            [{"id": 1, "nope": 1}],
            [{"id": None}],
            [{"id": 2**64}],
            [{"id": 1, "score": float("inf")}],
        ],
    )
    def test_bad_rows_change_nothing(self, db: engine.Database, name: str, bad: list) -> None:
        t = people(db, name, 3)
        with pytest.raises((SchemaMismatch, ColumnNotFound)):
            t.insert([*({"id": 100 + i} for i in range(20)), *bad])
        assert t.count() == 3

    def test_reader_never_sees_a_partial_write(self, db: engine.Database, name: str) -> None:
        t = people(db, name, shards=4)
        seen: list[int] = []
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                seen.append(t.query(select=["id"]).rows.num_rows)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for b in range(25):
                t.insert([{"id": b * 100 + i} for i in range(100)])  # each batch spans all 4 shards
                t.update([{"column": "id", "operator": ">=", "value": b * 100}], {"score": float(b)})
        finally:
            done.set()
            reader.join()
        assert seen and all(n % 100 == 0 for n in seen), sorted(set(seen))
        assert t.count() == 2500


class TestConcurrency:
    def test_concurrent_multi_shard_writers_do_not_deadlock(self, tmp_path: Path) -> None:
        """Writers that each need every shard would wait for each other in a cycle without ordered slots.

        The lease is far longer than the test's timeout, so only deadlock avoidance can make this pass.
        """
        other = engine.connect(data_dir=str(tmp_path), lease_seconds=3600, maintenance_seconds=0)
        try:
            t = other.create_table("t", COLUMNS, primary_key="id", shards=4)
            errors: list[BaseException] = []

            def write(k: int) -> None:
                try:
                    for j in range(8):
                        t.insert([{"id": k * 10_000 + j * 100 + i} for i in range(100)])
                        t.update([{"column": "id", "operator": ">=", "value": k * 10_000}], {"score": float(j)})
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=write, args=(k,)) for k in range(6)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=240)
            assert not any(th.is_alive() for th in threads), "writers deadlocked"
            assert not errors, errors
            assert t.count() == 6 * 8 * 100
            assert t.count({"score": 7.0}) == 6 * 8 * 100
        finally:
            other.close()


class TestFaults:
    def test_killed_host_is_recreated_from_storage(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 100)
        for host in db.coordinator.hosts:
            ray.kill(host, no_restart=False)
        # The next request succeeds (Ray restarts the hosts; they reload shards from Lance) and sees everything.
        assert t.count(where={"name": "p5"}) == 1
        assert t.to_arrow().num_rows == 100
        t.insert({"id": 1000})
        assert t.count() == 101

    def test_killed_host_replays_its_logged_small_writes(self, db: engine.Database, name: str) -> None:
        """Small writes live in the catalog's shard log until folded: a restarted host rebuilds them exactly."""
        t = people(db, name, 40, shards=2)
        for i in range(0, 40, 3):
            t.update_row(i, {"score": 100.0 + i})
        t.delete({"id": 5})
        t.upsert([{"id": 7, "name": "seven", "score": 7.5}, {"id": 99, "name": "new", "score": 9.0}])
        before = t.query(order_by=[("id", "ascending")]).to_pylist()
        _, states, specs = db._resolve(name)
        assert any(db.catalog.history(s.table_id, s.shard, st.version)[1] for s, st in zip(specs, states, strict=True))
        for host in db.coordinator.hosts:
            ray.kill(host, no_restart=False)
        assert t.query(order_by=[("id", "ascending")]).to_pylist() == before
        t.update_row(99, {"score": 1.0})  # and writes go on from the replayed state
        assert t.get(99)["score"] == 1.0 and t.count() == len(before)

    def test_sigkilled_host_process(self, db: engine.Database, name: str) -> None:
        t = people(db, name, 40)
        pids = {resolve(h.pid.remote()) for h in db.coordinator.hosts}
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: [resolve(h.ping.remote()) for h in db.coordinator.hosts])
        t.insert({"id": 41})
        assert sorted(t.to_arrow()["id"].to_pylist()) == [*range(40), 41]

    def test_abandoned_transaction_is_aborted_after_its_lease(self, tmp_path: Path) -> None:
        other = engine.connect(data_dir=str(tmp_path), lease_seconds=1.0, maintenance_seconds=0)
        try:
            t = other.create_table("t", COLUMNS, primary_key="id", shards=1)
            t.insert({"id": 1})
            record, states, specs = other._resolve("t")
            from engine.model.coerce import rows_to_table

            orphan = rows_to_table([{"id": 2}], record.schema)
            host = other.coordinator.host(specs[0].table_id, 0)
            resolve(host.stage.remote(specs[0], uuid.uuid4().hex, states[0].version, (Insert(orphan),)))
            # ...and its coordinator never finishes. The next writer waits out the lease, then goes ahead.
            t.insert({"id": 3})
            assert sorted(t.to_arrow()["id"].to_pylist()) == [1, 3]
        finally:
            other.close()


def lance_fragments(db: engine.Database, name: str) -> list[int]:
    """Fragments of each shard's Lance base (the Lance version its committed version is built on)."""
    _, states, specs = db._resolve(name)
    bases = [db.catalog.history(s.table_id, s.shard, st.version)[0] for s, st in zip(specs, states, strict=True)]
    return [storage.fragment_count(s.uri, base) for s, base in zip(specs, bases, strict=True)]


class TestMaintenance:
    def test_compaction_and_cleanup_keep_data(self, tmp_path: Path) -> None:
        other = engine.connect(
            data_dir=str(tmp_path), maintenance_seconds=0, compact_min_fragments=4, version_retention_seconds=0
        )
        try:
            t = other.create_table("t", COLUMNS, primary_key="id", shards=2)
            for i in range(12):  # each write larger than a delta: a Lance fragment per shard
                t.insert([{"id": i * 1000 + j} for j in range(2 * shardlog.DELTA_ROWS + 100)])
            t.insert({"id": -1})  # and one small write, logged in the catalog
            before = lance_fragments(other, "t")
            assert other.maintain() == 2
            after = lance_fragments(other, "t")
            assert max(after) == 1 < min(before)
            other.maintain()  # cleans up the versions the catalog no longer names
            _, states, specs = other._resolve("t")
            for spec, st in zip(specs, states, strict=True):
                base, deltas = other.catalog.history(spec.table_id, spec.shard, st.version)
                assert deltas == []
                assert [v["version"] for v in lance.dataset(spec.uri).versions()] == [base]
            assert sorted(t.to_arrow()["id"].to_pylist()) == [
                -1,
                *sorted(i * 1000 + j for i in range(12) for j in range(2 * shardlog.DELTA_ROWS + 100)),
            ]
        finally:
            other.close()

    def test_background_thread_folds_small_writes_into_lance(self, tmp_path: Path) -> None:
        other = engine.connect(data_dir=str(tmp_path), maintenance_seconds=0.2, compact_min_fragments=4)
        try:
            t = other.create_table("t", COLUMNS, primary_key="id", shards=1)
            for i in range(8):
                t.insert({"id": i})

            def folded() -> None:
                assert lance_fragments(other, "t") == [1]
                _, states, specs = other._resolve("t")
                assert other.catalog.history(specs[0].table_id, 0, states[0].version)[1] == []

            wait_for(folded)
            assert sorted(t.to_arrow()["id"].to_pylist()) == list(range(8))
        finally:
            other.close()

    def test_reconcile_removes_orphan_table_dirs(self, tmp_path: Path) -> None:
        first = engine.connect(data_dir=str(tmp_path), maintenance_seconds=0)
        first.create_table("keep", COLUMNS, primary_key="id")
        first.close()
        orphan = tmp_path / "tables" / "deadbeef"
        orphan.mkdir(parents=True)
        day_ago = time.time() - 86_400  # an idle leftover: a fresh one may be a create still under way
        os.utime(orphan, (day_ago, day_ago))
        again = engine.connect(data_dir=str(tmp_path), maintenance_seconds=0)
        assert not orphan.exists() and again.list_tables() == ["keep"]
        again.close()
