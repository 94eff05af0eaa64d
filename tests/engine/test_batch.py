"""Batch operations on real Ray and Lance: order, atomicity across tables, expectations, error reporting."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import broken_storage, broken_table, reserved, shards_held, wait_for

import engine
from engine.client import batch as batch_module
from engine.client.batch import BatchContext, _request_hash, run_batch
from engine.errors import InvalidRequest, RequestInProgress, StorageError, TooLarge
from engine.logical import batch_plan
from engine.storage.idempotency import IdempotencyRecord, Reservation


@pytest.fixture
def two(db: engine.Database, name: str) -> tuple[str, str]:
    db.create_table(f"{name}_a", {"id": "int", "v": "int", "version": "int"}, primary_key="id", shards=4)
    db.create_table(f"{name}_b", {"msg": "string"}, shards=2)
    return f"{name}_a", f"{name}_b"


def values(db: engine.Database, table: str) -> dict[int, int]:
    rows = db.table(table).to_pylist()
    return {r["id"]: r["v"] for r in rows}


def test_later_operations_see_earlier_ones(db: engine.Database, two: tuple[str, str]) -> None:
    a, b = two
    result = db.batch(
        [
            {"operation": "insert", "table": a, "data": [{"id": i, "v": i, "version": 0} for i in range(10)]},
            {"operation": "update", "table": a, "where": {"id": 1}, "set": {"v": 100}},
            {"operation": "delete", "table": a, "where": [{"column": "id", "operator": ">=", "value": 8}]},
            {"operation": "insert", "table": a, "data": {"id": 9, "v": 99, "version": 0}},
            {"operation": "upsert", "table": a, "data": [{"id": 2, "v": 22, "version": 1}]},
            {"operation": "insert", "table": b, "data": [{"msg": "x"}, {"msg": "y"}]},
        ]
    )
    assert result.committed and result.successful == 6 and result.failed == 0 and not result.errors
    assert [r.rows_affected for r in result.results] == [10, 1, 2, 1, 1, 2]
    assert values(db, a) == {0: 0, 1: 100, 2: 22, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 9: 99}
    assert db.table(b).count() == 2


def test_a_failure_anywhere_rolls_back_every_table(db: engine.Database, two: tuple[str, str]) -> None:
    a, b = two
    db.table(a).insert([{"id": i, "v": i, "version": 0} for i in range(5)])
    version = db.table(a).info()["version"]
    result = db.batch(
        [
            {"operation": "insert", "table": b, "data": {"msg": "should vanish"}},
            {"operation": "update", "table": a, "where": {}, "set": {"v": -1}},
            {
                "operation": "insert",
                "table": a,
                "data": [{"id": 100, "v": 0, "version": 0}, {"id": 3, "v": 0, "version": 0}],
            },
            {"operation": "delete", "table": a, "where": {}},
        ]
    )
    assert not result.committed and result.failed == 1 and result.successful == 0
    assert [r.status for r in result.results] == ["rolled_back", "rolled_back", "failed", "rolled_back"]
    assert result.errors[0].operation == 2 and result.errors[0].code == "duplicate_key" and result.errors[0].table == a
    assert values(db, a) == {i: i for i in range(5)} and db.table(b).count() == 0
    assert db.table(a).info()["version"] == version


def test_expect_rows_is_compare_and_set(db: engine.Database, two: tuple[str, str]) -> None:
    a, _ = two
    db.table(a).insert({"id": 7, "v": 0, "version": 3})
    cas = {
        "operation": "update",
        "table": a,
        "where": {"id": 7, "version": 3},
        "set": {"v": 1, "version": 4},
        "expect_rows": 1,
    }
    assert db.batch([cas]).committed
    again = db.batch([cas, {"operation": "insert", "table": a, "data": {"id": 8, "v": 0, "version": 0}}])
    assert not again.committed and again.errors[0].operation == 0 and again.errors[0].code == "expectation_failed"
    assert values(db, a) == {7: 1}
    ranged = {"operation": "delete", "table": a, "where": {}, "expect_rows": {"min": 2, "max": 5}}
    assert not db.batch([ranged]).committed and values(db, a) == {7: 1}


def test_continue_on_error_reports_every_invalid_operation(db: engine.Database, two: tuple[str, str]) -> None:
    a, b = two
    result = db.batch(
        [
            {"operation": "insert", "table": "no_such_table", "data": {"x": 1}},
            {"operation": "insert", "table": b, "data": {"msg": "fine"}},
            {"operation": "update", "table": a, "where": {"nope": 1}, "set": {"v": 1}},
            {"operation": "upsert", "table": b, "data": {"msg": "no key"}},
        ],
        continue_on_error=True,
    )
    assert not result.committed
    assert [e.operation for e in result.errors] == [0, 2, 3]
    assert [e.code for e in result.errors] == ["table_not_found", "column_not_found", "invalid_request"]
    assert [r.status for r in result.results] == ["failed", "rolled_back", "failed", "failed"]
    assert db.table(b).count() == 0


def test_first_invalid_operation_stops_the_transaction(db: engine.Database, two: tuple[str, str]) -> None:
    a, _ = two
    result = db.batch(
        [
            {"operation": "insert", "table": a, "data": {"id": 1, "v": 1, "version": 0}},
            {"operation": "update", "table": a, "set": {"v": 2}},
            {"operation": "delete", "table": a, "where": {}},
        ]
    )
    assert [r.status for r in result.results] == ["rolled_back", "failed", "skipped"]
    assert result.errors[0].code == "invalid_request" and "where" in result.errors[0].error
    assert db.table(a).count() == 0


def test_without_a_transaction_each_operation_commits_on_its_own(db: engine.Database, two: tuple[str, str]) -> None:
    a, _ = two
    ops = [
        {"operation": "insert", "table": a, "data": {"id": 1, "v": 1, "version": 0}},
        {"operation": "insert", "table": a, "data": {"id": 1, "v": 2, "version": 0}},
        {"operation": "insert", "table": a, "data": {"id": 2, "v": 2, "version": 0}},
    ]
    stopped = db.batch(ops, transaction=False)
    assert stopped.committed and [r.status for r in stopped.results] == ["success", "failed", "skipped"]
    assert values(db, a) == {1: 1}
    db.table(a).delete()
    going = db.batch(ops, transaction=False, continue_on_error=True)
    assert [r.status for r in going.results] == ["success", "failed", "success"] and going.errors[0].operation == 1
    assert values(db, a) == {1: 1, 2: 2}


@pytest.mark.parametrize(
    ("operations", "error"),
    [
        ([], InvalidRequest),
        ("not a list", InvalidRequest),
        ([{"operation": "insert", "table": "t", "data": {}}] * 1001, TooLarge),
    ],
)
def test_requests_that_cannot_run_at_all(db: engine.Database, operations: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        db.batch(operations)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("op", "code"),
    [
        ({"operation": "merge", "table": "{a}", "data": {}}, "invalid_request"),
        ({"operation": "insert", "table": "{a}"}, "invalid_request"),
        ({"operation": "insert", "table": "{a}", "data": {"id": "x"}}, "schema_mismatch"),
        ({"operation": "update", "table": "{a}", "where": {"id": 1}, "set": {}}, "invalid_request"),
        (
            {"operation": "update", "table": "{a}", "where": {"id": 1}, "set": {"v": 1}, "expect_rows": -1},
            "invalid_request",
        ),
        (
            {"operation": "delete", "table": "{a}", "where": [{"column": "v", "operator": "~", "value": 1}]},
            "invalid_operator",
        ),
        ({"operation": "upsert", "table": "{b}", "data": {"msg": "x"}}, "invalid_request"),
    ],
)
def test_validation_failures_change_nothing(db: engine.Database, two: tuple[str, str], op: dict, code: str) -> None:
    a, b = two
    db.table(a).insert({"id": 1, "v": 1, "version": 0})
    op = {k: (v.format(a=a, b=b) if isinstance(v, str) else v) for k, v in op.items()}
    result = db.batch([{"operation": "insert", "table": a, "data": {"id": 2, "v": 2, "version": 0}}, op])
    assert not result.committed and result.errors[0].operation == 1 and result.errors[0].code == code
    assert values(db, a) == {1: 1}


class TestIdempotency:
    def test_a_retry_returns_the_first_result_and_applies_nothing(
        self, db: engine.Database, two: tuple[str, str]
    ) -> None:
        a, _ = two
        db.table(a).insert({"id": 1, "v": 0, "version": 0})
        ops = [
            {"operation": "update", "table": a, "where": {"id": 1}, "set": {"v": 5}},
            {"operation": "insert", "table": a, "data": {"id": 2, "v": 0, "version": 0}},
        ]
        first = db.batch(ops, idempotency_key=f"k-{a}")
        again = db.batch(ops, idempotency_key=f"k-{a}")
        assert first.committed and again.to_dict() == first.to_dict()
        assert db.table(a).count() == 2  # the insert would have been a duplicate key had it run twice

    def test_same_key_with_another_body_is_refused(self, db: engine.Database, two: tuple[str, str]) -> None:
        from engine.errors import IdempotencyKeyReused

        a, _ = two
        db.batch(
            [{"operation": "insert", "table": a, "data": {"id": 1, "v": 0, "version": 0}}], idempotency_key=f"r-{a}"
        )
        with pytest.raises(IdempotencyKeyReused):
            db.batch(
                [{"operation": "insert", "table": a, "data": {"id": 2, "v": 0, "version": 0}}], idempotency_key=f"r-{a}"
            )
        assert db.table(a).count() == 1

    def test_a_failed_batch_is_replayed_too(self, db: engine.Database, two: tuple[str, str]) -> None:
        a, _ = two
        ops = [{"operation": "update", "table": a, "where": {"id": 1}, "set": {"v": 1}, "expect_rows": 1}]
        first = db.batch(ops, idempotency_key=f"f-{a}")
        db.table(a).insert({"id": 1, "v": 0, "version": 0})
        assert not first.committed and db.batch(ops, idempotency_key=f"f-{a}").to_dict() == first.to_dict()
        assert values(db, a) == {1: 0}

    def test_concurrent_requests_with_one_key_apply_once(self, db: engine.Database, two: tuple[str, str]) -> None:
        a, _ = two
        db.table(a).insert({"id": 1, "v": 0, "version": 0})
        ops = [{"operation": "update", "table": a, "where": {"id": 1}, "set": {"v": {"expr": "v + 1"}}}]
        results: list[engine.BatchResult] = []
        refused: list[RequestInProgress] = []

        def send() -> None:
            try:
                results.append(db.batch(ops, transaction=False, idempotency_key=f"c-{a}"))
            except RequestInProgress as exc:
                refused.append(exc)

        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) + len(refused) == 6 and results  # each one answered, or refused while another ran
        assert all(r.to_dict() == results[0].to_dict() for r in results)
        assert values(db, a) == {1: 1}
        assert db.batch(ops, transaction=False, idempotency_key=f"c-{a}").to_dict() == results[0].to_dict()

    @pytest.mark.parametrize("transaction", [False, True])
    def test_a_duplicate_while_the_first_runs_is_refused_then_gets_its_answer(
        self, db: engine.Database, two: tuple[str, str], transaction: bool
    ) -> None:
        a, _ = two
        db.table(a).insert({"id": 1, "v": 0, "version": 0})
        ops = [{"operation": "update", "table": a, "where": {"id": 1}, "set": {"v": {"expr": "v + 1"}}}]
        key = f"d-{a}-{transaction}"
        first: list[engine.BatchResult] = []
        with shards_held(db, a):  # the first request reserves its key, then waits for a shard
            thread = threading.Thread(
                target=lambda: first.append(db.batch(ops, transaction=transaction, idempotency_key=key))
            )
            thread.start()
            wait_for(lambda: reserved(db, key))
            with pytest.raises(RequestInProgress) as refused:
                db.batch(ops, transaction=transaction, idempotency_key=key)
            assert refused.value.code == "request_in_progress" and refused.value.fields["retry_after"] >= 1
        thread.join(timeout=120)
        assert first and first[0].committed
        assert db.batch(ops, transaction=transaction, idempotency_key=key).to_dict() == first[0].to_dict()
        assert values(db, a) == {1: 1}  # applied once, by the first request only

    def test_a_reservation_left_by_a_crashed_process_is_taken_over(
        self, db: engine.Database, two: tuple[str, str]
    ) -> None:
        a, _ = two
        ops = [{"operation": "insert", "table": a, "data": {"id": 1, "v": 1, "version": 0}}]
        key = f"x-{a}"
        crashed = (
            "import os, sys\n"
            "from engine.storage.catalog import SqliteCatalog\n"
            "SqliteCatalog(sys.argv[1]).reserve_key(sys.argv[2], sys.argv[3], ttl_seconds=3600, stale_seconds=3600)\n"
            "os._exit(9)  # dies holding the reservation\n"
        )
        args = [db.catalog.path, key, _request_hash(ops, False, False)]
        subprocess.run([sys.executable, "-c", crashed, *args], check=False, timeout=120)
        assert reserved(db, key)
        result = db.batch(ops, transaction=False, idempotency_key=key)  # not refused: its holder is gone
        assert result.committed and values(db, a) == {1: 1}

    def test_a_failure_on_our_side_is_not_the_answer_and_shows_no_cause(self, db: engine.Database, name: str) -> None:
        table = broken_table(db, name)
        ops = [{"operation": "insert", "table": table, "data": [{"id": i, "v": i} for i in range(300)]}]
        with broken_storage(db, table):
            failed = db.batch(ops, idempotency_key=f"s-{table}")
        assert not failed.committed and [e.code for e in failed.errors] == ["storage_error"]
        shown = repr(failed.to_dict())
        assert db.root not in shown and "Lance" not in shown and "Error" not in shown and "os error" not in shown
        assert isinstance(failed.errors[0].cause, StorageError) and db.root in failed.errors[0].cause.message
        retried = db.batch(ops, idempotency_key=f"s-{table}")  # runs again: the failure was not stored
        assert retried.committed and db.table(table).count() == 301

    def test_without_a_transaction_a_retry_resumes_after_what_committed(self, db: engine.Database, name: str) -> None:
        table = broken_table(db, name)
        ops = [
            {"operation": "update", "table": table, "where": {"id": -1}, "set": {"v": {"expr": "v + 1"}}},
            {"operation": "insert", "table": table, "data": [{"id": i, "v": i} for i in range(300)]},
            {"operation": "insert", "table": table, "data": {"id": 1000, "v": 0}},
        ]
        key = f"r-{table}"
        with broken_storage(db, table):  # the small update is logged in the catalog; the large insert hits Lance
            first = db.batch(ops, transaction=False, continue_on_error=True, idempotency_key=key)
        # a failure on our side stops the batch (continue_on_error is for the request's own errors)
        assert [r.status for r in first.results] == ["success", "failed", "skipped"] and first.committed
        again = db.batch(ops, transaction=False, continue_on_error=True, idempotency_key=key)
        assert [r.status for r in again.results] == ["success", "success", "success"] and not again.errors
        assert again.results[0] == first.results[0]  # taken from what the first attempt committed
        assert db.table(table).count() == 302
        assert db.table(table).query(where={"id": -1}).to_pylist()[0]["v"] == 1  # the update ran once

    @pytest.mark.parametrize("key", ["", "k" * 256])
    def test_a_key_of_bad_length_is_refused(self, db: engine.Database, two: tuple[str, str], key: str) -> None:
        a, _ = two
        ops = [{"operation": "insert", "table": a, "data": {"id": 1, "v": 1, "version": 0}}]
        with pytest.raises(InvalidRequest) as exc:
            db.batch(ops, idempotency_key=key)
        assert exc.value.fields["field"] == "Idempotency-Key" and "255" in exc.value.message
        assert db.table(a).count() == 0
        assert db.batch(ops, idempotency_key=f"{a}-".ljust(255, "k")).committed  # 255 is allowed


class TestSetExpressions:
    def test_values_computed_from_the_row(self, db: engine.Database, two: tuple[str, str]) -> None:
        a, _ = two
        t = db.table(a)
        t.insert([{"id": i, "v": i, "version": 0} for i in range(6)])
        assert (
            t.update(
                [{"column": "id", "operator": "<", "value": 3}],
                {"v": {"expr": "v * 10 + id"}, "version": {"expr": "version + 1"}},
            )
            == 3
        )
        assert t.update({}, {"v": {"expr": "v if v % 2 == 0 else -v"}}) == 6
        assert values(db, a) == {0: 0, 1: -11, 2: 22, 3: -3, 4: 4, 5: -5}

    def test_a_result_of_the_wrong_type_is_refused(self, db: engine.Database, two: tuple[str, str]) -> None:
        a, _ = two
        with pytest.raises(InvalidRequest) as exc:
            db.table(a).update({}, {"v": {"expr": "v / 2"}})
        assert "gives float" in exc.value.message

    def test_a_failing_computation_changes_nothing(self, db: engine.Database, two: tuple[str, str]) -> None:
        a, _ = two
        t = db.table(a)
        t.insert([{"id": i, "v": i, "version": 0} for i in range(4)])
        with pytest.raises(InvalidRequest) as exc:
            t.update({}, {"v": {"expr": "10 // (v - 2)"}})  # v == 2 divides by zero
        assert exc.value.code == "invalid_value"
        assert values(db, a) == {i: i for i in range(4)}


class TestMergedWrites:
    def test_many_single_row_upserts_keep_their_meaning(self, db: engine.Database, two: tuple[str, str]) -> None:
        a, _ = two
        ops = [{"operation": "upsert", "table": a, "data": {"id": i % 10, "v": i, "version": 0}} for i in range(40)]
        ops.insert(20, {"operation": "update", "table": a, "where": {}, "set": {"v": {"expr": "v * 100"}}})
        result = db.batch(ops)
        assert result.committed and [r.rows_affected for r in result.results] == [1] * 20 + [10] + [1] * 20
        assert values(db, a) == {i: 30 + i for i in range(10)}  # the last upsert of each key wins

    def test_colliding_inserts_fail_together(self, db: engine.Database, two: tuple[str, str]) -> None:
        a, _ = two
        ops = [{"operation": "insert", "table": a, "data": {"id": i, "v": i, "version": 0}} for i in range(20)]
        ops.append({"operation": "insert", "table": a, "data": {"id": 3, "v": 0, "version": 0}})
        result = db.batch(ops)
        assert not result.committed and result.errors[0].code == "duplicate_key"
        assert db.table(a).count() == 0


class TestCollaborators:
    """A batch runs on the catalog, the coordinator, the data root and a few settings it is given: no Database."""

    def test_the_batch_modules_import_no_database_or_table(self) -> None:
        for module in (batch_module, batch_plan):
            tree = ast.parse(Path(str(module.__file__)).read_text())
            imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            assert not imported & {"engine.client.database", "engine.client.table"}, module.__name__

    def test_a_batch_reads_each_table_once_and_keys_go_to_the_catalog_it_is_given(
        self, db: engine.Database, two: tuple[str, str]
    ) -> None:
        a, b = two
        catalog = CountingCatalog(db.catalog)
        ctx = BatchContext(catalog, db.coordinator, db.root, 10, 3600.0, 60.0)
        ops = [
            {"operation": "insert", "table": a, "data": [{"id": i, "v": i, "version": 0} for i in range(3)]},
            {"operation": "update", "table": a, "where": {"id": 1}, "set": {"v": 10}},
            {"operation": "insert", "table": b, "data": {"msg": "x"}},
        ]
        result = run_batch(ctx, ops, idempotency_key=f"ctx-{a}")
        assert result.committed and [r.rows_affected for r in result.results] == [3, 1, 1]
        assert catalog.calls == ["reserve_key", "read_table", "read_table"]  # the answer is stored in the commit
        assert values(db, a) == {0: 0, 1: 10, 2: 2} and db.table(b).count() == 1
        assert run_batch(ctx, ops, idempotency_key=f"ctx-{a}").to_dict() == result.to_dict()
        assert catalog.calls[3:] == ["reserve_key"]  # replayed: nothing read, nothing run

    def test_the_row_limit_is_the_contexts(self, db: engine.Database, two: tuple[str, str]) -> None:
        a, _ = two
        ctx = BatchContext(db.catalog, db.coordinator, db.root, 2, 3600.0, 60.0)
        with pytest.raises(TooLarge):
            run_batch(
                ctx, [{"operation": "insert", "table": a, "data": [{"id": i, "v": 0, "version": 0} for i in range(3)]}]
            )
        assert db.table(a).count() == 0


class CountingCatalog:
    """The session's catalog, with the names of the calls a batch makes on it."""

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog
        self.calls: list[str] = []

    def read_table(self, name: str) -> Any:
        self.calls.append("read_table")
        return self.catalog.read_table(name)

    def reserve_key(self, key: str, request_hash: str, *, ttl_seconds: float, stale_seconds: float) -> Reservation:
        self.calls.append("reserve_key")
        return self.catalog.reserve_key(key, request_hash, ttl_seconds=ttl_seconds, stale_seconds=stale_seconds)

    def put_record(self, record: IdempotencyRecord) -> None:
        self.calls.append("put_record")
        self.catalog.put_record(record)

    def release_key(self, key: str, attempt: str) -> None:
        self.calls.append("release_key")
        self.catalog.release_key(key, attempt)
