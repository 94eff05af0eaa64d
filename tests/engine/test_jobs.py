"""Background jobs end to end: the Python client, the scheduler, real Ray worker actors and the catalog's queue.

Most tests share the session database (two workers, a 5 s cancel grace); the few that need their own settings (a
short grace, a per-type limit, a tiny retention, a second process's scheduler) open a database of their own, which
starts two worker actors more. Waits poll with deadlines: nothing here asserts how long something took.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

import engine
from engine.errors import InvalidRequest, JobNotFound
from engine.jobs.scheduler import Scheduler
from engine.jobs.types import JOB_TYPES
from engine.storage.jobs import JobStore, OutboxEvent

DEADLINE = 60.0  # generous: the first job of a database waits for its worker actors to start


# -- helpers ----------------------------------------------------------------------------------------------------
def wait_for(condition: Callable[[], bool], what: str, seconds: float = DEADLINE) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after {seconds} s"
        time.sleep(0.01)


def sleep_job(db: engine.Database, seconds: float = 0, **options: Any) -> engine.Job:
    ignore = options.pop("ignore_cancel", None)
    parameters: dict[str, Any] = {"type": "sleep", "seconds": seconds}
    if ignore is not None:
        parameters["ignore_cancel"] = ignore
    return db.jobs.submit("custom", parameters, **options)


def running(job: engine.Job) -> engine.Job:
    wait_for(lambda: job.refresh().status == "running", f"job {job.id} to run")
    return job


def sleeping(job: engine.Job) -> engine.Job:
    """Running on a worker that has started sleeping (progress moved), not only claimed."""
    wait_for(lambda: job.refresh().status == "running" and job.record.progress > 0, f"job {job.id} to sleep")
    return job


def occupy(db: engine.Database, seconds: float) -> list[engine.Job]:
    """Both workers busy sleeping, so what is queued next stays pending until they finish."""
    drain(db)
    jobs = [sleep_job(db, seconds, priority=10) for _ in range(db.settings.job_workers)]
    for job in jobs:
        running(job)
    return jobs


def drain(db: engine.Database) -> None:
    """No job of an earlier test still queued or running."""
    wait_for(lambda: not db.jobs.list(status="pending") and not db.jobs.list(status="running"), "an idle queue")


def scheduler(db: engine.Database) -> Scheduler:
    found = db.jobs._scheduler
    assert found is not None, "the database runs no scheduler"
    return found


def actor_id(worker: Any) -> str:
    return str(worker._actor_id.hex())


def pool(db: engine.Database) -> list[Any]:
    """The scheduler's worker actors, idle or running a job."""
    s = scheduler(db)
    return [*list(s.idle), *[run.worker for run in list(s.runs.values())]]


def worker_of(db: engine.Database, job: engine.Job) -> Any:
    wait_for(lambda: job.id in scheduler(db).runs, f"the run of job {job.id}")
    return scheduler(db).runs[job.id].worker


def is_dead(worker: Any) -> bool:
    try:
        ray.get(worker.ready.remote(), timeout=DEADLINE)
    except ray.exceptions.RayActorError:
        return True
    return False


def events_of(store: JobStore, job_id: str) -> list[OutboxEvent]:
    found, after = [], 0
    while batch := store.outbox_since(after, 1000):
        found += [e for e in batch if e.payload["job_id"] == job_id]
        after = batch[-1].id
    return found


def column(table: engine.Table, name: str) -> dict[int, Any]:
    return {r["id"]: r[name] for r in table.to_pylist()}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engine.Database]:
    """A database that forces a stuck job after 0.5 s and runs one ``custom`` job at a time, its workers ready."""
    database = engine.connect(
        data_dir=str(tmp_path_factory.mktemp("strict")),
        num_cpus=2,
        maintenance_seconds=0,
        job_cancel_grace_seconds=0.5,
        job_type_limits=("custom=1",),
    )
    database.jobs.start()
    ray.get([w.ready.remote() for w in pool(database)], timeout=DEADLINE)
    yield database
    database.close()


# -- order and limits -------------------------------------------------------------------------------------------
def test_higher_priority_runs_first_then_first_in_first_out(db: engine.Database) -> None:
    busy = occupy(db, 1.5)
    priorities = [2, 9, 5, 9, 2, 5, 7, 5, 1, 10]
    queued = [sleep_job(db, priority=p) for p in priorities]
    for job in [*busy, *queued]:
        job.wait(DEADLINE)
    claimed = {j.id: j.record.claimed_at for j in queued}
    assert all(j.status == "completed" and j.record.attempts == 1 for j in queued)
    expected = sorted(queued, key=lambda j: (-j.record.priority, j.record.seq))
    # Claims made in one scheduler step share a time, so the order is checked pair by pair (never later).
    for first, then in itertools.combinations(expected, 2):
        assert claimed[first.id] <= claimed[then.id], (first.record.priority, then.record.priority)
    assert len(set(claimed.values())) > 1


def test_a_type_limit_runs_one_job_of_that_type_at_a_time(strict: engine.Database) -> None:
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(len(strict.jobs.list(status="running", job_type="custom")))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        jobs = [sleep_job(strict, 0.6) for _ in range(3)]
        sleeping(jobs[0])
        # Other types are not held back: the second worker runs one while the custom job still sleeps.
        other = strict.jobs.submit("data_import", {}).wait(DEADLINE)
        assert other.status == "failed" and jobs[0].refresh().status == "running"
        assert [j.refresh().status for j in jobs[1:]] == ["pending", "pending"]
        for job in jobs:
            job.wait(DEADLINE)
    finally:
        done.set()
        watcher.join()
    assert all(j.status == "completed" for j in jobs)
    assert max(seen) == 1


# -- progress and logs ------------------------------------------------------------------------------------------
def test_progress_rises_while_a_job_runs(db: engine.Database) -> None:
    job = sleeping(sleep_job(db, 2.0))
    seen = []
    while job.refresh().status == "running":
        seen.append(job.record.progress)
        time.sleep(0.05)
    assert job.status == "completed" and job.record.progress == 100
    assert seen == sorted(seen), "progress went back"
    assert len({p for p in seen if 0 < p < 100}) >= 3, seen


def test_a_recompute_job_logs_each_column(db: engine.Database, name: str) -> None:
    t = db.create_table(name, {"id": "int", "x": "float"}, "id", shards=2)
    t.insert([{"id": i, "x": float(i)} for i in range(10)])
    t.add_computed_column("a", "expression", "x + 1")
    t.add_computed_column("b", "expression", "a * 2")
    job = db.jobs.submit("table_recompute", {"table_name": name}).wait(DEADLINE)
    logs = job.info["logs"]
    assert job.status == "completed"
    assert logs[0] == f"recomputing {name}.a (1 of 2)" and logs[2] == f"recomputing {name}.b (2 of 2)"
    assert logs[1].startswith("a: 10 rows in ") and logs[3].startswith("b: 10 rows in ")


# -- cancel -----------------------------------------------------------------------------------------------------
def test_cancel_a_pending_job_at_once(db: engine.Database) -> None:
    busy = occupy(db, 1.0)
    job = sleep_job(db, priority=1)
    assert job.cancel() == {"message": f"Job {job.id} cancelled", "cancelled": True}
    assert job.refresh().status == "cancelled" and job.record.completed_at is not None
    for other in busy:
        other.wait(DEADLINE)
    drain(db)
    assert job.refresh().status == "cancelled"
    assert job.record.attempts == 0 and job.record.started_at is None  # it never ran
    assert events_of(db.jobs.store, job.id) == []  # a cancel is no event
    assert job.cancel() == {
        "message": f"Job {job.id} was not cancelled: it had already been cancelled",
        "status": "cancelled",
        "cancelled": False,
    }


def test_cancel_a_running_job_stops_it_and_its_worker_runs_the_next(db: engine.Database) -> None:
    job = sleeping(sleep_job(db, 30))
    worker = worker_of(db, job)
    assert job.cancel()["cancelled"] is True
    assert job.wait(10).status == "cancelled" and job.record.error is None
    # It stopped by itself: the same worker is back in the pool (a forced stop would have replaced it).
    wait_for(lambda: actor_id(worker) in [actor_id(w) for w in scheduler(db).idle], "the worker to be idle")
    assert sleep_job(db).wait(DEADLINE).status == "completed"
    assert job.refresh().status == "cancelled"


def test_cancel_a_finished_job_changes_nothing(db: engine.Database) -> None:
    done = sleep_job(db).wait(DEADLINE)
    failed = db.jobs.submit("table_recompute", {}).wait(DEADLINE)
    for job, status, said in [(done, "completed", "completed"), (failed, "failed", "failed")]:
        answer = {
            "message": f"Job {job.id} was not cancelled: it had already {said}",
            "status": status,
            "cancelled": False,
        }
        assert job.status == status
        assert db.jobs.cancel(job.id) == answer
        assert db.jobs.cancel(job.id) == answer  # idempotent
        assert job.refresh().status == status and not job.record.cancel_requested


def test_a_job_that_ignores_a_cancel_is_forced_and_its_worker_replaced(strict: engine.Database) -> None:
    job = sleeping(sleep_job(strict, 30, ignore_cancel=True))
    stuck = worker_of(strict, job)
    assert job.cancel()["cancelled"] is True
    assert job.wait(20).status == "cancelled"
    assert is_dead(stuck)
    wait_for(lambda: job.id not in scheduler(strict).runs and len(pool(strict)) == 2, "the pool to be whole again")
    workers = pool(strict)
    assert actor_id(stuck) not in [actor_id(w) for w in workers]
    pids = ray.get([w.ready.remote() for w in workers], timeout=DEADLINE)
    assert len(set(pids)) == 2
    assert sleep_job(strict).wait(DEADLINE).status == "completed"
    assert job.refresh().status == "cancelled" and job.record.attempts == 1


# -- timeouts ---------------------------------------------------------------------------------------------------
def test_a_job_past_its_timeout_fails(db: engine.Database) -> None:
    job = sleep_job(db, 30, timeout_seconds=1)
    worker = worker_of(db, job)
    assert job.wait(20).status == "failed" and job.record.error == "timeout after 1 s"
    # The handler stopped at its next check; its own "cancelled" outcome did not overwrite the failure.
    wait_for(lambda: job.id not in scheduler(db).runs, "the run to end")
    assert actor_id(worker) in [actor_id(w) for w in pool(db)]
    assert job.refresh().status == "failed" and job.record.error == "timeout after 1 s"
    assert sleep_job(db).wait(DEADLINE).status == "completed"


def test_a_job_that_ignores_its_timeout_is_forced(strict: engine.Database) -> None:
    job = sleep_job(strict, 30, ignore_cancel=True, timeout_seconds=1)
    stuck = worker_of(strict, job)
    assert job.wait(20).status == "failed" and job.record.error == "timeout after 1 s"
    assert is_dead(stuck)
    wait_for(lambda: job.id not in scheduler(strict).runs and len(pool(strict)) == 2, "the pool to be whole again")
    assert sleep_job(strict).wait(DEADLINE).status == "completed"
    assert job.refresh().status == "failed" and job.record.error == "timeout after 1 s"


# -- table_recompute --------------------------------------------------------------------------------------------
@pytest.fixture
def recomputed(db: engine.Database, name: str) -> engine.Table:
    """A table whose stored columns are stale: ``a`` calls a UDF whose code was replaced, ``b`` reads ``a``."""
    t = db.create_table(name, {"id": "int", "x": "float"}, "id", shards=3)
    t.insert([{"id": i, "x": float(i)} for i in range(30)])
    params = [{"name": "x", "type": "float"}]
    t.register_udf("bump", "python", "def bump(x):\n    return x + 1", params, "float")
    t.add_computed_column("a", "udf", "bump(x)")
    t.add_computed_column("b", "expression", "a * 10")
    t.register_udf("bump", "python", "def bump(x):\n    return x + 2", params, "float", replace=True)
    assert t.computed_column("a")["stale"] is True
    assert column(t, "a") == {i: i + 1.0 for i in range(30)}  # the stored values wait for a recompute
    return t


def test_recompute_one_column(db: engine.Database, recomputed: engine.Table) -> None:
    job = db.jobs.submit("table_recompute", {"table_name": recomputed.name, "column": "a"}).wait(DEADLINE)
    assert job.status == "completed" and job.record.progress == 100 and job.record.retry_safe is True
    result = job.record.result
    assert result["table_name"] == recomputed.name and result["rows_recomputed"] == 30 and result["errors"] == 0
    assert [c["column"] for c in result["columns"]] == ["a"] and isinstance(result["duration_seconds"], float)
    assert set(result["columns"][0]) == {"column", "rows_recomputed", "computation_time_ms", "errors"}
    assert column(recomputed, "a") == {i: i + 2.0 for i in range(30)}
    assert column(recomputed, "b") == {i: (i + 2.0) * 10 for i in range(30)}  # the engine keeps b following a
    assert recomputed.computed_column("a")["stale"] is False


def test_recompute_every_stored_column_in_order(db: engine.Database, recomputed: engine.Table) -> None:
    job = db.jobs.submit("table_recompute", {"table_name": recomputed.name}).wait(DEADLINE)
    assert job.status == "completed"
    result = job.record.result
    assert [c["column"] for c in result["columns"]] == ["a", "b"]
    assert [c["rows_recomputed"] for c in result["columns"]] == [30, 30] and result["rows_recomputed"] == 60
    assert column(recomputed, "a") == {i: i + 2.0 for i in range(30)}
    assert column(recomputed, "b") == {i: (i + 2.0) * 10 for i in range(30)}
    assert not any(c["stale"] for c in recomputed.computed_columns())


def test_recompute_with_a_where_recomputes_those_rows(db: engine.Database, recomputed: engine.Table) -> None:
    where = [{"column": "id", "operator": "<", "value": 5}]
    job = db.jobs.submit("table_recompute", {"table_name": recomputed.name, "column": "a", "where": where})
    assert job.wait(DEADLINE).status == "completed" and job.record.result["rows_recomputed"] == 5
    assert column(recomputed, "a") == {i: i + (2.0 if i < 5 else 1.0) for i in range(30)}
    assert column(recomputed, "b") == {i: (i + (2.0 if i < 5 else 1.0)) * 10 for i in range(30)}


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        ({"table_name": "nope_no_such_table"}, "Table 'nope_no_such_table' not found"),
        ({}, "parameter 'table_name' is required: a name (text)"),
        ({"table_name": 7}, "parameter 'table_name' must be a name (text)"),
        ("not an object", "parameter 'parameters' must be an object, not str"),
    ],
)
def test_a_recompute_with_bad_parameters_fails_naming_them(db: engine.Database, parameters: Any, error: str) -> None:
    job = db.jobs.submit("table_recompute", parameters).wait(DEADLINE)
    assert job.status == "failed" and job.record.error == error and job.record.result is None


def test_a_cancelled_recompute_leaves_the_column_as_it_was(db: engine.Database, name: str) -> None:
    """All or nothing per column: the job either completes with every value new, or is cancelled with every value
    old; a cancel is honoured between shards, and it comes as soon as the first shard's part is staged."""
    rows, shards = 16_000, 16
    t = db.create_table(name, {"id": "int", "x": "float"}, "id", shards=shards)
    t.insert([{"id": i, "x": float(i)} for i in range(rows)])
    params = [{"name": "x", "type": "float"}]
    t.register_udf("double", "python", "def double(x):\n    return x", params, "float")
    t.add_computed_column("y", "udf", "double(x)")
    # Row by row in the sandbox, a thousand additions a row: slow enough to cancel between shards.
    slow = "def double(x):\n    s = 0.0\n    for i in range(100):\n        for j in range(10):\n            s += x\n    return s / 500"
    t.register_udf("double", "python", slow, params, "float", replace=True)
    job = db.jobs.submit("table_recompute", {"table_name": name, "column": "y"})
    wait_for(lambda: job.refresh().record.progress > 0 or job.record.finished, "a shard to be staged")
    job.cancel()
    job.wait(DEADLINE)
    values = column(t, "y")
    old, new = {i: float(i) for i in range(rows)}, {i: 2.0 * i for i in range(rows)}
    assert job.status in ("cancelled", "completed")
    assert values == (new if job.status == "completed" else old)


# -- batch_operation --------------------------------------------------------------------------------------------
@pytest.fixture
def accounts(db: engine.Database, name: str) -> engine.Table:
    return db.create_table(name, {"id": "int", "v": "int"}, "id", shards=2)


def test_a_batch_job_returns_the_batch_response(db: engine.Database, accounts: engine.Table) -> None:
    operations = [
        {"operation": "insert", "table": accounts.name, "data": [{"id": i, "v": i} for i in range(3)]},
        {"operation": "update", "table": accounts.name, "where": {"id": 1}, "set": {"v": {"expr": "v + 100"}}},
    ]
    job = db.jobs.submit("batch_operation", {"operations": operations}).wait(DEADLINE)
    assert job.status == "completed" and job.record.retry_safe is True
    result = job.record.result
    assert set(result) == {
        "total_operations",
        "successful",
        "failed",
        "errors",
        "results",
        "execution_time_ms",
        "committed",
    }
    assert (result["total_operations"], result["successful"], result["failed"], result["errors"]) == (2, 2, 0, [])
    assert result["results"] == [
        {"operation": 0, "status": "success", "rows_affected": 3},
        {"operation": 1, "status": "success", "rows_affected": 1},
    ]
    assert result["committed"] is True
    assert column(accounts, "v") == {0: 0, 1: 101, 2: 2}
    assert job.info["logs"] == ["running 2 operations (one transaction)", "2 succeeded, 0 failed"]


def test_a_failing_transactional_batch_job_applies_nothing(db: engine.Database, accounts: engine.Table) -> None:
    operations = [
        {"operation": "insert", "table": accounts.name, "data": {"id": 1, "v": 1}},
        {"operation": "update", "table": "nope_no_such_table", "where": {}, "set": {"v": 1}},
    ]
    job = db.jobs.submit("batch_operation", {"operations": operations, "return_results": False}).wait(DEADLINE)
    # The batch ran and answered: the job completes, its result saying what failed; nothing was committed.
    assert job.status == "completed" and job.record.error is None
    result = job.record.result
    assert (result["total_operations"], result["successful"], result["failed"], result["committed"]) == (2, 0, 1, False)
    assert [(e["operation"], e["code"]) for e in result["errors"]] == [(1, "table_not_found")]
    assert result["results"] == []  # return_results: false
    assert accounts.count() == 0


def test_a_batch_job_without_a_transaction_keeps_what_succeeded(db: engine.Database, accounts: engine.Table) -> None:
    operations = [
        {"operation": "insert", "table": accounts.name, "data": {"id": 1, "v": 1}},
        {"operation": "insert", "table": accounts.name, "data": {"id": 1, "v": 2}},  # a duplicate key
        {"operation": "insert", "table": accounts.name, "data": {"id": 2, "v": 2}},
    ]
    parameters = {"operations": operations, "transaction": False, "continue_on_error": True}
    job = db.jobs.submit("batch_operation", parameters).wait(DEADLINE)
    assert job.status == "completed" and job.record.retry_safe is False
    assert [r["status"] for r in job.record.result["results"]] == ["success", "failed", "success"]
    assert column(accounts, "v") == {1: 1, 2: 2}


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        ({}, "parameter 'operations' is required: a list of operations (objects)"),
        ({"operations": "insert"}, "parameter 'operations' is required: a list of operations (objects)"),
        ({"operations": [1, 2]}, "parameter 'operations' is required: a list of operations (objects)"),
        ({"operations": [], "transaction": "yes"}, "parameter 'transaction' must be true or false, not 'yes'"),
    ],
)
def test_a_batch_job_with_bad_operations_fails(db: engine.Database, parameters: Any, error: str) -> None:
    job = db.jobs.submit("batch_operation", parameters).wait(DEADLINE)
    assert job.status == "failed" and job.record.error == error


def test_retry_safety_is_stored_per_type(db: engine.Database) -> None:
    cases = [
        ("table_recompute", {"table_name": "nope_no_such_table"}, True),
        ("batch_operation", {"operations": [], "transaction": True}, True),
        ("batch_operation", {"operations": []}, True),  # a transaction unless told otherwise
        ("batch_operation", {"operations": [], "transaction": False}, False),
        ("custom", {"type": "sleep", "seconds": 0}, True),
        ("data_import", {}, True),  # one transaction under job:<id>
        ("media_processing", {}, False),  # no handler yet: not known to be safe
    ]
    jobs = [(db.jobs.submit(t, p), safe) for t, p, safe in cases]
    assert [job.record.retry_safe for job, _ in jobs] == [safe for _, safe in jobs]
    for job, safe in jobs:
        assert job.wait(DEADLINE).record.retry_safe is safe


# -- types and submission checks --------------------------------------------------------------------------------
def test_types_without_a_handler_fail_saying_so(db: engine.Database) -> None:
    jobs = {t: db.jobs.submit(t, {"source": "x"}) for t in ("media_processing",)}
    for job_type, job in jobs.items():
        assert job.wait(DEADLINE).status == "failed"
        assert job.record.error is not None
        assert job.record.error.startswith(f"the handler for job type '{job_type}' is missing")


def test_unknown_types_and_bad_settings_are_refused(db: engine.Database) -> None:
    before = len(db.jobs.list(limit=10_000))
    with pytest.raises(InvalidRequest, match="unknown job_type 'nope'") as unknown:
        db.jobs.submit("nope", {})
    assert unknown.value.fields == {"field": "job_type", "allowed": list(JOB_TYPES)}
    with pytest.raises(InvalidRequest, match=r"names no registered job type: 'nope' \(registered: .*sleep") as custom:
        db.jobs.submit("custom", {"type": "nope"})
    assert custom.value.fields["field"] == "parameters.type" and "sleep" in custom.value.fields["allowed"]
    with pytest.raises(InvalidRequest, match="is required for a custom job"):
        db.jobs.submit("custom", {"seconds": 1})
    with pytest.raises(InvalidRequest, match="names no registered job type: 'table_recompute'"):
        db.jobs.submit("custom", {"type": "table_recompute"})  # a contract type is not a custom one
    for priority in (0, 11, True, 2.5):
        with pytest.raises(InvalidRequest, match="priority must be an integer from 1 to 10"):
            sleep_job(db, priority=priority)
    with pytest.raises(InvalidRequest, match="timeout_seconds must be a positive number"):
        sleep_job(db, timeout_seconds=0)
    with pytest.raises(InvalidRequest, match="unknown webhook_events"):
        sleep_job(db, webhook_events=["exploded"])
    assert len(db.jobs.list(limit=10_000)) == before  # nothing was queued


def test_an_idempotency_key_returns_the_first_job_of_its_owner(db: engine.Database) -> None:
    key = uuid.uuid4().hex
    first = sleep_job(db, idempotency_key=key, owner_key="alice").wait(DEADLINE)
    again = sleep_job(db, 5, idempotency_key=key, owner_key="alice")
    assert again.id == first.id and again.status == "completed" and again.record.parameters["seconds"] == 0
    other = sleep_job(db, idempotency_key=key, owner_key="bob")
    anonymous = sleep_job(db, idempotency_key=key)
    assert len({first.id, other.id, anonymous.id}) == 3
    assert sleep_job(db, idempotency_key=key, owner_key="bob").id == other.id
    for job in (other, anonymous):
        assert job.wait(DEADLINE).status == "completed"
    assert [j.id for j in db.jobs.list(owner_key="alice")] == [first.id]


# -- lost workers -----------------------------------------------------------------------------------------------
def test_a_job_whose_worker_dies_runs_again_when_safe(db: engine.Database) -> None:
    job = sleeping(sleep_job(db, 30))
    ray.kill(worker_of(db, job))
    wait_for(lambda: job.refresh().record.attempts == 2 and job.status == "running", "the job to run again")
    assert job.record.error is None
    assert job.cancel()["cancelled"] is True and job.wait(20).status == "cancelled"


def test_a_job_whose_worker_dies_fails_when_it_may_not_run_again(db: engine.Database) -> None:
    job = sleeping(sleep_job(db, 30, max_attempts=1))
    ray.kill(worker_of(db, job))
    assert job.wait(DEADLINE).status == "failed" and job.record.attempts == 1
    assert job.record.error is not None and job.record.error.startswith("its worker was lost: ")
    wait_for(lambda: len(pool(db)) == db.settings.job_workers, "a replacement worker")
    assert sleep_job(db).wait(DEADLINE).status == "completed"


# -- several processes, pruning, events -------------------------------------------------------------------------
def test_two_schedulers_on_one_queue_run_each_job_once(tmp_path: Path) -> None:
    first = engine.connect(data_dir=str(tmp_path), num_cpus=2, maintenance_seconds=0)
    second = engine.connect(data_dir=str(tmp_path), num_cpus=2, maintenance_seconds=0)
    try:
        first.jobs.start()
        second.jobs.start()
        jobs = [sleep_job(first if i % 2 else second) for i in range(20)]
        for job in jobs:
            job.wait(DEADLINE)
        assert all(j.status == "completed" and j.record.attempts == 1 for j in jobs)
        started = [[e.event for e in events_of(first.jobs.store, j.id)].count("job.started") for j in jobs]
        assert started == [1] * 20
    finally:
        second.close()
        first.close()


def test_finished_jobs_past_the_retention_are_pruned(tmp_path: Path) -> None:
    db = engine.connect(
        data_dir=str(tmp_path),
        num_cpus=2,
        maintenance_seconds=0,
        job_retention_days=1e-5,  # under a second
        job_heartbeat_seconds=0.1,  # pruning runs with the heartbeat
        job_type_limits=("custom=1",),  # so a second sleep stays pending
    )
    try:

        def gone(job: engine.Job) -> bool:
            try:
                job.refresh()
            except JobNotFound:
                return True
            return False

        done = db.jobs.submit("data_import", {}).wait(DEADLINE)
        assert done.status == "failed"
        busy = sleeping(sleep_job(db, 30))
        waiting = sleep_job(db)
        wait_for(lambda: gone(done), "the finished job to be pruned")
        # One more prune that certainly ran while the others were running and pending:
        later = db.jobs.submit("data_import", {}).wait(DEADLINE)
        wait_for(lambda: gone(later), "the second finished job to be pruned")
        assert busy.refresh().status == "running" and waiting.refresh().status == "pending"
        assert db.jobs.store.logs(done.id) == []
        busy.cancel()
        waiting.cancel()
        busy.wait(20)
    finally:
        db.close()


def test_a_run_writes_its_events_to_the_outbox(db: engine.Database) -> None:
    done = sleep_job(db).wait(DEADLINE)
    failed = db.jobs.submit("data_import", {}).wait(DEADLINE)
    store = db.jobs.store
    assert [(e.event, e.payload["status"]) for e in events_of(store, done.id)] == [
        ("job.started", "running"),
        ("job.completed", "completed"),
    ]
    assert events_of(store, done.id)[-1].payload["result"] == {"slept": 0.0}
    assert [e.event for e in events_of(store, failed.id)] == ["job.started", "job.failed"]
    assert events_of(store, failed.id)[-1].payload["error"] == failed.record.error
