"""The durable job queue's storage (``engine.storage.jobs``) on real SQLite files: no Ray, no server."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.errors import Conflict, JobNotFinished, JobNotFound, NotFound
from engine.storage import holders
from engine.storage.catalog import SqliteCatalog
from engine.storage.jobs import (
    INTERRUPTED,
    MAX_LINE_BYTES,
    MAX_LOG_LINES,
    JobRecord,
    JobStore,
)
from engine.storage.sqlite import SqliteFile

T0 = 1_700_000_000.0
ME = holders.this_process()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(SqliteFile(tmp_path / "catalog.db"))


def submit(store: JobStore, job_type: str = "custom", **fields: object) -> JobRecord:
    fields.setdefault("now", T0)
    job, created = store.submit(job_type, {"type": "sleep", "seconds": 0}, **fields)  # type: ignore[arg-type]
    assert created
    return job


def claimed(store: JobStore, holder: str = ME, now: float = T0) -> JobRecord:
    job = store.claim(holder, now=now)
    assert job is not None and job.lease is not None
    return job


def gone_holder() -> str:
    """The holder of a process that has exited."""
    code = "from engine.storage import holders; print(holders.this_process())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    holder = out.stdout.strip()
    assert holders.is_gone(holder)
    return holder


def events(store: JobStore) -> list[tuple[str, str]]:
    return [(e.event, e.payload["job_id"]) for e in store.outbox_since(0, 10_000)]


def test_higher_priority_first_and_fifo_within_one(store: JobStore) -> None:
    order = [(5, "a"), (1, "b"), (10, "c"), (5, "d"), (10, "e"), (1, "f")]
    ids: dict[str, str] = {}
    for p, name in order:
        ids[name] = submit(store, priority=p, now=T0 + len(ids)).id
    taken = [claimed(store).id for _ in order]
    assert taken == [ids[n] for n in "ceadbf"]
    assert store.claim(ME, now=T0) is None


def test_submission_is_stored_as_given(store: JobStore) -> None:
    job = submit(
        store,
        "batch_operation",
        priority=7,
        timeout_seconds=12.5,
        webhook_url="http://127.0.0.1:9/hook",
        webhook_events=["started", "completed"],
        max_attempts=2,
        retry_safe=True,
        owner_key="key-1",
    )
    assert job == store.get(job.id)
    assert (job.status, job.progress, job.priority, job.attempts, job.max_attempts) == ("pending", 0, 7, 0, 2)
    assert job.parameters == {"type": "sleep", "seconds": 0} and job.webhook_events == ("started", "completed")
    assert job.created_at == "2023-11-14T22:13:20.000Z" and job.started_at is None and job.retry_safe
    assert store.get("no such job") is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"priority": 0}, "priority"),
        ({"priority": 11}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": 2.0}, "priority"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": -1.0}, "timeout_seconds"),
        ({"timeout_seconds": float("nan")}, "timeout_seconds"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
def test_priority_and_timeout_are_checked(store: JobStore, fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.submit("custom", {}, now=T0, **fields)  # type: ignore[arg-type]
    assert store.list() == []


def test_per_type_limits_and_a_total_per_holder(store: JobStore) -> None:
    recompute = [submit(store, "table_recompute", priority=9).id for _ in range(3)]
    custom = [submit(store, "custom", priority=1).id for _ in range(3)]
    limits = {"table_recompute": 2}
    first = [store.claim(ME, now=T0, limits=limits) for _ in range(4)]
    assert [j.id for j in first if j] == [*recompute[:2], *custom[:2]]  # the third recompute waits
    other = "host/boot/1/1"  # the limit counts every holder's runs; the total only this holder's
    assert store.claim(other, now=T0, limits={"table_recompute": 2, "custom": 2}) is None
    assert store.claim(other, now=T0, limits=limits, total=1).id == custom[2]  # type: ignore[union-attr]
    assert store.claim(other, now=T0, limits=limits, total=1) is None
    assert store.claim(ME, now=T0, total=4) is None
    assert store.claim(ME, now=T0, total=5).id == recompute[2]  # type: ignore[union-attr]


def test_a_claim_starts_a_run(store: JobStore) -> None:
    job = submit(store)
    run = store.claim(ME, now=T0 + 2)
    assert run is not None and run.id == job.id
    assert (run.status, run.attempts, run.holder, run.heartbeat_at, run.claimed_at) == (
        "running",
        1,
        ME,
        T0 + 2,
        T0 + 2,
    )
    assert run.started_at == "2023-11-14T22:13:22.000Z" and len(run.lease or "") == 32


def test_concurrent_claims_take_each_job_exactly_once(tmp_path: Path) -> None:
    stores = [JobStore(SqliteFile(tmp_path / "catalog.db")) for _ in range(2)]  # two files: as two processes
    ids = {submit(stores[0], priority=1 + i % 10, now=T0 + i).id for i in range(120)}
    taken: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(store: JobStore) -> None:
        start.wait()
        while (job := store.claim(ME, now=T0)) is not None:
            with lock:
                taken.append(job.id)

    threads = [threading.Thread(target=work, args=(stores[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == len(ids) and set(taken) == ids
    assert {j.attempts for j in stores[1].list(limit=1000)} == {1}
    assert len({j.lease for j in stores[1].list(limit=1000)}) == len(ids)


def test_a_stale_run_is_fenced_off_after_recovery(store: JobStore) -> None:
    submit(store, retry_safe=True)
    old = claimed(store, now=T0)
    [requeued] = store.recover(now=T0 + 100, stale_seconds=30)  # no heartbeat for 100 s
    assert requeued.status == "pending" and requeued.lease is None
    new = claimed(store, now=T0 + 101)
    assert new.id == old.id and new.lease != old.lease and new.attempts == 2
    before = events(store)
    assert not store.progress(old.id, old.lease, 50, now=T0 + 102, emit_event=True)  # type: ignore[arg-type]
    assert not store.finish(old.id, old.lease, "completed", result={"stale": True}, now=T0 + 102)  # type: ignore[arg-type]
    assert store.heartbeat({old.id: old.lease}, now=T0 + 102) == {old.id}  # type: ignore[dict-item]
    assert events(store) == before  # a refused write announces nothing
    assert store.heartbeat({new.id: new.lease}, now=T0 + 103) == set()  # type: ignore[dict-item]
    assert store.finish(new.id, new.lease, "completed", result={"n": 1}, now=T0 + 104)  # type: ignore[arg-type]
    done = store.get(new.id)
    assert done is not None and (done.status, done.result, done.progress) == ("completed", {"n": 1}, 100)
    assert not store.finish(new.id, new.lease, "failed", error="twice", now=T0 + 105)  # type: ignore[arg-type]
    assert store.heartbeat({new.id: new.lease}, now=T0 + 105) == {new.id}  # type: ignore[dict-item]


def test_progress_only_rises_and_is_clamped(store: JobStore) -> None:
    submit(store)
    run = claimed(store)
    lease = run.lease or ""
    assert store.progress(run.id, lease, 40, now=T0 + 1, emit_event=True)
    assert store.progress(run.id, lease, 20, now=T0 + 2, emit_event=True)  # ignored, but the run still holds it
    assert store.get(run.id).progress == 40  # type: ignore[union-attr]
    assert store.get(run.id).heartbeat_at == T0 + 2  # type: ignore[union-attr]
    assert store.progress(run.id, lease, 250, now=T0 + 3, emit_event=False)
    assert store.get(run.id).progress == 100  # type: ignore[union-attr]
    assert store.progress(run.id, lease, -5, now=T0 + 4)
    with pytest.raises(ValueError, match="NaN"):
        store.progress(run.id, lease, float("nan"), now=T0 + 5)
    progress = [e.payload["progress"] for e in store.outbox_since(0, 100) if e.event == "job.progress"]
    assert progress == [40]  # only a rise asked to be announced


def test_cancel_pending_running_and_finished(store: JobStore) -> None:
    running = submit(store, priority=9)
    pending = submit(store, priority=1)
    run = claimed(store)
    assert run.id == running.id and not store.cancel_requested(run.id)

    job, cancelled = store.cancel(pending.id, now=T0 + 1)
    assert cancelled and job.status == "cancelled" and job.completed_at == "2023-11-14T22:13:21.000Z"
    assert store.claim(ME, now=T0 + 1) is None  # a cancelled job never runs

    job, cancelled = store.cancel(run.id, now=T0 + 2)
    assert cancelled and job.status == "running" and job.cancel_requested and store.cancel_requested(run.id)
    assert store.cancel(run.id, now=T0 + 3)[1]  # asking twice is fine
    assert store.finish(run.id, run.lease or "", "cancelled", now=T0 + 4)
    assert store.get(run.id).status == "cancelled"  # type: ignore[union-attr]

    done = submit(store)
    finished = claimed(store)
    store.finish(finished.id, finished.lease or "", "completed", result=1, now=T0 + 5)
    job, cancelled = store.cancel(done.id, now=T0 + 6)
    assert not cancelled and job.status == "completed" and job == store.get(done.id)
    with pytest.raises(JobNotFound, match="Job 'nope' not found") as err:
        store.cancel("nope", now=T0)
    assert isinstance(err.value, NotFound)
    assert not [e for e in store.outbox_since(0, 100) if e.payload["status"] == "cancelled"]  # no event for it


def test_recover_requeues_retry_safe_jobs_up_to_max_attempts(store: JobStore) -> None:
    job = submit(store, retry_safe=True, max_attempts=3)
    dead = gone_holder()
    for attempt in (1, 2):
        run = claimed(store, holder=dead, now=T0)
        store.progress(run.id, run.lease or "", 60, now=T0)
        [back] = store.recover(now=T0 + 1, stale_seconds=3600)  # the holder is gone: no need to wait
        assert (back.status, back.attempts, back.progress, back.holder) == ("pending", attempt, 0, None)
    claimed(store, holder=dead, now=T0)
    [failed] = store.recover(now=T0 + 1, stale_seconds=3600)
    assert (failed.id, failed.status, failed.error, failed.attempts) == (job.id, "failed", INTERRUPTED, 3)
    assert failed.error == "interrupted by a server restart" and failed.completed_at is not None


def test_recover_fails_unsafe_jobs_and_cancels_cancel_requested_ones(store: JobStore) -> None:
    unsafe = submit(store, retry_safe=False, priority=9)
    asked = submit(store, retry_safe=True, priority=8)
    live = submit(store, retry_safe=True, priority=7)
    dead = gone_holder()
    claimed(store, holder=dead)
    claimed(store, holder=dead)
    claimed(store, holder=ME)  # alive, heartbeat fresh: left alone
    store.cancel(asked.id, now=T0)
    settled = {j.id: j for j in store.recover(now=T0 + 10, stale_seconds=60)}
    assert set(settled) == {unsafe.id, asked.id}
    assert (settled[unsafe.id].status, settled[unsafe.id].error) == ("failed", INTERRUPTED)
    assert (settled[asked.id].status, settled[asked.id].error) == ("cancelled", None)
    assert store.get(live.id).status == "running"  # type: ignore[union-attr]
    assert [e for e, _ in events(store)].count("job.failed") == 1


def test_a_stale_heartbeat_counts_even_when_the_holder_looks_alive(store: JobStore) -> None:
    submit(store, retry_safe=True)
    elsewhere = "another-host/boot/123/456"  # another machine: never known to be gone
    run = claimed(store, holder=elsewhere, now=T0)
    assert store.recover(now=T0 + 30, stale_seconds=30) == []  # exactly at the limit: still alive
    store.heartbeat({run.id: run.lease or ""}, now=T0 + 50)
    assert store.recover(now=T0 + 79, stale_seconds=30) == []
    [back] = store.recover(now=T0 + 81, stale_seconds=30)
    assert back.status == "pending"


def test_timed_out_counts_from_the_current_run(store: JobStore) -> None:
    short = submit(store, timeout_seconds=10, priority=9)
    long = submit(store, timeout_seconds=100, priority=1)
    claimed(store, now=T0)
    claimed(store, holder="host/boot/1/1", now=T0 + 5)
    assert store.timed_out(now=T0 + 10) == []
    assert [j.id for j in store.timed_out(now=T0 + 11)] == [short.id]
    assert [j.id for j in store.timed_out(now=T0 + 106)] == [short.id, long.id]
    assert [j.id for j in store.timed_out(now=T0 + 106, holder="host/boot/1/1")] == [long.id]
    assert store.get(short.id).status == "running"  # type: ignore[union-attr]  # the runner fails it, not this


def test_logs_keep_the_last_lines_each_cut_to_2_kb(store: JobStore) -> None:
    job = submit(store)
    assert store.log(job.id, [f"line {i}" for i in range(700)])
    assert store.log(job.id, [f"line {i}" for i in range(700, 1500)])
    lines = store.logs(job.id)
    assert len(lines) == MAX_LOG_LINES == 1000 and lines[0] == "line 500" and lines[-1] == "line 1499"
    assert store.log(job.id, [f"big {i}" for i in range(2500)])  # more than the cap in one call
    assert store.logs(job.id) == [f"big {i}" for i in range(1500, 2500)]

    euro = "€" * 1000  # 3 bytes each: 2048 bytes end inside the 683rd
    assert store.log(job.id, ["x" * 5000, euro, "é" * 1024, "ok", "bad \udc80 surrogate"])
    x, cut, exact, ok, bad = store.logs(job.id)[-5:]
    assert x == "x" * MAX_LINE_BYTES and cut == "€" * 682 and len(cut.encode()) == 2046
    assert exact == "é" * 1024 and ok == "ok" and bad == "bad ? surrogate"
    assert not store.log("nope", ["nobody"]) and store.logs("nope") == []


def test_idempotency_keys_are_per_owner(store: JobStore) -> None:
    first, created = store.submit("custom", {"a": 1}, idempotency_key="k", owner_key="alice", now=T0)
    again, created_again = store.submit("custom", {"a": 2}, idempotency_key="k", owner_key="alice", now=T0 + 1)
    assert created and not created_again and again == first
    bob, bob_created = store.submit("custom", {"a": 3}, idempotency_key="k", owner_key="bob", now=T0)
    anon, _ = store.submit("custom", {}, idempotency_key="k", now=T0)
    anon_again, anon_created = store.submit("custom", {}, idempotency_key="k", now=T0)
    assert bob_created and bob.id != first.id and anon.id not in (first.id, bob.id)
    assert not anon_created and anon_again.id == anon.id
    unkeyed = {store.submit("custom", {}, owner_key="alice", now=T0)[0].id for _ in range(3)}
    assert len(unkeyed) == 3 and len(store.list()) == 6


def test_only_a_finished_job_can_be_deleted(store: JobStore) -> None:
    job = submit(store)
    store.log(job.id, ["hello"])
    with pytest.raises(JobNotFinished, match="is pending"):
        store.delete(job.id)
    run = claimed(store)
    with pytest.raises(JobNotFinished, match="is running") as err:
        store.delete(job.id)
    assert isinstance(err.value, Conflict) and err.value.fields == {"job_id": job.id, "status": "running"}
    store.finish(run.id, run.lease or "", "failed", error="boom", now=T0 + 1)
    deleted = store.delete(job.id)
    assert deleted.status == "failed" and store.get(job.id) is None and store.logs(job.id) == []
    with pytest.raises(JobNotFound):
        store.delete(job.id)


def test_prune_removes_finished_jobs_completed_before(store: JobStore) -> None:
    ids = [submit(store, priority=10 - i).id for i in range(3)]
    for i in range(3):
        run = claimed(store)
        store.log(run.id, ["x"])
        store.finish(run.id, run.lease or "", "completed", now=T0 + 10 * i)
    pending = submit(store)
    store.cancel(submit(store).id, now=T0 + 5)
    assert store.prune(before=T0 + 10) == 2  # completed at T0, cancelled at T0 + 5
    assert [j.id for j in store.list()] == [pending.id, ids[2], ids[1]]
    assert store.logs(ids[0]) == [] and store.logs(ids[1]) == ["x"]
    assert store.prune(before=T0 + 1000) == 2 and [j.id for j in store.list()] == [pending.id]


def test_list_filters_newest_first(store: JobStore) -> None:
    a = submit(store, "custom", owner_key="alice")
    b = submit(store, "table_recompute", owner_key="bob")
    c = submit(store, "custom", owner_key="bob", priority=1)
    assert claimed(store).id == a.id  # priority 5 beats 1, and a came before b
    assert [j.id for j in store.list()] == [c.id, b.id, a.id]
    assert [j.id for j in store.list(status="pending")] == [c.id, b.id]
    assert [j.id for j in store.list(status="pending", job_type="table_recompute")] == [b.id]
    assert [j.id for j in store.list(status="running")] == [a.id]
    assert [j.id for j in store.list(job_type="custom", owner_key="bob")] == [c.id]
    assert [j.id for j in store.list(limit=1, offset=1)] == [b.id]


def test_the_outbox_holds_exactly_the_status_changes(store: JobStore) -> None:
    ok = submit(store, priority=9)
    bad = submit(store, priority=1)
    assert events(store) == []  # queueing announces nothing
    run = claimed(store, now=T0 + 1)
    store.progress(run.id, run.lease or "", 50, now=T0 + 2, emit_event=True)
    store.progress(run.id, run.lease or "", 60, now=T0 + 2)
    store.finish(run.id, run.lease or "", "completed", result={"rows": 3}, now=T0 + 3)
    other = claimed(store, now=T0 + 4)
    store.finish(other.id, other.lease or "", "failed", error="no such table", now=T0 + 5)
    rows = store.outbox_since(0, 100)
    assert [(e.event, e.payload) for e in rows] == [
        ("job.started", {"job_id": ok.id, "job_type": "custom", "status": "running", "progress": 0}),
        ("job.progress", {"job_id": ok.id, "job_type": "custom", "status": "running", "progress": 50}),
        (
            "job.completed",
            {"job_id": ok.id, "job_type": "custom", "status": "completed", "progress": 100, "result": {"rows": 3}},
        ),
        ("job.started", {"job_id": bad.id, "job_type": "custom", "status": "running", "progress": 0}),
        (
            "job.failed",
            {"job_id": bad.id, "job_type": "custom", "status": "failed", "progress": 0, "error": "no such table"},
        ),
    ]
    assert rows[0].created_at == "2023-11-14T22:13:21.000Z"
    assert [e.id for e in store.outbox_since(rows[2].id, 1)] == [rows[3].id]


def test_a_change_and_its_event_commit_together(store: JobStore) -> None:
    submit(store)
    run = claimed(store)
    db = store.file.conn()
    db.execute("CREATE TRIGGER outbox_fault BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'outbox fault'); END")
    with pytest.raises(sqlite3.IntegrityError, match="outbox fault"):
        store.finish(run.id, run.lease or "", "completed", now=T0 + 1)
    assert store.get(run.id).status == "running"  # type: ignore[union-attr]  # the event failed: so did the change
    db.execute("DROP TRIGGER outbox_fault")
    db.execute("CREATE TRIGGER jobs_fault BEFORE UPDATE ON jobs BEGIN SELECT RAISE(ABORT, 'jobs fault'); END")
    with pytest.raises(sqlite3.IntegrityError, match="jobs fault"):
        store.finish(run.id, run.lease or "", "completed", now=T0 + 1)
    db.execute("DROP TRIGGER jobs_fault")
    assert [e for e, _ in events(store)] == ["job.started"]
    assert store.finish(run.id, run.lease or "", "completed", now=T0 + 2)
    assert [e for e, _ in events(store)] == ["job.started", "job.completed"]


def test_jobs_survive_reopening_the_file(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db")  # the store shares the catalog's file
    store = JobStore(catalog.file)
    job = submit(store, retry_safe=True, idempotency_key="k")
    run = claimed(store)
    store.log(run.id, ["before the restart"])
    store.progress(run.id, run.lease or "", 30, now=T0)
    del store, catalog

    reopened = JobStore(SqliteCatalog(tmp_path / "catalog.db").file)
    again = reopened.get(job.id)
    assert again is not None and again.status == "running" and again.lease == run.lease and again.progress == 30
    assert reopened.logs(job.id) == ["before the restart"]
    assert reopened.submit("custom", {}, idempotency_key="k", now=T0)[0].id == job.id
    assert [e for e, _ in events(reopened)] == ["job.started"]
